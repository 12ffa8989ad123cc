"""gelu_forward / gelu_backward and bias_gelu_forward / bias_gelu_backward."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close, numerical_gradient, parallel_drivers

APPROXIMATIONS = ["none", "tanh"]


def _floats(dtype):
    return st.floats(-12, 12, width=32 if dtype == np.float32 else 64, allow_subnormal=False)


@st.composite
def _arrays(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9))
    x = draw(hnp.arrays(dtype, shape, elements=_floats(dtype)))
    dy = draw(hnp.arrays(dtype, shape, elements=_floats(dtype)))
    return x, dy


@given(arrays=_arrays(), approximate=st.sampled_from(APPROXIMATIONS))
def test_numba_matches_reference(arrays, approximate):
    x, dy = arrays
    for name, args in (("gelu_forward", (x, approximate)), ("gelu_backward", (dy, x, approximate))):
        expected = get_kernel(name, "numpy")(*args)
        actual = get_kernel(name, "numba")(*args)
        assert_close(actual, expected, scale=12, err_msg=name)


@given(arrays=_arrays(), approximate=st.sampled_from(APPROXIMATIONS))
def test_forward_with_grad_is_forward_and_slope(arrays, approximate):
    # The slope is gelu'(x): the backward of a unit gradient.
    x, _ = arrays
    ones = np.ones_like(x)
    for backend in ("numpy", "numba"):
        y, slope = get_kernel("gelu_forward_with_grad", backend)(x, approximate)
        assert y.shape == slope.shape == x.shape and y.dtype == slope.dtype == x.dtype
        assert_close(y, get_kernel("gelu_forward", "numpy")(x, approximate), scale=12, err_msg=backend)
        assert_close(slope, get_kernel("gelu_backward", "numpy")(ones, x, approximate), scale=12, err_msg=backend)


@given(
    n=st.integers(1, 7),
    c=st.integers(1, 40),
    dtype=st.sampled_from([np.float32, np.float64]),
    approximate=st.sampled_from(APPROXIMATIONS),
    seed=st.integers(0, 2**31),
)
def test_bias_gelu_numba_matches_reference(n, c, dtype, approximate, seed):
    rng = np.random.default_rng(seed)
    x, dy = (rng.standard_normal((2, n, c)) * 3).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    expected = get_kernel("bias_gelu_forward", "numpy")(x, bias, approximate)
    assert_close(get_kernel("bias_gelu_forward", "numba")(x, bias, approximate), expected, scale=3)
    dx0, dbias0 = get_kernel("bias_gelu_backward", "numpy")(dy, x, bias, approximate)
    dx, dbias = get_kernel("bias_gelu_backward", "numba")(dy, x, bias, approximate)
    assert_close(dx, dx0, scale=3)
    assert_close(dbias, dbias0, scale=3 * n)


@pytest.mark.parametrize("approximate", APPROXIMATIONS)
def test_parallel_drivers_match_reference(approximate):
    rng = np.random.default_rng(0)
    x, dy = (rng.standard_normal((2, 33, 65)) * 3).astype(np.float32)
    bias = rng.standard_normal(65).astype(np.float32)
    expected = (
        get_kernel("gelu_forward", "numpy")(x, approximate),
        get_kernel("gelu_backward", "numpy")(dy, x, approximate),
        *get_kernel("gelu_forward_with_grad", "numpy")(x, approximate),
        get_kernel("bias_gelu_forward", "numpy")(x, bias, approximate),
        *get_kernel("bias_gelu_backward", "numpy")(dy, x, bias, approximate),
    )
    with parallel_drivers() as active:
        if not active:
            pytest.skip("Numba has a single thread here")
        actual = (
            get_kernel("gelu_forward", "numba")(x, approximate),
            get_kernel("gelu_backward", "numba")(dy, x, approximate),
            *get_kernel("gelu_forward_with_grad", "numba")(x, approximate),
            get_kernel("bias_gelu_forward", "numba")(x, bias, approximate),
            *get_kernel("bias_gelu_backward", "numba")(dy, x, bias, approximate),
        )
    for got, want in zip(actual, expected):
        assert_close(got, want, scale=30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", APPROXIMATIONS)
def test_reference_matches_torch(dtype, approximate):
    torch = pytest.importorskip("torch")
    x = np.linspace(-9, 9, 301).astype(dtype)
    dy = np.cos(np.arange(301)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.gelu(tx, approximate=approximate)
    ty.backward(torch.tensor(dy))
    assert_close(get_kernel("gelu_forward", "numpy")(x, approximate), ty.detach().numpy(), scale=10)
    assert_close(get_kernel("gelu_backward", "numpy")(dy, x, approximate), tx.grad.numpy())


def test_reference_forward_matches_math_erf():
    x = np.linspace(-8, 8, 1001)
    expected = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    # 1 + erf(x) cancels for negative x, so the rounding of x / sqrt(2) shows there: absolute tolerance
    np.testing.assert_allclose(get_kernel("gelu_forward", "numpy")(x), expected, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("approximate", APPROXIMATIONS)
def test_reference_backward_matches_finite_differences(approximate):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4)) * 2
    dy = rng.standard_normal((3, 4))
    bias = rng.standard_normal(4)
    analytic = get_kernel("gelu_backward", "numpy")(dy, x, approximate)
    forward = get_kernel("gelu_forward", "numpy")
    numeric = numerical_gradient(lambda x_: forward(x_, approximate), [x], 0, dy)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)
    dx, dbias = get_kernel("bias_gelu_backward", "numpy")(dy, x, bias, approximate)
    bias_forward = get_kernel("bias_gelu_forward", "numpy")
    for index, grad in ((0, dx), (1, dbias)):
        numeric = numerical_gradient(lambda x_, b_: bias_forward(x_, b_, approximate), [x, bias], index, dy)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_arguments_are_reported(backend):
    with pytest.raises(ValueError, match="gelu_forward: approximate must be 'none' or 'tanh'"):
        get_kernel("gelu_forward", backend)(np.zeros(3), "erf")
    with pytest.raises(TypeError, match="gelu_backward: dy must be float32"):
        get_kernel("gelu_backward", backend)(np.zeros(3), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="bias must have shape"):
        get_kernel("bias_gelu_forward", backend)(np.zeros((2, 3)), np.zeros(2))
