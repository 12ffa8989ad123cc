"""The NumPy erf (kernels/special.py) and the vectorizable fast_* functions (kernels/fastmath.py)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.kernels import special


def _ulp_error(actual, exact, dtype):
    """|actual - exact| in units of the last place of ``exact`` rounded to ``dtype``."""
    exact_rounded = exact.astype(dtype)
    spacing = np.spacing(np.abs(exact_rounded)).astype(np.longdouble)
    return np.abs(actual.astype(np.longdouble) - exact) / spacing


# --------------------------------------------------------------------------- special.erf


def _erf_test_points():
    return np.concatenate(
        [
            np.linspace(-7, 7, 140_001),
            np.geomspace(1e-300, 7, 20_000),
            -np.geomspace(1e-300, 7, 20_000),
            np.linspace(1.9, 2.1, 10_001),  # the switch between series and continued fraction
            np.linspace(5.8, 6.2, 1_001),  # saturation to 1
            [0.0, -0.0, 30.0, -30.0, 1e300, -1e300],
        ]
    )


def test_erf_matches_math_erf_to_float64_rounding():
    x = _erf_test_points()
    expected = np.array([math.erf(v) for v in x])
    actual = special.erf(x)
    assert actual.dtype == np.float64
    nonzero = expected != 0
    relative = np.abs(actual[nonzero] - expected[nonzero]) / np.abs(expected[nonzero])
    assert relative.max() < 1e-15
    assert np.array_equal(np.signbit(actual), np.signbit(expected))


def test_erf_special_values_and_dtypes():
    out = special.erf(np.array([np.inf, -np.inf, np.nan, 0.0, -0.0]))
    assert out[0] == 1 and out[1] == -1 and np.isnan(out[2])
    assert out[3] == 0 and not np.signbit(out[3]) and np.signbit(out[4])
    x32 = np.linspace(-3, 3, 101, dtype=np.float32)
    out32 = special.erf(x32)
    assert out32.dtype == np.float32
    expected = np.array([math.erf(v) for v in x32.astype(np.float64)]).astype(np.float32)
    np.testing.assert_array_equal(out32, expected)  # computed in float64, rounded once
    assert special.erf(np.float64(0.5)) == pytest.approx(math.erf(0.5), rel=1e-15)


@given(st.floats(min_value=-50, max_value=50, allow_nan=False))
def test_erf_scalar_points(value):
    assert float(special.erf(value)) == pytest.approx(math.erf(value), rel=2e-15, abs=1e-300)


# --------------------------------------------------------------------------- fastmath


@pytest.fixture(scope="module")
def loops():
    """Numba loops applying each fast_* function to an array."""
    from tinylm.kernels._common import jit
    from tinylm.kernels.fastmath import fast_erf, fast_exp, fast_sigmoid, fast_tanh

    @jit
    def apply_exp(x, out):
        for k in range(x.size):
            out[k] = fast_exp(x[k])

    @jit
    def apply_tanh(x, out):
        for k in range(x.size):
            out[k] = fast_tanh(x[k])

    @jit
    def apply_sigmoid(x, out):
        for k in range(x.size):
            out[k] = fast_sigmoid(x[k])

    @jit
    def apply_erf(x, out):
        for k in range(x.size):
            out[k] = fast_erf(x[k])

    def run(loop, x):
        out = np.empty_like(x)
        loop(x, out)
        return out

    return {
        "exp": lambda x: run(apply_exp, x),
        "tanh": lambda x: run(apply_tanh, x),
        "sigmoid": lambda x: run(apply_sigmoid, x),
        "erf": lambda x: run(apply_erf, x),
    }


def _exact(name, x):
    wide = x.astype(np.longdouble)
    if name == "exp":
        return np.exp(wide)
    if name == "tanh":
        return np.tanh(wide)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-wide))
    return np.array([math.erf(v) for v in x.astype(np.float64)], dtype=np.longdouble)


# (function, dtype) -> largest error in ulp allowed; float64 erf is math.erf itself.
_ULP_LIMITS = {
    ("exp", np.float32): 1.5, ("exp", np.float64): 1.5,
    ("tanh", np.float32): 2.5, ("tanh", np.float64): 2.5,
    ("sigmoid", np.float32): 3.0, ("sigmoid", np.float64): 3.0,
    ("erf", np.float32): 3.0, ("erf", np.float64): 0.5,
}


@pytest.mark.parametrize("name,dtype", sorted(_ULP_LIMITS, key=str))
def test_fast_functions_are_accurate(loops, name, dtype):
    limit = {"exp": 100.0, "tanh": 12.0, "sigmoid": 40.0, "erf": 6.0}[name]
    x = np.concatenate(
        [np.linspace(-limit, limit, 200_001), np.geomspace(1e-20, limit, 20_000), -np.geomspace(1e-20, limit, 20_000)]
    ).astype(dtype)
    actual = loops[name](x)
    assert actual.dtype == dtype
    exact = _exact(name, x)
    with np.errstate(over="ignore", under="ignore"):
        normal = np.isfinite(exact.astype(dtype)) & (np.abs(exact.astype(dtype)) >= np.finfo(dtype).tiny)
    assert _ulp_error(actual[normal], exact[normal], dtype).max() <= _ULP_LIMITS[(name, dtype)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_functions_special_values(loops, dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e6, -1e6], dtype=dtype)
    exp = loops["exp"](x)
    assert exp[0] == np.inf and exp[1] == 0 and np.isnan(exp[2]) and exp[3] == 1 and exp[5] == np.inf and exp[6] == 0
    tanh = loops["tanh"](x)
    np.testing.assert_array_equal(tanh[[0, 1, 3, 5, 6]], [1, -1, 0, 1, -1])
    assert np.isnan(tanh[2]) and np.signbit(tanh[4])
    sigmoid = loops["sigmoid"](x)
    np.testing.assert_array_equal(sigmoid[[0, 1, 3, 5, 6]], [1, 0, 0.5, 1, 0])
    assert np.isnan(sigmoid[2])
    erf = loops["erf"](x)
    np.testing.assert_array_equal(erf[[0, 1, 3, 5, 6]], [1, -1, 0, 1, -1])
    assert np.isnan(erf[2]) and np.signbit(erf[4])


def test_fast_exp_flushes_below_the_normal_range(loops):
    x = np.array([-87.0, -88.0, -100.0, -103.0], dtype=np.float32)
    out = loops["exp"](x)
    assert out[0] > 0 and np.all(out[1:] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_and_gauss_share_one_exp_and_agree_with_each_alone(loops, dtype):
    # The pair GELU's slope takes: the erf bit for bit fast_erf's, the gauss
    # exp(-x**2) as accurate as fast_exp on the (rounded) -x*x.
    from tinylm.kernels.fastmath import erf_and_gauss_into

    x = np.concatenate([np.linspace(-6, 6, 100_001), [np.inf, -np.inf, np.nan, 0.0, -0.0]]).astype(dtype)
    erf, gauss = np.empty_like(x), np.empty_like(x)
    erf_and_gauss_into(x, erf, gauss)
    np.testing.assert_array_equal(erf, loops["erf"](x))
    np.testing.assert_array_equal(gauss, loops["exp"](-(x * x)))
