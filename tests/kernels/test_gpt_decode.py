"""gpt_decode_step: the Numba and CUDA versions against the NumPy reference, fed position by
position from an empty cache. (tests/models/test_decoding.py checks the decoder built on the
kernel against the GPT's full forward pass.)"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm import backend
from tinylm.kernels import get_kernel
from tinylm.kernels.gpt_decode import pack_gpt_weights
from tinylm.kernels.testing import assert_close

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")


def random_weights(rng, dtype, layers, width, vocab, block, bias):
    """Random (out, in) weights of a GPT, as the model holds them, packed for the kernel."""

    def matrix(out, inp):
        return rng.normal(0, 0.3, (out, inp)).astype(dtype)

    def vector(size, around=0.0):
        return (around + rng.normal(0, 0.3, size)).astype(dtype) if bias else None

    blocks = [
        {"ln_1_w": (1 + rng.normal(0, 0.3, width)).astype(dtype), "ln_1_b": vector(width),
         "attn_w": matrix(3 * width, width), "attn_b": vector(3 * width),
         "proj_w": matrix(width, width), "proj_b": vector(width),
         "ln_2_w": (1 + rng.normal(0, 0.3, width)).astype(dtype), "ln_2_b": vector(width),
         "fc_w": matrix(4 * width, width), "fc_b": vector(4 * width),
         "mlp_proj_w": matrix(width, 4 * width), "mlp_proj_b": vector(width)}
        for _ in range(layers)
    ]  # fmt: skip
    wte, wpe = matrix(vocab, width), matrix(block, width)
    final = ((1 + rng.normal(0, 0.3, width)).astype(dtype), vector(width))
    return pack_gpt_weights(np, np.dtype(dtype), wte, wpe, blocks, final, 1e-5)


def decode(backend_name, weights, tokens, n_head, approximate="none", move=lambda a: a):
    """Feed tokens (B, T) one position at a time; the logits of every position and the final cache."""
    layers, width = weights.attn_w.shape[0], weights.wte.shape[1]
    batch, length = tokens.shape
    storage = (layers, batch, n_head, weights.wpe.shape[0], width // n_head)
    keys, values = (move(np.zeros(storage, weights.wte.dtype)) for _ in range(2))
    weights = type(weights)(*(move(a) if isinstance(a, np.ndarray) else a for a in weights))
    step = get_kernel("gpt_decode_step", backend_name)
    logits = [backend.to_numpy(step(move(tokens[:, t].copy()), t, weights, keys, values, n_head, approximate))
              for t in range(length)]  # fmt: skip
    return np.stack(logits, axis=1), backend.to_numpy(keys), backend.to_numpy(values)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=10)
@given(data=st.data())
def test_numba_equals_the_reference(dtype, data):
    n_head = data.draw(st.sampled_from([1, 2, 4]))
    width = n_head * data.draw(st.sampled_from([2, 4, 8]))
    layers, batch = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    block = data.draw(st.integers(1, 10))
    length = data.draw(st.integers(1, block))
    bias = data.draw(st.booleans())
    approximate = data.draw(st.sampled_from(["none", "tanh"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    weights = random_weights(rng, dtype, layers, width, 11, block, bias)
    tokens = rng.integers(0, 11, (batch, length))
    expected = decode("numpy", weights, tokens, n_head, approximate)
    actual = decode("numba", weights, tokens, n_head, approximate)
    for name, got, want in zip(("logits", "keys", "values"), actual, expected):
        if name != "logits":  # positions past `length` were never written
            got, want = got[:, :, :, :length], want[:, :, :, :length]
        assert_close(got, want, scale=10, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_equals_the_reference(dtype):
    rng = np.random.default_rng(5)
    weights = random_weights(rng, dtype, layers=2, width=4, vocab=5, block=3, bias=True)
    tokens = rng.integers(0, 5, (2, 3))
    move = (lambda a: backend.to_device(a, "cuda")) if backend.cuda_is_available() else (lambda a: a)
    expected = decode("numpy", weights, tokens, n_head=2)
    actual = decode("cuda", weights, tokens, n_head=2, move=move)
    for name, got, want in zip(("logits", "keys", "values"), actual, expected):
        assert_close(got, want, scale=10, err_msg=name)


def test_bad_arguments_are_named():
    rng = np.random.default_rng(0)
    weights = random_weights(rng, np.float64, layers=1, width=4, vocab=5, block=3, bias=False)
    keys = np.zeros((1, 2, 2, 3, 2))
    step = get_kernel("gpt_decode_step", "numba")
    with pytest.raises(IndexError, match=r"token id 5 is outside \[0, 5\)"):
        step(np.array([0, 5]), 0, weights, keys, keys.copy(), 2)
    with pytest.raises(ValueError, match=r"position 3 is outside the block \[0, 3\)"):
        step(np.array([0, 1]), 3, weights, keys, keys.copy(), 2)
    with pytest.raises(ValueError, match=r"keys must have shape \(1, 2, 2, 3, 2\), got \(1, 2, 2, 2, 2\)"):
        step(np.array([0, 1]), 0, weights, keys[:, :, :, :2], keys.copy(), 2)
    with pytest.raises(ValueError, match="n_head must divide the width 4, got 3"):
        step(np.array([0, 1]), 0, weights, keys, keys.copy(), 3)
    with pytest.raises(TypeError, match="tokens must be a 1-D integer array"):
        step(np.array([[0, 1]]), 0, weights, keys, keys.copy(), 2)
