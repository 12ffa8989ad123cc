"""layernorm_forward / layernorm_backward: NumPy reference, Numba, and checks of the reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close, numerical_gradient, parallel_drivers

EPS = 1e-5
AFFINE = ["weight and bias", "weight only", "neither"]


def _case(n, c, dtype, affine, scale, offset, seed):
    rng = np.random.default_rng(seed)
    x = ((rng.standard_normal((n, c)) + offset) * scale).astype(dtype)  # offset in units of the spread
    weight = rng.standard_normal(c).astype(dtype) if affine != "neither" else None
    bias = rng.standard_normal(c).astype(dtype) if affine == "weight and bias" else None
    dy = rng.standard_normal((n, c)).astype(dtype)
    return x, weight, bias, dy


def _run(backend, x, weight, bias, dy):
    y, mean, rstd = get_kernel("layernorm_forward", backend)(x, weight, bias, EPS)
    grads = get_kernel("layernorm_backward", backend)(dy, x, weight, mean, rstd, has_bias=bias is not None)
    return (y, mean, rstd), grads


def _compare(actual, expected):
    (y, mean, rstd), grads = actual
    (y0, mean0, rstd0), grads0 = expected
    assert_close(y, y0, err_msg="y")
    assert_close(mean, mean0, scale=10, err_msg="mean")
    assert_close(rstd, rstd0, scale=10, err_msg="rstd")
    for name, got, want in zip(("dx", "dweight", "dbias"), grads, grads0):
        if want is None:
            assert got is None, name
        else:  # dx is of the order of rstd, dweight and dbias sum over the rows
            assert_close(got, want, scale=max(1.0, np.abs(want).max()), err_msg=name)


@given(
    n=st.integers(1, 9),
    c=st.integers(1, 70),
    dtype=st.sampled_from([np.float32, np.float64]),
    affine=st.sampled_from(AFFINE),
    scale=st.sampled_from([0.01, 1.0, 10.0]),
    offset=st.sampled_from([0.0, 5.0]),
    seed=st.integers(0, 2**31),
)
def test_numba_matches_reference(n, c, dtype, affine, scale, offset, seed):
    case = _case(n, c, dtype, affine, scale, offset, seed)
    _compare(_run("numba", *case), _run("numpy", *case))


def test_parallel_driver_matches_reference():
    case = _case(41, 67, np.float32, "weight and bias", 1.0, 0.0, 0)
    expected = _run("numpy", *case)
    with parallel_drivers() as active:
        if not active:
            pytest.skip("Numba has a single thread here")
        actual = _run("numba", *case)
    _compare(actual, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", AFFINE)
def test_reference_matches_torch(dtype, affine):
    torch = pytest.importorskip("torch")
    x, weight, bias, dy = _case(6, 10, dtype, affine, 2.0, 1.0, 1)
    (y, mean, rstd), (dx, dweight, dbias) = _run("numpy", x, weight, bias, dy)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True) if weight is not None else None
    tb = torch.tensor(bias, requires_grad=True) if bias is not None else None
    ty = torch.nn.functional.layer_norm(tx, (10,), tw, tb, EPS)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy())
    assert_close(dx, tx.grad.numpy(), scale=10)
    if weight is not None:
        assert_close(dweight, tw.grad.numpy(), scale=10)
    if bias is not None:
        assert_close(dbias, tb.grad.numpy(), scale=10)
    mean_t, var_t = x.mean(axis=1), x.var(axis=1)
    assert_close(mean, mean_t.astype(dtype), scale=10)
    assert_close(rstd, (1 / np.sqrt(var_t + EPS)).astype(dtype), scale=10)


def test_reference_backward_matches_finite_differences():
    x, weight, bias, dy = _case(3, 5, np.float64, "weight and bias", 1.0, 0.5, 2)
    forward = get_kernel("layernorm_forward", "numpy")
    y, mean, rstd = forward(x, weight, bias, EPS)
    dx, dweight, dbias = get_kernel("layernorm_backward", "numpy")(dy, x, weight, mean, rstd)

    def f(x_, w_, b_):
        return forward(x_, w_, b_, EPS)[0]

    for index, analytic in enumerate((dx, dweight, dbias)):
        numeric = numerical_gradient(f, [x, weight, bias], index, dy)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_large_offset_does_not_cancel(backend):
    # Two-pass variance: a row with mean 1e4 and spread 1 in float32 keeps its spread.
    x, _, _, _ = _case(4, 64, np.float32, "neither", 1.0, 1e4, 3)  # mean 1e4, spread 1
    y, mean, rstd = get_kernel("layernorm_forward", backend)(x, None, None, EPS)
    exact = x.astype(np.float64)
    expected = (exact - exact.mean(1, keepdims=True)) / np.sqrt(exact.var(1, keepdims=True) + EPS)
    np.testing.assert_allclose(y, expected, atol=2e-3)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_arguments_are_reported(backend):
    forward = get_kernel("layernorm_forward", backend)
    with pytest.raises(ValueError, match="layernorm_forward: x must have 2 axes"):
        forward(np.zeros(3), None, None)
    with pytest.raises(ValueError, match="weight must have shape"):
        forward(np.zeros((2, 3)), np.ones(4), None)
    with pytest.raises(TypeError, match="bias must be float64"):
        forward(np.zeros((2, 3)), None, np.zeros(3, np.float32))
