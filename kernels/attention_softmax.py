"""The softmax of attention scores, with scaling and an optional causal mask.

For scores (B, H, T, S) (T queries, S keys), each row of the output is the
softmax over the keys of ``scale * scores``. With ``causal=True`` the query at
row i has absolute position ``query_offset + i`` and sees only the keys
``j <= query_offset + i``; the others get probability exactly 0. The default
``query_offset = S - T`` puts the queries at the end of the keys, which is both
ordinary self-attention (T = S, offset 0) and decoding with a key/value cache
(T new queries after S - T cached keys). A row that sees no key at all (only
possible with a negative offset) gets all zeros rather than NaN.

Backward, from the saved probabilities p (masked entries are 0, so they stay 0)::

    dscores = scale * p * (dp - sum(dp * p, axis=-1))

Sums are accumulated in the input dtype: each row has S terms in [0, 1].
"""

import math

import numpy as np
from numba import cuda, prange

from tinylm.backend import array_module

from ._common import (
    CUDA_MAX_BLOCK,
    block_size_for,
    check_float,
    check_like,
    chunk_bounds,
    chunk_count,
    cuda_block_max,
    cuda_block_sum,
    jit,
    lane_dot,
    lane_max,
    lane_sum,
    use_parallel,
)
from .fastmath import exp_into


def _check_forward(scores, query_offset):
    check_float("attention_softmax_forward", "scores", scores, ndim=4)
    t, s = scores.shape[2], scores.shape[3]
    return s - t if query_offset is None else int(query_offset)


def _check_backward(dprobs, probs):
    check_float("attention_softmax_backward", "probs", probs, ndim=4)
    check_like("attention_softmax_backward", "dprobs", dprobs, probs.dtype, probs.shape)


# --------------------------------------------------------------------------- NumPy reference


def attention_softmax_forward_reference(scores, scale, causal, query_offset=None):
    """``softmax(scale * scores, axis=-1)`` with the causal mask; shape and dtype of ``scores``."""
    query_offset = _check_forward(scores, query_offset)
    t, s = scores.shape[2], scores.shape[3]
    z = scores * scores.dtype.type(scale)
    if causal:
        visible = np.arange(s)[None, :] <= query_offset + np.arange(t)[:, None]  # (T, S)
        z = np.where(visible, z, -np.inf)
    m = z.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # a fully masked row: keep exp(-inf - 0) = 0
    e = np.exp(z - m)
    total = e.sum(axis=-1, keepdims=True)
    return np.where(total > 0, e / np.where(total > 0, total, 1), 0).astype(scores.dtype, copy=False)


def attention_softmax_backward_reference(dprobs, probs, scale):
    """``scale * p * (dp - sum(dp * p, -1))``."""
    _check_backward(dprobs, probs)
    dot = (dprobs * probs).sum(axis=-1, keepdims=True)
    return probs.dtype.type(scale) * probs * (dprobs - dot)


# --------------------------------------------------------------------------- Numba CPU
#
# The (B, H, T, S) arrays are handled as B*H*T rows of S; row r is query r % T.


@jit
def _forward_rows(z, scale, causal, query_offset, n_queries, probs, start, stop):
    s = z.shape[1]
    dtype = z.dtype.type
    shifted = np.empty(s, z.dtype)
    for r in range(start, stop):
        row, out = z[r], probs[r]
        visible = s
        if causal:
            visible = min(s, max(0, query_offset + r % n_queries + 1))
        for j in range(visible, s):
            out[j] = dtype(0)
        if visible == 0:
            continue
        for j in range(visible):
            shifted[j] = scale * row[j]
        m = lane_max(shifted[:visible])
        for j in range(visible):
            shifted[j] -= m
        exp_into(shifted[:visible], out[:visible])
        total = lane_sum(out[:visible])
        for j in range(visible):
            out[j] = out[j] / total


@jit(parallel=True)
def _forward_parallel(z, scale, causal, query_offset, n_queries, probs, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(z.shape[0], n_chunks, chunk)
        _forward_rows(z, scale, causal, query_offset, n_queries, probs, start, stop)


@jit
def _backward_rows(dprobs, probs, scale, dscores, start, stop):
    for r in range(start, stop):
        p, dp, out = probs[r], dprobs[r], dscores[r]
        dot = lane_dot(dp, p)
        for j in range(p.shape[0]):
            out[j] = scale * p[j] * (dp[j] - dot)


@jit(parallel=True)
def _backward_parallel(dprobs, probs, scale, dscores, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(probs.shape[0], n_chunks, chunk)
        _backward_rows(dprobs, probs, scale, dscores, start, stop)


def _rows(array):
    return np.ascontiguousarray(array).reshape(-1, array.shape[-1])


def attention_softmax_forward_numba(scores, scale, causal, query_offset=None):
    """Numba version of :func:`attention_softmax_forward_reference`."""
    query_offset = _check_forward(scores, query_offset)
    z = _rows(scores)
    probs = np.empty_like(z)
    args = (z, scores.dtype.type(scale), bool(causal), np.int64(query_offset), np.int64(scores.shape[2]), probs)
    if use_parallel(z.size, transcendental=True):
        _forward_parallel(*args, chunk_count(z.shape[0]))
    else:
        _forward_rows(*args, 0, z.shape[0])
    return probs.reshape(scores.shape)


def attention_softmax_backward_numba(dprobs, probs, scale):
    """Numba version of :func:`attention_softmax_backward_reference`."""
    _check_backward(dprobs, probs)
    p = _rows(probs)
    dscores = np.empty_like(p)
    args = (_rows(dprobs), p, probs.dtype.type(scale), dscores)
    if use_parallel(p.size):
        _backward_parallel(*args, chunk_count(p.shape[0]))
    else:
        _backward_rows(*args, 0, p.shape[0])
    return dscores.reshape(probs.shape)


# --------------------------------------------------------------------------- CUDA


@cuda.jit(device=True)
def cuda_softmax_row(z, scale, visible, probs, scratch):
    """probs = softmax(scale * z[:visible]), zeros after, for one row (S,), by all the
    threads of a block, which stride over the keys; ``scratch`` is shared memory of
    ``CUDA_MAX_BLOCK``. ``probs`` may be ``z`` itself. Also ``gpt_decode``'s softmax."""
    tid, step = cuda.threadIdx.x, cuda.blockDim.x  # read before any barrier: see cuda_layernorm_row
    dtype = z.dtype.type
    m = dtype(-math.inf)
    for j in range(tid, visible, step):
        m = max(m, scale * z[j])
    m = cuda_block_max(scratch, m)
    total = dtype(0)
    for j in range(tid, visible, step):
        total += math.exp(scale * z[j] - m)
    total = cuda_block_sum(scratch, total)
    for j in range(tid, z.shape[0], step):  # each thread writes only what it reads
        if j < visible:
            probs[j] = math.exp(scale * z[j] - m) / total
        else:
            probs[j] = dtype(0)


@cuda.jit
def _forward_cuda_kernel(z, scale, causal, query_offset, n_queries, probs):
    # One block per row.
    r = cuda.blockIdx.x
    scratch = cuda.shared.array(CUDA_MAX_BLOCK, z.dtype)
    s = z.shape[1]
    visible = s
    if causal:
        visible = min(s, max(0, query_offset + r % n_queries + 1))
    cuda_softmax_row(z[r], scale, visible, probs[r], scratch)


@cuda.jit
def _backward_cuda_kernel(dprobs, probs, scale, dscores):
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    scratch = cuda.shared.array(CUDA_MAX_BLOCK, probs.dtype)
    s = probs.shape[1]
    dot = probs.dtype.type(0)
    for j in range(tid, s, cuda.blockDim.x):
        dot += dprobs[r, j] * probs[r, j]
    dot = cuda_block_sum(scratch, dot)
    for j in range(tid, s, cuda.blockDim.x):
        dscores[r, j] = scale * probs[r, j] * (dprobs[r, j] - dot)


def attention_softmax_forward_cuda(scores, scale, causal, query_offset=None):
    """CUDA version of :func:`attention_softmax_forward_reference` (CuPy arrays in and out)."""
    query_offset = _check_forward(scores, query_offset)
    xp = array_module(scores)
    z = xp.ascontiguousarray(scores).reshape(-1, scores.shape[-1])
    probs = xp.empty_like(z)
    if z.size:
        _forward_cuda_kernel[z.shape[0], block_size_for(z.shape[1])](
            z, scores.dtype.type(scale), bool(causal), np.int64(query_offset), np.int64(scores.shape[2]), probs
        )
    return probs.reshape(scores.shape)


def attention_softmax_backward_cuda(dprobs, probs, scale):
    """CUDA version of :func:`attention_softmax_backward_reference` (CuPy arrays in and out)."""
    _check_backward(dprobs, probs)
    xp = array_module(probs)
    p = xp.ascontiguousarray(probs).reshape(-1, probs.shape[-1])
    dscores = xp.empty_like(p)
    if p.size:
        _backward_cuda_kernel[p.shape[0], block_size_for(p.shape[1])](
            xp.ascontiguousarray(dprobs).reshape(-1, probs.shape[-1]), p, probs.dtype.type(scale), dscores
        )
    return dscores.reshape(probs.shape)
