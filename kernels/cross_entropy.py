"""Softmax cross-entropy, one loss per row, with ``ignore_index`` and label smoothing.

For one row of logits ``x`` (C values) with target ``t``, let ``m = max(x)``,
``s = sum_j exp(x_j - m)`` and ``lse = m + log(s)``. With label smoothing ``eps``
(as in PyTorch: the target distribution is ``(1 - eps) * onehot(t) + eps / C``)

    loss = (1 - eps) * (lse - x_t) + eps * (lse - mean(x))
         = log(s) + (1 - eps) * (m - x_t) + eps * mean(m - x)

All three implementations compute the second form: every term is >= 0, so
nothing cancels, and a loss is never negative even for logits of +-1e4. The
backward recomputes the softmax from the saved ``lse``:

    dlogits = dloss * (softmax(x) - (1 - eps) * onehot(t) - eps / C)

A row whose target equals ``ignore_index`` gets loss 0 and a zero gradient row.
A target outside ``[0, C)`` that is not ``ignore_index`` is the caller's error to
report; the kernels never read out of bounds for it and give that row NaN.

Precision: sums are accumulated in the input dtype. The terms of ``s`` lie in
(0, 1] and the largest is exactly 1, so a float32 sum over C terms is off by at
most about C * 6e-8 relative (and typically sqrt(C) * 6e-8), which moves the
loss by far less than training noise even at C = 50257.
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
    elementwise_launch,
    jit,
    lane_max,
    lane_sum,
    use_parallel,
)
from .fastmath import exp_into


def _check(kernel, logits, targets):
    check_float(kernel, "logits", logits, ndim=2)
    if targets.ndim != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"{kernel}: targets must have shape ({logits.shape[0]},), got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{kernel}: targets must be integers, got {targets.dtype}")
    if logits.shape[1] == 0:
        raise ValueError(f"{kernel}: logits need at least one class, got shape {logits.shape}")


# --------------------------------------------------------------------------- NumPy reference


def cross_entropy_forward_reference(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """Per-row loss and log-sum-exp: ``(losses (N,), lse (N,))`` in the logits' dtype."""
    _check("cross_entropy_forward", logits, targets)
    n, c = logits.shape
    dtype = logits.dtype.type
    eps = dtype(label_smoothing)
    m = logits.max(axis=1)
    gap = m[:, None] - logits  # m - x >= 0
    log_s = np.log(np.exp(-gap).sum(axis=1))
    lse = m + log_s
    valid = targets != ignore_index
    in_range = (targets >= 0) & (targets < c)
    gap_target = gap[np.arange(n), np.where(in_range, targets, 0)]
    losses = log_s + (1 - eps) * gap_target
    if label_smoothing != 0:
        losses = losses + eps * gap.mean(axis=1, dtype=logits.dtype)
    losses = np.where(in_range, losses, dtype(np.nan))
    losses = np.where(valid, losses, dtype(0))
    return losses.astype(logits.dtype, copy=False), lse


def cross_entropy_backward_reference(dlosses, logits, targets, lse, ignore_index=-100, label_smoothing=0.0):
    """Gradient of ``sum(dlosses * losses)`` with respect to the logits, shape (N, C)."""
    _check("cross_entropy_backward", logits, targets)
    n, c = logits.shape
    dtype = logits.dtype.type
    eps = dtype(label_smoothing)
    probs = np.exp(logits - lse[:, None])
    target_dist = np.full((n, c), eps / dtype(c), dtype=logits.dtype)
    in_range = (targets >= 0) & (targets < c)
    rows = np.flatnonzero(in_range)
    target_dist[rows, targets[rows]] += 1 - eps
    dlogits = dlosses[:, None] * (probs - target_dist)
    dlogits[~in_range] = np.nan
    dlogits[targets == ignore_index] = 0
    return dlogits


# --------------------------------------------------------------------------- Numba CPU


@jit
def _forward_rows(logits, targets, ignore_index, eps, losses, lse, start, stop):
    c = logits.shape[1]
    dtype = logits.dtype.type
    gaps = np.empty(c, logits.dtype)  # x - max(x) <= 0
    exps = np.empty(c, logits.dtype)
    for i in range(start, stop):
        row = logits[i]
        m = lane_max(row)
        for j in range(c):
            gaps[j] = row[j] - m
        exp_into(gaps, exps)
        log_s = math.log(lane_sum(exps))
        lse[i] = m + log_s
        t = targets[i]
        if t == ignore_index:
            losses[i] = dtype(0)
        elif t < 0 or t >= c:
            losses[i] = dtype(np.nan)
        else:
            # eps * mean(m - x) = -eps * mean(gaps)
            losses[i] = log_s + (dtype(1) - eps) * (m - row[t]) - eps * (lane_sum(gaps) / dtype(c))


@jit(parallel=True)
def _forward_parallel(logits, targets, ignore_index, eps, losses, lse, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(logits.shape[0], n_chunks, chunk)
        _forward_rows(logits, targets, ignore_index, eps, losses, lse, start, stop)


@jit
def _backward_rows(dlosses, logits, targets, lse, ignore_index, eps, dlogits, start, stop):
    c = logits.shape[1]
    dtype = logits.dtype.type
    shifted = np.empty(c, logits.dtype)
    smooth = eps / dtype(c)
    for i in range(start, stop):
        row, out = logits[i], dlogits[i]
        t = targets[i]
        if t == ignore_index or t < 0 or t >= c:
            fill = dtype(0) if t == ignore_index else dtype(np.nan)
            for j in range(c):
                out[j] = fill
            continue
        for j in range(c):
            shifted[j] = row[j] - lse[i]
        exp_into(shifted, out)  # the softmax row
        g = dlosses[i]
        for j in range(c):
            out[j] = g * (out[j] - smooth)
        out[t] -= g * (dtype(1) - eps)


@jit(parallel=True)
def _backward_parallel(dlosses, logits, targets, lse, ignore_index, eps, dlogits, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(logits.shape[0], n_chunks, chunk)
        _backward_rows(dlosses, logits, targets, lse, ignore_index, eps, dlogits, start, stop)


def _prepare(kernel, logits, targets):
    _check(kernel, logits, targets)
    return np.ascontiguousarray(logits), np.ascontiguousarray(targets, dtype=np.int64)


def cross_entropy_forward_numba(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """Numba version of :func:`cross_entropy_forward_reference`."""
    logits, targets = _prepare("cross_entropy_forward", logits, targets)
    n = logits.shape[0]
    losses = np.empty(n, logits.dtype)
    lse = np.empty(n, logits.dtype)
    args = (logits, targets, np.int64(ignore_index), logits.dtype.type(label_smoothing), losses, lse)
    if use_parallel(logits.size, transcendental=True):
        _forward_parallel(*args, chunk_count(n))
    else:
        _forward_rows(*args, 0, n)
    return losses, lse


def cross_entropy_backward_numba(dlosses, logits, targets, lse, ignore_index=-100, label_smoothing=0.0):
    """Numba version of :func:`cross_entropy_backward_reference`."""
    logits, targets = _prepare("cross_entropy_backward", logits, targets)
    check_like("cross_entropy_backward", "dlosses", dlosses, logits.dtype, (logits.shape[0],))
    check_like("cross_entropy_backward", "lse", lse, logits.dtype, (logits.shape[0],))
    dlogits = np.empty_like(logits)
    args = (
        np.ascontiguousarray(dlosses), logits, targets, np.ascontiguousarray(lse),
        np.int64(ignore_index), logits.dtype.type(label_smoothing), dlogits,
    )
    if use_parallel(logits.size, transcendental=True):
        _backward_parallel(*args, chunk_count(logits.shape[0]))
    else:
        _backward_rows(*args, 0, logits.shape[0])
    return dlogits


# --------------------------------------------------------------------------- CUDA


@cuda.jit
def _forward_cuda_kernel(logits, targets, ignore_index, eps, losses, lse):
    # One block per row; the block's threads stride over the classes.
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    scratch = cuda.shared.array(CUDA_MAX_BLOCK, logits.dtype)
    c = logits.shape[1]
    dtype = logits.dtype.type
    m = dtype(-math.inf)
    for j in range(tid, c, cuda.blockDim.x):
        m = max(m, logits[i, j])
    m = cuda_block_max(scratch, m)
    s = dtype(0)
    gap_sum = dtype(0)
    for j in range(tid, c, cuda.blockDim.x):
        gap = m - logits[i, j]
        s += math.exp(-gap)
        gap_sum += gap
    s = cuda_block_sum(scratch, s)
    gap_sum = cuda_block_sum(scratch, gap_sum)
    if tid == 0:
        log_s = math.log(s)
        lse[i] = m + log_s
        t = targets[i]
        if t == ignore_index:
            losses[i] = dtype(0)
        elif t < 0 or t >= c:
            losses[i] = dtype(math.nan)
        else:
            losses[i] = log_s + (dtype(1) - eps) * (m - logits[i, t]) + eps * (gap_sum / dtype(c))


@cuda.jit
def _backward_cuda_kernel(dlosses, logits, targets, lse, ignore_index, eps, dlogits):
    # One thread per logit.
    k = cuda.grid(1)
    n, c = logits.shape
    if k >= n * c:
        return
    i = k // c
    j = k - i * c
    dtype = logits.dtype.type
    t = targets[i]
    if t == ignore_index:
        dlogits[i, j] = dtype(0)
    elif t < 0 or t >= c:
        dlogits[i, j] = dtype(math.nan)
    else:
        value = math.exp(logits[i, j] - lse[i]) - eps / dtype(c)
        if j == t:
            value -= dtype(1) - eps
        dlogits[i, j] = dlosses[i] * value


def cross_entropy_forward_cuda(logits, targets, ignore_index=-100, label_smoothing=0.0):
    """CUDA version of :func:`cross_entropy_forward_reference` (CuPy arrays in and out)."""
    _check("cross_entropy_forward", logits, targets)
    xp = array_module(logits)
    logits = xp.ascontiguousarray(logits)
    targets = xp.ascontiguousarray(targets, dtype=np.int64)
    n, c = logits.shape
    losses = xp.empty(n, logits.dtype)
    lse = xp.empty(n, logits.dtype)
    if n:
        _forward_cuda_kernel[n, block_size_for(c)](
            logits, targets, np.int64(ignore_index), logits.dtype.type(label_smoothing), losses, lse
        )
    return losses, lse


def cross_entropy_backward_cuda(dlosses, logits, targets, lse, ignore_index=-100, label_smoothing=0.0):
    """CUDA version of :func:`cross_entropy_backward_reference` (CuPy arrays in and out)."""
    _check("cross_entropy_backward", logits, targets)
    xp = array_module(logits)
    logits = xp.ascontiguousarray(logits)
    dlogits = xp.empty_like(logits)
    if logits.size:
        blocks, threads = elementwise_launch(logits.size)
        _backward_cuda_kernel[blocks, threads](
            xp.ascontiguousarray(dlosses), logits, xp.ascontiguousarray(targets, dtype=np.int64),
            xp.ascontiguousarray(lse), np.int64(ignore_index), logits.dtype.type(label_smoothing), dlogits,
        )
    return dlogits
