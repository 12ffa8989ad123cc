"""Causal multi-head self-attention on packed rows, forward and backward.

``qkv`` (B, T, 3C) is what a GPT's ``c_attn`` layer gives: per position the
queries, the keys, then the values, each with the ``n_head`` heads side by
side (head size D = C / n_head). For every (batch, head) pair, with q, k, v
the pair's (T, D) columns::

    P = softmax(scale * q k^T, causal)      (T, T), saved for the backward
    y = P v                                 (T, D), written to the head's columns of y (B, T, C)

and from the gradient g of y (the same columns)::

    dv = P^T g,   dP = g v^T,   dS = scale * P * (dP - rowsum(dP * P)),   dq = dS k,   dk = dS^T q

written to the pair's columns of dqkv (B, T, 3C). The softmax and its
backward are ``attention_softmax.py``'s.

The reference (and the CUDA version, with CuPy's matmul and the CUDA softmax)
multiplies all pairs at once with batched matmuls over strided views. The
Numba version runs each pair's products through OpenBLAS from compiled code
(``blas.gemm_into``, transposes included, no copies) with the softmax rows in
between, and splits the pairs between Numba's threads (``prange``): each
product is small (64 x 32 @ 32 x 64 for the GPT of ``benchmarks/compare.py``),
one OpenBLAS thread runs it alone, and NumPy's batched matmul runs them one
after the other on one core. OpenBLAS is held to one thread meanwhile
(``threads.blas_threads_at_most``): a parallel product inside the parallel
loop would need the threads that are busy running it (``blas_pool.py``).

At the GPT's shape the split about halves the kernel's time on two threads,
and the kernel beats both the batched matmuls and PyTorch's
``scaled_dot_product_attention``. The split pays only with OpenBLAS on
Numba's threads (``blas_pool.py``): otherwise OpenBLAS's own threads keep
polling the second core after each product and the pairs' second thread
gains nothing in a GPT step (measured: docs/performance.md, "Attention per
(batch, head) pair").
"""

import numpy as np
from numba import prange

from tinylm.backend import array_module

from ._common import check_float, check_like, chunk_bounds, chunk_count, jit, use_parallel
from .attention_softmax import (
    _backward_rows,
    _forward_rows,
    attention_softmax_backward_cuda,
    attention_softmax_backward_numba,
    attention_softmax_backward_reference,
    attention_softmax_forward_cuda,
    attention_softmax_forward_numba,
    attention_softmax_forward_reference,
)
from .blas import find_gemm, gemm_into
from .threads import blas_threads_at_most


def _check_forward(kernel, qkv, n_head):
    check_float(kernel, "qkv", qkv, ndim=3)
    if not isinstance(n_head, (int, np.integer)) or n_head < 1 or qkv.shape[2] % (3 * n_head):
        raise ValueError(
            f"{kernel}: qkv must have shape (B, T, 3 * n_head * D) for n_head = {n_head!r}, got {qkv.shape}"
        )
    batch, length, packed = qkv.shape
    return batch, length, int(n_head), packed // 3 // n_head


def _check_backward(kernel, g, qkv, probs, n_head):
    batch, length, n_head, head = _check_forward(kernel, qkv, n_head)
    check_like(kernel, "probs", probs, qkv.dtype, (batch, n_head, length, length))
    check_like(kernel, "g", g, qkv.dtype, (batch, length, n_head * head))
    return batch, length, n_head, head


def _packed_heads(qkv, n_head):
    """q, k, v (B, nh, T, D) as views of packed (B, T, 3C) rows."""
    batch, length, packed = qkv.shape
    heads = qkv.reshape(batch, length, 3, n_head, packed // 3 // n_head)
    return tuple(heads[:, :, i].transpose(0, 2, 1, 3) for i in range(3))


def _merged_heads_view(y, n_head):
    """(B, T, C) seen as (B, nh, T, D): head h is columns h*D:(h+1)*D."""
    batch, length, width = y.shape
    return y.reshape(batch, length, n_head, width // n_head).transpose(0, 2, 1, 3)


# --------------------------------------------------------------------------- batched matmuls
# (the reference, the CUDA version and the Numba version where there is no OpenBLAS)


def _forward_batched(softmax_forward, qkv, n_head, scale):
    xp = array_module(qkv)
    batch, length, packed = qkv.shape
    q, k, v = _packed_heads(qkv, n_head)
    scores = q @ xp.swapaxes(k, -1, -2)
    # no position or no sequence: nothing to normalize (the softmax kernels take no empty rows)
    probs = softmax_forward(scores, scale, True, 0) if scores.size else scores
    y = xp.empty((batch, length, packed // 3), dtype=qkv.dtype)
    xp.matmul(probs, v, out=_merged_heads_view(y, n_head))
    return y, probs


def _backward_batched(softmax_backward, g, qkv, probs, n_head, scale):
    xp = array_module(qkv)
    q, k, v = _packed_heads(qkv, n_head)
    g_heads = _merged_heads_view(g, n_head)
    dqkv = xp.empty_like(qkv)
    dq, dk, dv = _packed_heads(dqkv, n_head)
    xp.matmul(xp.swapaxes(probs, -1, -2), g_heads, out=dv)
    dprobs = g_heads @ xp.swapaxes(v, -1, -2)
    dscores = softmax_backward(dprobs, probs, scale) if probs.size else dprobs  # the kernel applies the scale
    xp.matmul(dscores, k, out=dq)
    xp.matmul(xp.swapaxes(dscores, -1, -2), q, out=dk)
    return dqkv


# --------------------------------------------------------------------------- NumPy reference


def causal_attention_forward_reference(qkv, n_head, scale):
    """qkv (B, T, 3C) -> ``(y (B, T, C), probs (B, n_head, T, T))``."""
    _check_forward("causal_attention_forward", qkv, n_head)
    return _forward_batched(attention_softmax_forward_reference, qkv, int(n_head), scale)


def causal_attention_backward_reference(g, qkv, probs, n_head, scale):
    """g (B, T, C), with the forward's qkv and probs -> dqkv (B, T, 3C)."""
    _check_backward("causal_attention_backward", g, qkv, probs, n_head)
    return _backward_batched(attention_softmax_backward_reference, g, qkv, probs, int(n_head), scale)


# --------------------------------------------------------------------------- Numba CPU


@jit
def _pair_views(qkv, n_head, pair):
    """The pair's batch index, its head's first column ``lo`` among the C columns, the
    head size, and its q, k, v (T, D) as views of ``qkv``."""
    width = qkv.shape[2] // 3
    head = width // n_head
    b, lo = pair // n_head, (pair % n_head) * head
    rows, k_lo, v_lo = qkv[b], width + lo, 2 * width + lo
    return b, lo, head, rows[:, lo:lo + head], rows[:, k_lo:k_lo + head], rows[:, v_lo:v_lo + head]


@jit
def _forward_pair(gemm, blas_int, qkv, n_head, scale, probs, y, pair):
    length = qkv.shape[1]
    b, lo, head, q, k, v = _pair_views(qkv, n_head, pair)
    p = probs[b, pair % n_head]
    gemm_into(gemm, blas_int, q, k, p, 0.0, False, True)  # scores = q k^T, into p
    _forward_rows(p, scale, True, 0, length, p, 0, length)  # softmax in place
    gemm_into(gemm, blas_int, p, v, y[b][:, lo:lo + head], 0.0)


@jit
def _backward_pair(gemm, blas_int, g, qkv, probs, n_head, scale, dqkv, dp, pair):
    length = qkv.shape[1]
    b, lo, head, q, k, v = _pair_views(qkv, n_head, pair)
    _, _, _, dq, dk, dv = _pair_views(dqkv, n_head, pair)
    g_head, p = g[b][:, lo:lo + head], probs[b, pair % n_head]
    gemm_into(gemm, blas_int, p, g_head, dv, 0.0, True, False)  # dv = P^T g
    gemm_into(gemm, blas_int, g_head, v, dp, 0.0, False, True)  # dP = g v^T
    _backward_rows(dp, p, scale, dp, 0, length)  # dS in place
    gemm_into(gemm, blas_int, dp, k, dq, 0.0)  # dq = dS k
    gemm_into(gemm, blas_int, dp, q, dk, 0.0, True, False)  # dk = dS^T q


@jit
def _forward_pairs(gemm, blas_int, qkv, n_head, scale, probs, y, start, stop):
    for pair in range(start, stop):
        _forward_pair(gemm, blas_int, qkv, n_head, scale, probs, y, pair)


@jit(parallel=True)
def _forward_parallel(gemm, blas_int, qkv, n_head, scale, probs, y, n_chunks):
    pairs = qkv.shape[0] * n_head
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(pairs, n_chunks, chunk)
        _forward_pairs(gemm, blas_int, qkv, n_head, scale, probs, y, start, stop)


@jit
def _backward_pairs(gemm, blas_int, g, qkv, probs, n_head, scale, dqkv, start, stop):
    length = qkv.shape[1]
    dp = np.empty((length, length), qkv.dtype)  # the pair's dP, then dS
    for pair in range(start, stop):
        _backward_pair(gemm, blas_int, g, qkv, probs, n_head, scale, dqkv, dp, pair)


@jit(parallel=True)
def _backward_parallel(gemm, blas_int, g, qkv, probs, n_head, scale, dqkv, n_chunks):
    pairs = qkv.shape[0] * n_head
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(pairs, n_chunks, chunk)
        _backward_pairs(gemm, blas_int, g, qkv, probs, n_head, scale, dqkv, start, stop)


def _pairs_in_parallel(batch, length, n_head, head):
    """Whether to split the pairs between threads: the multiply-adds of one of the
    products must pay for a parallel region, and there must be two pairs."""
    return batch * n_head > 1 and use_parallel(batch * n_head * length * length * head)


def causal_attention_forward_numba(qkv, n_head, scale):
    """Numba version of :func:`causal_attention_forward_reference`."""
    batch, length, n_head, head = _check_forward("causal_attention_forward", qkv, n_head)
    found = find_gemm(qkv.dtype)
    if found is None or qkv.size == 0:
        return _forward_batched(attention_softmax_forward_numba, qkv, n_head, scale)
    qkv = np.ascontiguousarray(qkv)
    probs = np.empty((batch, n_head, length, length), qkv.dtype)
    y = np.empty((batch, length, n_head * head), qkv.dtype)
    scale = qkv.dtype.type(scale)
    if _pairs_in_parallel(batch, length, n_head, head):
        with blas_threads_at_most(1):
            _forward_parallel(*found, qkv, n_head, scale, probs, y, chunk_count(batch * n_head))
    else:
        _forward_pairs(*found, qkv, n_head, scale, probs, y, 0, batch * n_head)
    return y, probs


def causal_attention_backward_numba(g, qkv, probs, n_head, scale):
    """Numba version of :func:`causal_attention_backward_reference`."""
    batch, length, n_head, head = _check_backward("causal_attention_backward", g, qkv, probs, n_head)
    found = find_gemm(qkv.dtype)
    if found is None or qkv.size == 0:
        return _backward_batched(attention_softmax_backward_numba, g, qkv, probs, n_head, scale)
    g, qkv, probs = (np.ascontiguousarray(a) for a in (g, qkv, probs))
    dqkv = np.empty_like(qkv)
    scale = qkv.dtype.type(scale)
    if _pairs_in_parallel(batch, length, n_head, head):
        with blas_threads_at_most(1):
            _backward_parallel(*found, g, qkv, probs, n_head, scale, dqkv, chunk_count(batch * n_head))
    else:
        _backward_pairs(*found, g, qkv, probs, n_head, scale, dqkv, 0, batch * n_head)
    return dqkv


# --------------------------------------------------------------------------- CUDA


def causal_attention_forward_cuda(qkv, n_head, scale):
    """CUDA version of :func:`causal_attention_forward_reference`: CuPy's batched matmuls and the CUDA softmax."""
    _check_forward("causal_attention_forward", qkv, n_head)
    return _forward_batched(attention_softmax_forward_cuda, qkv, int(n_head), scale)


def causal_attention_backward_cuda(g, qkv, probs, n_head, scale):
    """CUDA version of :func:`causal_attention_backward_reference`."""
    _check_backward("causal_attention_backward", g, qkv, probs, n_head)
    return _backward_batched(attention_softmax_backward_cuda, g, qkv, probs, int(n_head), scale)
