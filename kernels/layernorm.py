"""Layer normalization over the last axis of an (N, C) array, as ``torch.nn.LayerNorm``.

Forward, for each row x (C values)::

    mean = sum(x) / C
    rstd = 1 / sqrt(sum((x - mean)**2) / C + eps)      (biased variance, as PyTorch)
    xhat = (x - mean) * rstd
    y    = xhat * weight + bias                          (either may be None)

``mean`` and ``rstd`` are returned for the backward, which rebuilds ``xhat``
from them and, with ``dnorm = dy * weight``::

    dx      = rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat))
    dweight = sum over rows of dy * xhat
    dbias   = sum over rows of dy

The variance is computed in two passes (mean first, then squared deviations),
so it does not cancel catastrophically for rows with a large mean. Sums are
accumulated in the input dtype: a float32 row sum over C terms is off by about
sqrt(C) * 6e-8 relative, far below what a float32 LayerNorm can resolve.
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
    cuda_block_sum,
    elementwise_launch,
    jit,
    lane_dot,
    lane_sum,
    use_parallel,
)


def _check_forward(x, weight, bias):
    check_float("layernorm_forward", "x", x, ndim=2)
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None:
            check_like("layernorm_forward", name, param, x.dtype, (x.shape[1],))


def _check_backward(dy, x, weight, mean, rstd):
    check_float("layernorm_backward", "x", x, ndim=2)
    check_like("layernorm_backward", "dy", dy, x.dtype, x.shape)
    check_like("layernorm_backward", "mean", mean, x.dtype, (x.shape[0],))
    check_like("layernorm_backward", "rstd", rstd, x.dtype, (x.shape[0],))
    if weight is not None:
        check_like("layernorm_backward", "weight", weight, x.dtype, (x.shape[1],))


# --------------------------------------------------------------------------- NumPy reference


def layernorm_forward_reference(x, weight, bias, eps=1e-5):
    """``(y (N, C), mean (N,), rstd (N,))`` in ``x``'s dtype."""
    _check_forward(x, weight, bias)
    mean = x.mean(axis=1)
    centered = x - mean[:, None]
    var = (centered * centered).mean(axis=1)
    rstd = 1 / np.sqrt(var + x.dtype.type(eps))
    y = centered * rstd[:, None]
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y, mean, rstd


def layernorm_backward_reference(dy, x, weight, mean, rstd, *, has_bias=None):
    """``(dx, dweight, dbias)``; ``dweight`` is None when ``weight`` is None.

    ``dbias`` is None when ``has_bias`` is false; ``has_bias=None`` (the default)
    means "there is a bias exactly when there is a weight", which is
    ``nn.LayerNorm(elementwise_affine=...)``. Pass ``has_bias=False`` for a
    weight without a bias (nanoGPT's ``bias=False``).
    """
    _check_backward(dy, x, weight, mean, rstd)
    has_bias = weight is not None if has_bias is None else has_bias
    xhat = (x - mean[:, None]) * rstd[:, None]
    dnorm = dy * weight if weight is not None else dy
    dx = rstd[:, None] * (
        dnorm - dnorm.mean(axis=1, keepdims=True) - xhat * (dnorm * xhat).mean(axis=1, keepdims=True)
    )
    dweight = (dy * xhat).sum(axis=0) if weight is not None else None
    dbias = dy.sum(axis=0) if has_bias else None
    return dx, dweight, dbias


# --------------------------------------------------------------------------- Numba CPU
#
# A missing weight or bias is passed as ones / zeros: x * 1 + 0 is exactly x, so
# the results are the same bit for bit and there is one compiled path, not four.


@jit
def _forward_rows(x, weight, bias, eps, y, mean, rstd, start, stop):
    c = x.shape[1]
    dtype = x.dtype.type
    for i in range(start, stop):
        row, out = x[i], y[i]
        mu = lane_sum(row) / dtype(c)
        for j in range(c):
            out[j] = row[j] - mu
        r = dtype(1) / math.sqrt(lane_dot(out, out) / dtype(c) + eps)
        for j in range(c):
            out[j] = out[j] * r * weight[j] + bias[j]
        mean[i] = mu
        rstd[i] = r


@jit(parallel=True)
def _forward_parallel(x, weight, bias, eps, y, mean, rstd, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(x.shape[0], n_chunks, chunk)
        _forward_rows(x, weight, bias, eps, y, mean, rstd, start, stop)


@jit
def _backward_rows(dy, x, weight, mean, rstd, start, stop, dx, dweight, dbias, xhat):
    # Rows start..stop; dweight and dbias (C,) are this chunk's own partial sums.
    c = x.shape[1]
    dtype = x.dtype.type
    for i in range(start, stop):
        row, grad, out = x[i], dy[i], dx[i]
        mu, r = mean[i], rstd[i]
        for j in range(c):
            xhat[j] = (row[j] - mu) * r
            out[j] = grad[j] * weight[j]  # dnorm, kept in dx's row until the end
        dnorm_mean = lane_sum(out) / dtype(c)
        dnorm_xhat_mean = lane_dot(out, xhat) / dtype(c)
        for j in range(c):
            out[j] = r * (out[j] - dnorm_mean - xhat[j] * dnorm_xhat_mean)
            dweight[j] += grad[j] * xhat[j]
            dbias[j] += grad[j]


@jit
def _backward_serial(dy, x, weight, mean, rstd, dx, dweight, dbias):
    xhat = np.empty(x.shape[1], x.dtype)
    _backward_rows(dy, x, weight, mean, rstd, 0, x.shape[0], dx, dweight[0], dbias[0], xhat)


@jit(parallel=True)
def _backward_parallel(dy, x, weight, mean, rstd, dx, dweight, dbias):
    # dweight, dbias: (n_chunks, C) partial sums, one row per chunk, added up by the caller.
    n_chunks = dweight.shape[0]
    for chunk in prange(n_chunks):
        xhat = np.empty(x.shape[1], x.dtype)
        start, stop = chunk_bounds(x.shape[0], n_chunks, chunk)
        _backward_rows(dy, x, weight, mean, rstd, start, stop, dx, dweight[chunk], dbias[chunk], xhat)


def _affine_or_default(param, value, c, dtype):
    return np.full(c, value, dtype) if param is None else np.ascontiguousarray(param)


def layernorm_forward_numba(x, weight, bias, eps=1e-5):
    """Numba version of :func:`layernorm_forward_reference`."""
    _check_forward(x, weight, bias)
    x = np.ascontiguousarray(x)
    n, c = x.shape
    weight = _affine_or_default(weight, 1, c, x.dtype)
    bias = _affine_or_default(bias, 0, c, x.dtype)
    y = np.empty_like(x)
    mean = np.empty(n, x.dtype)
    rstd = np.empty(n, x.dtype)
    args = (x, weight, bias, x.dtype.type(eps), y, mean, rstd)
    if use_parallel(x.size):
        _forward_parallel(*args, chunk_count(n))
    else:
        _forward_rows(*args, 0, n)
    return y, mean, rstd


def layernorm_backward_numba(dy, x, weight, mean, rstd, *, has_bias=None):
    """Numba version of :func:`layernorm_backward_reference`."""
    _check_backward(dy, x, weight, mean, rstd)
    has_bias = weight is not None if has_bias is None else has_bias
    x = np.ascontiguousarray(x)
    n, c = x.shape
    dx = np.empty_like(x)
    parallel = use_parallel(x.size)
    n_chunks = chunk_count(n) if parallel else 1
    dweight = np.zeros((n_chunks, c), x.dtype)
    dbias = np.zeros((n_chunks, c), x.dtype)
    args = (
        np.ascontiguousarray(dy), x, _affine_or_default(weight, 1, c, x.dtype),
        np.ascontiguousarray(mean), np.ascontiguousarray(rstd), dx, dweight, dbias,
    )
    (_backward_parallel if parallel else _backward_serial)(*args)
    dweight = dweight.sum(axis=0) if weight is not None else None
    dbias = dbias.sum(axis=0) if has_bias else None
    return dx, dweight, dbias


# --------------------------------------------------------------------------- CUDA


@cuda.jit(device=True)
def cuda_layernorm_row(x, weight, bias, eps, y, scratch):
    """y = layer_norm(x) for one row x (C,), by all the threads of a block, which
    stride over the features; ``scratch`` is shared memory of ``CUDA_MAX_BLOCK``.
    Returns (mean, rstd). Also ``gpt_decode``'s layer norm."""
    # Thread index and block size are read once, before any barrier: Numba's
    # CUDA simulator gives a device function called from another module's
    # kernel the fake ``cuda`` only until the first of its threads returns.
    tid, step = cuda.threadIdx.x, cuda.blockDim.x
    c = x.shape[0]
    dtype = x.dtype.type
    total = dtype(0)
    for j in range(tid, c, step):
        total += x[j]
    mu = cuda_block_sum(scratch, total) / dtype(c)
    total = dtype(0)
    for j in range(tid, c, step):
        d = x[j] - mu
        total += d * d
    r = dtype(1) / math.sqrt(cuda_block_sum(scratch, total) / dtype(c) + eps)
    for j in range(tid, c, step):
        y[j] = (x[j] - mu) * r * weight[j] + bias[j]
    return mu, r


@cuda.jit
def _forward_cuda_kernel(x, weight, bias, eps, y, mean, rstd):
    # One block per row.
    i = cuda.blockIdx.x
    scratch = cuda.shared.array(CUDA_MAX_BLOCK, x.dtype)
    mu, r = cuda_layernorm_row(x[i], weight, bias, eps, y[i], scratch)
    if cuda.threadIdx.x == 0:
        mean[i] = mu
        rstd[i] = r


@cuda.jit
def _backward_dx_cuda_kernel(dy, x, weight, mean, rstd, dx):
    # One block per row: the two row means, then dx.
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    scratch = cuda.shared.array(CUDA_MAX_BLOCK, x.dtype)
    c = x.shape[1]
    dtype = x.dtype.type
    mu, r = mean[i], rstd[i]
    sum_dnorm = dtype(0)
    sum_dnorm_xhat = dtype(0)
    for j in range(tid, c, cuda.blockDim.x):
        dnorm = dy[i, j] * weight[j]
        sum_dnorm += dnorm
        sum_dnorm_xhat += dnorm * (x[i, j] - mu) * r
    dnorm_mean = cuda_block_sum(scratch, sum_dnorm) / dtype(c)
    dnorm_xhat_mean = cuda_block_sum(scratch, sum_dnorm_xhat) / dtype(c)
    for j in range(tid, c, cuda.blockDim.x):
        xhat = (x[i, j] - mu) * r
        dx[i, j] = r * (dy[i, j] * weight[j] - dnorm_mean - xhat * dnorm_xhat_mean)


@cuda.jit
def _backward_params_cuda_kernel(dy, x, mean, rstd, dweight, dbias):
    # One thread per feature, summing down its column: neighbouring threads read
    # neighbouring addresses, and the sum is deterministic (no atomics).
    j = cuda.grid(1)
    n, c = x.shape
    if j >= c:
        return
    dtype = x.dtype.type
    sum_w = dtype(0)
    sum_b = dtype(0)
    for i in range(n):
        sum_w += dy[i, j] * (x[i, j] - mean[i]) * rstd[i]
        sum_b += dy[i, j]
    dweight[j] = sum_w
    dbias[j] = sum_b


def layernorm_forward_cuda(x, weight, bias, eps=1e-5):
    """CUDA version of :func:`layernorm_forward_reference` (CuPy arrays in and out)."""
    _check_forward(x, weight, bias)
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    n, c = x.shape
    weight = xp.ones(c, x.dtype) if weight is None else xp.ascontiguousarray(weight)
    bias = xp.zeros(c, x.dtype) if bias is None else xp.ascontiguousarray(bias)
    y = xp.empty_like(x)
    mean = xp.empty(n, x.dtype)
    rstd = xp.empty(n, x.dtype)
    if n:
        _forward_cuda_kernel[n, block_size_for(c)](x, weight, bias, x.dtype.type(eps), y, mean, rstd)
    return y, mean, rstd


def layernorm_backward_cuda(dy, x, weight, mean, rstd, *, has_bias=None):
    """CUDA version of :func:`layernorm_backward_reference` (CuPy arrays in and out)."""
    _check_backward(dy, x, weight, mean, rstd)
    has_bias = weight is not None if has_bias is None else has_bias
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    dy = xp.ascontiguousarray(dy)
    mean = xp.ascontiguousarray(mean)
    rstd = xp.ascontiguousarray(rstd)
    n, c = x.shape
    w = xp.ones(c, x.dtype) if weight is None else xp.ascontiguousarray(weight)
    dx = xp.empty_like(x)
    dweight = xp.empty(c, x.dtype)
    dbias = xp.empty(c, x.dtype)
    if n:
        _backward_dx_cuda_kernel[n, block_size_for(c)](dy, x, w, mean, rstd, dx)
        blocks, threads = elementwise_launch(c)
        _backward_params_cuda_kernel[blocks, threads](dy, x, mean, rstd, dweight, dbias)
    else:
        dweight[:] = 0
        dbias[:] = 0
    return dx, (dweight if weight is not None else None), (dbias if has_bias else None)
