"""cross_entropy_forward / cross_entropy_backward: NumPy reference, Numba, and checks of the reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close, numerical_gradient, parallel_drivers

IGNORE = -100


def _case(n, c, dtype, scale, seed, ignore_fraction=0.25):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * scale).astype(dtype)
    targets = rng.integers(0, c, size=n)
    targets[rng.random(n) < ignore_fraction] = IGNORE
    dlosses = rng.standard_normal(n).astype(dtype)
    return logits, targets, dlosses


def _both(backend, logits, targets, dlosses, smoothing):
    forward = get_kernel("cross_entropy_forward", backend)
    backward = get_kernel("cross_entropy_backward", backend)
    losses, lse = forward(logits, targets, IGNORE, smoothing)
    return losses, lse, backward(dlosses, logits, targets, lse, IGNORE, smoothing)


@given(
    n=st.integers(1, 9),
    c=st.integers(1, 70),
    dtype=st.sampled_from([np.float32, np.float64]),
    smoothing=st.sampled_from([0.0, 0.1, 1.0]),
    scale=st.sampled_from([0.01, 1.0, 30.0]),
    seed=st.integers(0, 2**31),
)
def test_numba_matches_reference(n, c, dtype, smoothing, scale, seed):
    logits, targets, dlosses = _case(n, c, dtype, scale, seed)
    expected = _both("numpy", logits, targets, dlosses, smoothing)
    actual = _both("numba", logits, targets, dlosses, smoothing)
    valid = targets != IGNORE
    assert_close(actual[0], expected[0], scale=scale, err_msg="losses")
    assert_close(actual[1][valid], expected[1][valid], scale=scale, err_msg="lse")
    assert_close(actual[2], expected[2], err_msg="dlogits")


def test_parallel_driver_matches_reference():
    logits, targets, dlosses = _case(37, 131, np.float32, 3.0, 0)
    for smoothing in (0.0, 0.1):
        expected = _both("numpy", logits, targets, dlosses, smoothing)
        with parallel_drivers() as active:
            if not active:
                pytest.skip("Numba has a single thread here")
            actual = _both("numba", logits, targets, dlosses, smoothing)
        assert_close(actual[0], expected[0], scale=3)
        assert_close(actual[2], expected[2])


def test_reference_matches_a_direct_float64_formula():
    logits, targets, _ = _case(6, 11, np.float64, 2.0, 1, ignore_fraction=0)
    eps = 0.2
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    target_dist = np.full(logits.shape, eps / 11)
    target_dist[np.arange(6), targets] += 1 - eps
    expected = -(target_dist * log_probs).sum(axis=1)
    losses, lse = get_kernel("cross_entropy_forward", "numpy")(logits, targets, IGNORE, eps)
    np.testing.assert_allclose(losses, expected, rtol=1e-13)
    np.testing.assert_allclose(lse, np.log(np.exp(logits).sum(axis=1)), rtol=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_reference_backward_matches_finite_differences(smoothing):
    logits, targets, dlosses = _case(4, 5, np.float64, 1.5, 2)
    forward = get_kernel("cross_entropy_forward", "numpy")
    _, lse = forward(logits, targets, IGNORE, smoothing)
    analytic = get_kernel("cross_entropy_backward", "numpy")(dlosses, logits, targets, lse, IGNORE, smoothing)
    numeric = numerical_gradient(lambda x: forward(x, targets, IGNORE, smoothing)[0], [logits], 0, dlosses)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_reference_matches_torch(dtype, smoothing):
    torch = pytest.importorskip("torch")
    logits, targets, dlosses = _case(8, 13, dtype, 3.0, 3)
    losses, lse = get_kernel("cross_entropy_forward", "numpy")(logits, targets, IGNORE, smoothing)
    dlogits = get_kernel("cross_entropy_backward", "numpy")(dlosses, logits, targets, lse, IGNORE, smoothing)
    x = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(
        x, torch.tensor(targets), ignore_index=IGNORE, label_smoothing=smoothing, reduction="none"
    )
    (loss * torch.tensor(dlosses)).sum().backward()
    assert_close(losses, loss.detach().numpy(), scale=3)
    assert_close(dlogits, x.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_huge_logits_stay_finite(backend):
    torch = pytest.importorskip("torch")
    logits = np.array([[1e4, -1e4, 0.0, 1e4 - 3], [-1e4, -1e4, -1e4 + 1, -1e4]], dtype=np.float32)
    targets = np.array([1, 2])
    for smoothing in (0.0, 0.1):
        losses, lse, dlogits = _both(backend, logits, targets, np.ones(2, np.float32), smoothing)
        assert np.all(np.isfinite(losses)) and np.all(np.isfinite(lse)) and np.all(np.isfinite(dlogits))
        expected = torch.nn.functional.cross_entropy(
            torch.tensor(logits), torch.tensor(targets), label_smoothing=smoothing, reduction="none"
        ).numpy()
        np.testing.assert_allclose(losses, expected, rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_ignored_and_out_of_range_rows(backend):
    logits, _, dlosses = _case(4, 5, np.float64, 1.0, 4)
    targets = np.array([IGNORE, 2, 5, -1])  # ignored, valid, too large, negative (not the ignore index)
    losses, _, dlogits = _both(backend, logits, targets, dlosses, 0.1)
    assert losses[0] == 0 and np.all(dlogits[0] == 0)
    assert np.isfinite(losses[1]) and np.all(np.isfinite(dlogits[1]))
    assert np.all(np.isnan(losses[2:])) and np.all(np.isnan(dlogits[2:]))


def test_losses_are_never_negative():
    logits, targets, dlosses = _case(50, 3, np.float32, 20.0, 5, ignore_fraction=0)
    logits[np.arange(50), targets] += 100  # confident and right: the loss rounds to 0, never below
    for backend in ("numpy", "numba"):
        losses, _, _ = _both(backend, logits, targets, dlosses, 0.0)
        assert np.all(losses >= 0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_arguments_are_reported(backend):
    forward = get_kernel("cross_entropy_forward", backend)
    with pytest.raises(TypeError, match="cross_entropy_forward: logits must be float32 or float64"):
        forward(np.zeros((2, 3), np.int64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="targets must have shape"):
        forward(np.zeros((2, 3)), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="targets must be integers"):
        forward(np.zeros((2, 3)), np.zeros(2))
