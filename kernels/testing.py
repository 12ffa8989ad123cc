"""Helpers for testing kernels: per-dtype tolerances, central differences, and a
switch that sends small inputs through the parallel Numba drivers.

No test framework is imported, so any test (the kernels' own, or an op's that
wraps a kernel) can use them.
"""

import contextlib

import numpy as np

#: How close two implementations of the same kernel must agree, per dtype.
#: float64: a few ulp of the values, amplified a little by the backward formulas.
#: float32: different summation orders and the fast exp/tanh (1-3 ulp) compound.
TOLERANCES = {
    np.dtype(np.float64): {"rtol": 1e-10, "atol": 1e-12},
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
}


def assert_close(actual, expected, scale=1.0, err_msg=""):
    """``np.testing.assert_allclose`` with :data:`TOLERANCES` for ``expected``'s dtype.

    ``scale`` multiplies ``atol`` for outputs whose typical magnitude is not ~1.
    Also checks that ``actual`` has ``expected``'s dtype and shape.
    """
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype, f"{err_msg}: dtype {actual.dtype}, expected {expected.dtype}"
    assert actual.shape == expected.shape, f"{err_msg}: shape {actual.shape}, expected {expected.shape}"
    tol = TOLERANCES[expected.dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=err_msg)


def numerical_gradient(f, inputs, index, weights, eps=1e-6):
    """Central-difference gradient of ``sum(weights * f(*inputs))`` with respect to
    ``inputs[index]`` (contiguous float64 arrays; ``f`` returns one array).

    Each element is perturbed by ``+-eps`` in turn, so keep the arrays small.
    """
    x = inputs[index]
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + eps
        plus = np.sum(weights * f(*inputs))
        flat[k] = saved - eps
        minus = np.sum(weights * f(*inputs))
        flat[k] = saved
        grad.reshape(-1)[k] = (plus - minus) / (2 * eps)
    return grad


@contextlib.contextmanager
def parallel_drivers():
    """Within the block, Numba kernels take their ``prange`` driver whatever the size,
    with at least two threads. Yields False (and changes nothing) when Numba has
    only one thread to give, so the caller can skip.
    """
    import numba

    from . import _common

    if numba.config.NUMBA_NUM_THREADS < 2:
        yield False
        return
    saved_threshold, saved_threads = _common.PARALLEL_MIN_WORK, numba.get_num_threads()
    _common.PARALLEL_MIN_WORK = 0
    numba.set_num_threads(max(2, saved_threads))
    try:
        yield True
    finally:
        _common.PARALLEL_MIN_WORK = saved_threshold
        numba.set_num_threads(saved_threads)
