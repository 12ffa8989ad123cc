"""causal_attention_*: the Numba version (each (batch, head) pair's products through
OpenBLAS, serial or split between threads) against the batched NumPy reference, and
the reference against attention written out head by head."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.kernels import blas, get_kernel
from tinylm.kernels.testing import assert_close, parallel_drivers


def _case(batch, length, n_head, head, dtype, seed):
    rng = np.random.default_rng(seed)
    qkv = (rng.standard_normal((batch, length, 3 * n_head * head)) * 1.5).astype(dtype)
    g = rng.standard_normal((batch, length, n_head * head)).astype(dtype)
    return qkv, g, float(rng.uniform(0.1, 1.0))


def _run(backend, qkv, g, n_head, scale):
    y, probs = get_kernel("causal_attention_forward", backend)(qkv, n_head, scale)
    dqkv = get_kernel("causal_attention_backward", backend)(g, qkv, probs, n_head, scale)
    return y, probs, dqkv


CASES = dict(
    batch=st.integers(1, 3),
    length=st.integers(1, 9),
    n_head=st.integers(1, 3),
    head=st.integers(1, 5),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**31),
)


@given(**CASES)
def test_numba_matches_reference(batch, length, n_head, head, dtype, seed):
    qkv, g, scale = _case(batch, length, n_head, head, dtype, seed)
    expected = _run("numpy", qkv, g, n_head, scale)
    for name, got, want in zip(("y", "probs", "dqkv"), _run("numba", qkv, g, n_head, scale), expected):
        assert_close(got, want, scale=4, err_msg=name)


@settings(max_examples=25)
@given(**CASES)
def test_numba_pairs_split_between_threads_match_reference(batch, length, n_head, head, dtype, seed):
    qkv, g, scale = _case(batch, length, n_head, head, dtype, seed)
    expected = _run("numpy", qkv, g, n_head, scale)
    with parallel_drivers() as parallel:
        if not parallel:
            pytest.skip("Numba has one thread here")
        got = _run("numba", qkv, g, n_head, scale)
    for name, actual, want in zip(("y", "probs", "dqkv"), got, expected):
        assert_close(actual, want, scale=4, err_msg=name)


def test_numba_without_openblas_takes_the_batched_products():
    qkv, g, scale = _case(2, 7, 2, 3, np.float64, 5)
    expected = _run("numpy", qkv, g, 2, scale)
    with blas.pretend_no_openblas():
        got = _run("numba", qkv, g, 2, scale)
    for actual, want in zip(got, expected):
        assert_close(actual, want)


def test_reference_matches_attention_written_head_by_head():
    batch, length, n_head, head = 2, 6, 3, 4
    qkv, g, scale = _case(batch, length, n_head, head, np.float64, 11)
    y, probs, dqkv = _run("numpy", qkv, g, n_head, scale)
    width = n_head * head
    expected_dqkv = np.zeros_like(qkv)
    for b in range(batch):
        for h in range(n_head):
            cols = slice(h * head, (h + 1) * head)
            q, k, v = (qkv[b][:, i * width:(i + 1) * width][:, cols] for i in range(3))
            z = scale * q @ k.T + np.triu(np.full((length, length), -np.inf), 1)
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            np.testing.assert_allclose(probs[b, h], p, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(y[b][:, cols], p @ v, rtol=1e-12, atol=1e-14)
            dp = g[b][:, cols] @ v.T
            ds = scale * p * (dp - (dp * p).sum(axis=1, keepdims=True))
            for i, grad in enumerate((ds @ k, ds.T @ q, p.T @ g[b][:, cols])):
                expected_dqkv[b][:, i * width:(i + 1) * width][:, cols] = grad
    np.testing.assert_allclose(dqkv, expected_dqkv, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_shapes_are_refused_with_names(backend):
    forward = get_kernel("causal_attention_forward", backend)
    backward = get_kernel("causal_attention_backward", backend)
    qkv = np.zeros((2, 4, 12))
    with pytest.raises(ValueError, match=r"qkv must have shape \(B, T, 3 \* n_head \* D\) for n_head = 3, got"):
        forward(qkv, 3, 0.5)
    with pytest.raises(ValueError, match="qkv must have 3 axes, got shape"):
        forward(np.zeros((4, 12)), 2, 0.5)
    with pytest.raises(TypeError, match="qkv must be float32 or float64, got int64"):
        forward(np.zeros((2, 4, 12), np.int64), 2, 0.5)
    _, probs = forward(qkv, 2, 0.5)
    with pytest.raises(ValueError, match=r"g must have shape \(2, 4, 4\), got \(2, 4, 5\)"):
        backward(np.zeros((2, 4, 5)), qkv, probs, 2, 0.5)
    with pytest.raises(ValueError, match=r"probs must have shape \(2, 2, 4, 4\), got \(2, 2, 4, 3\)"):
        backward(np.zeros((2, 4, 4)), qkv, probs[..., :3], 2, 0.5)
