"""adamw_update: NumPy reference, Numba, and torch.optim.AdamW."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close, parallel_drivers

SETTINGS = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)


def _state(n, dtype, seed):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(n).astype(dtype)
    return param, np.zeros(n, dtype), np.zeros(n, dtype), rng


def _steps(backend, n, dtype, seed, steps, settings):
    update = get_kernel("adamw_update", backend)
    param, m, v, rng = _state(n, dtype, seed)
    for step in range(1, steps + 1):
        grad = rng.standard_normal(n).astype(dtype)
        update(param, grad, m, v, step=step, **settings)
    return param, m, v


@given(
    n=st.integers(1, 300),
    dtype=st.sampled_from([np.float32, np.float64]),
    weight_decay=st.sampled_from([0.0, 0.1]),
    seed=st.integers(0, 2**31),
)
def test_numba_matches_reference(n, dtype, weight_decay, seed):
    settings = dict(SETTINGS, weight_decay=weight_decay)
    expected = _steps("numpy", n, dtype, seed, 3, settings)
    actual = _steps("numba", n, dtype, seed, 3, settings)
    for got, want in zip(actual, expected):
        assert_close(got, want)


def test_parallel_driver_matches_reference():
    expected = _steps("numpy", 1001, np.float32, 0, 3, SETTINGS)
    with parallel_drivers() as active:
        if not active:
            pytest.skip("Numba has a single thread here")
        actual = _steps("numba", 1001, np.float32, 0, 3, SETTINGS)
    for got, want in zip(actual, expected):
        assert_close(got, want)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_matches_torch_adamw(backend, dtype, weight_decay):
    torch = pytest.importorskip("torch")
    settings = dict(lr=3e-3, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=weight_decay)
    n = 257
    param, m, v, rng = _state(n, dtype, 1)
    tparam = torch.nn.Parameter(torch.tensor(param.copy()))
    optimizer = torch.optim.AdamW(
        [tparam], lr=settings["lr"], betas=(settings["beta1"], settings["beta2"]), eps=settings["eps"],
        weight_decay=weight_decay,
    )
    update = get_kernel("adamw_update", backend)
    for step in range(1, 6):
        grad = (rng.standard_normal(n) * 10 ** rng.uniform(-3, 1)).astype(dtype)
        update(param, grad, m, v, step=step, **settings)
        tparam.grad = torch.tensor(grad)
        optimizer.step()
    state = optimizer.state[tparam]
    assert_close(param, tparam.detach().numpy())
    assert_close(m, state["exp_avg"].numpy())
    assert_close(v, state["exp_avg_sq"].numpy())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_arguments_are_reported(backend):
    update = get_kernel("adamw_update", backend)
    p = np.zeros(4)
    with pytest.raises(ValueError, match="adamw_update: exp_avg must be float64 of shape"):
        update(p, p.copy(), np.zeros(3), p.copy(), step=1, **SETTINGS)
    with pytest.raises(ValueError, match="must be contiguous"):
        update(np.zeros(8)[::2], p.copy(), p.copy(), p.copy(), step=1, **SETTINGS)
    with pytest.raises(ValueError, match="step counts from 1"):
        update(p, p.copy(), p.copy(), p.copy(), step=0, **SETTINGS)
