"""attention_softmax_forward / attention_softmax_backward."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close, numerical_gradient, parallel_drivers


def _case(b, h, t, s, dtype, scale, seed):
    rng = np.random.default_rng(seed)
    scores = (rng.standard_normal((b, h, t, s)) * scale).astype(dtype)
    dprobs = rng.standard_normal((b, h, t, s)).astype(dtype)
    return scores, dprobs


def _run(backend, scores, dprobs, scale, causal, offset):
    probs = get_kernel("attention_softmax_forward", backend)(scores, scale, causal, offset)
    return probs, get_kernel("attention_softmax_backward", backend)(dprobs, probs, scale)


def _loop_softmax(scores, scale, causal, offset):
    """The definition, one row at a time in float64."""
    b, h, t, s = scores.shape
    offset = s - t if offset is None else offset
    out = np.zeros(scores.shape)
    for index in np.ndindex(b, h, t):
        i = index[2]
        visible = [j for j in range(s) if not causal or j <= offset + i]
        if visible:
            z = scale * scores[index][visible].astype(np.float64)
            e = np.exp(z - z.max())
            out[index + (visible,)] = e / e.sum()
    return out


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 12)),
    dtype=st.sampled_from([np.float32, np.float64]),
    causal=st.booleans(),
    offset=st.sampled_from([None, 0, 3, -2]),
    scale=st.sampled_from([0.125, 1.0, 8.0]),
    seed=st.integers(0, 2**31),
)
def test_numba_matches_reference(shape, dtype, causal, offset, scale, seed):
    scores, dprobs = _case(*shape, dtype, 2.0, seed)
    expected = _run("numpy", scores, dprobs, scale, causal, offset)
    actual = _run("numba", scores, dprobs, scale, causal, offset)
    assert_close(actual[0], expected[0], err_msg="probs")
    assert_close(actual[1], expected[1], scale=scale, err_msg="dscores")
    if causal:  # masked entries are exactly zero in both directions
        masked = expected[0] == 0
        assert np.all(actual[0][masked] == 0) and np.all(actual[1][masked] == 0)


def test_parallel_driver_matches_reference():
    scores, dprobs = _case(3, 4, 16, 16, np.float32, 2.0, 0)
    expected = _run("numpy", scores, dprobs, 0.25, True, None)
    with parallel_drivers() as active:
        if not active:
            pytest.skip("Numba has a single thread here")
        actual = _run("numba", scores, dprobs, 0.25, True, None)
    assert_close(actual[0], expected[0])
    assert_close(actual[1], expected[1])


@pytest.mark.parametrize("causal,offset", [(False, None), (True, None), (True, 2), (True, -1)])
def test_reference_forward_matches_the_definition(causal, offset):
    scores, _ = _case(2, 2, 4, 6, np.float64, 3.0, 1)
    probs = get_kernel("attention_softmax_forward", "numpy")(scores, 0.5, causal, offset)
    np.testing.assert_allclose(probs, _loop_softmax(scores, 0.5, causal, offset), rtol=1e-13, atol=1e-300)
    if causal and offset is None:  # T < S: queries sit at the end, like decoding with a cache
        assert np.all(probs[..., 0, 3:] == 0) and np.all(probs[..., 0, :3] > 0)


def test_a_row_with_no_visible_key_is_all_zero():
    scores, _ = _case(1, 1, 3, 4, np.float32, 1.0, 2)
    for backend in ("numpy", "numba"):
        probs = get_kernel("attention_softmax_forward", backend)(scores, 1.0, True, -2)
        assert np.all(probs[0, 0, :2] == 0) and np.all(np.isfinite(probs))
        np.testing.assert_allclose(probs[0, 0, 2].sum(), 1, rtol=1e-6)


def test_reference_backward_matches_finite_differences():
    scores, dprobs = _case(1, 2, 3, 4, np.float64, 1.0, 3)
    forward = get_kernel("attention_softmax_forward", "numpy")
    for causal in (False, True):
        probs = forward(scores, 0.7, causal)
        analytic = get_kernel("attention_softmax_backward", "numpy")(dprobs, probs, 0.7)
        numeric = numerical_gradient(lambda z: forward(z, 0.7, causal), [scores], 0, dprobs)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_reference_matches_torch():
    torch = pytest.importorskip("torch")
    scores, dprobs = _case(2, 3, 5, 5, np.float32, 2.0, 4)
    z = torch.tensor(scores, requires_grad=True)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    p = torch.softmax((z * 0.5).masked_fill(~mask, float("-inf")), dim=-1)
    p.backward(torch.tensor(dprobs))
    probs = get_kernel("attention_softmax_forward", "numpy")(scores, 0.5, True)
    assert_close(probs, p.detach().numpy())
    assert_close(get_kernel("attention_softmax_backward", "numpy")(dprobs, probs, 0.5), z.grad.numpy())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_arguments_are_reported(backend):
    with pytest.raises(ValueError, match="attention_softmax_forward: scores must have 4 axes"):
        get_kernel("attention_softmax_forward", backend)(np.zeros((2, 3)), 1.0, True)
    with pytest.raises(ValueError, match="dprobs must have shape"):
        get_kernel("attention_softmax_backward", backend)(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 3)), 1.0)
