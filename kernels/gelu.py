"""GELU, elementwise, exact or with the tanh approximation (``torch.nn.GELU(approximate=...)``).

Exact (``approximate="none"``), with Phi the standard normal CDF::

    y     = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2)))
    dy/dx = Phi(x) + x * exp(-x**2 / 2) / sqrt(2 pi)

Tanh approximation (``approximate="tanh"``), with ``u = sqrt(2/pi) * (x + 0.044715 x**3)``::

    y     = 0.5 * x * (1 + tanh(u))
    dy/dx = 0.5 * (1 + tanh(u)) + 0.5 * x * (1 - tanh(u)**2) * sqrt(2/pi) * (1 + 3 * 0.044715 x**2)

``gelu_backward`` recomputes dy/dx from the saved input ``x``. Training uses
``gelu_forward_with_grad`` instead, which returns ``(y, dy/dx)`` from one pass:
the two share the erf (or tanh), the costly part, so the backward is left
with one multiplication, ``dy * dy/dx``, and the slope takes the place of
``x`` among the saved arrays (the same memory); the pair costs less than the
forward and the backward apart. In float32 the density exp(-x**2 / 2) is the
exponential the erf itself takes for |x / sqrt 2| >= 1 (``erf_and_gauss_into``),
so the exact form's pair costs one exp per element, not two (measured:
docs/performance.md, "GELU's exact form").

Also here: ``bias_gelu_forward(x (N, C), bias (C,))`` = ``gelu(x + bias)`` and its
backward, which returns ``(dx, dbias)``, with the bias add (and the bias
gradient's column sum) fused into the same pass; the first linear layer of a
transformer MLP is followed by exactly this. Against ``gelu_*`` on ``x + bias``
plus a NumPy column sum, the fused backward is clearly faster and the forward no
slower (same section).
"""

import math

import numpy as np
from numba import cuda, prange

from tinylm.backend import array_module

from ._common import (
    check_float,
    check_like,
    chunk_bounds,
    chunk_count,
    elementwise_launch,
    jit,
    use_parallel,
)
from .fastmath import erf_and_gauss_into, erf_into, tanh_into
from .special import erf

APPROXIMATIONS = ("none", "tanh")

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_TANH_CUBIC = 0.044715


def _check(kernel, x, approximate):
    check_float(kernel, "x", x)
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"{kernel}: approximate must be 'none' or 'tanh', got {approximate!r}")


def _check_bias(kernel, x, bias, approximate):
    _check(kernel, x, approximate)
    if x.ndim != 2:
        raise ValueError(f"{kernel}: x must have 2 axes (N, C), got shape {x.shape}")
    check_like(kernel, "bias", bias, x.dtype, (x.shape[1],))


# --------------------------------------------------------------------------- NumPy reference


def _gelu_reference(x, approximate):
    dtype = x.dtype.type
    if approximate == "tanh":
        u = dtype(_SQRT_2_OVER_PI) * (x + dtype(_TANH_CUBIC) * x * x * x)
        return dtype(0.5) * x * (1 + np.tanh(u))
    return dtype(0.5) * x * (1 + erf(x * dtype(_INV_SQRT_2)))


def _gelu_grad_reference(x, approximate):
    dtype = x.dtype.type
    if approximate == "tanh":
        t = np.tanh(dtype(_SQRT_2_OVER_PI) * (x + dtype(_TANH_CUBIC) * x * x * x))
        du = dtype(_SQRT_2_OVER_PI) * (1 + dtype(3 * _TANH_CUBIC) * x * x)
        return dtype(0.5) * (1 + t) + dtype(0.5) * x * (1 - t * t) * du
    cdf = dtype(0.5) * (1 + erf(x * dtype(_INV_SQRT_2)))
    pdf = dtype(_INV_SQRT_2PI) * np.exp(dtype(-0.5) * x * x)
    return cdf + x * pdf


def gelu_forward_reference(x, approximate="none"):
    """GELU of an array of any shape, in its dtype."""
    _check("gelu_forward", x, approximate)
    return _gelu_reference(x, approximate)


def gelu_forward_with_grad_reference(x, approximate="none"):
    """``(gelu(x), gelu'(x))``, both shaped like ``x``."""
    _check("gelu_forward_with_grad", x, approximate)
    return _gelu_reference(x, approximate), _gelu_grad_reference(x, approximate)


def gelu_backward_reference(dy, x, approximate="none"):
    """``dy * gelu'(x)``."""
    _check("gelu_backward", x, approximate)
    check_like("gelu_backward", "dy", dy, x.dtype, x.shape)
    return dy * _gelu_grad_reference(x, approximate)


def bias_gelu_forward_reference(x, bias, approximate="none"):
    """``gelu(x + bias)`` for x (N, C) and bias (C,)."""
    _check_bias("bias_gelu_forward", x, bias, approximate)
    return _gelu_reference(x + bias, approximate)


def bias_gelu_backward_reference(dy, x, bias, approximate="none"):
    """``(dx, dbias)`` of ``gelu(x + bias)``: ``dx = dy * gelu'(x + bias)``, ``dbias = dx.sum(0)``."""
    _check_bias("bias_gelu_backward", x, bias, approximate)
    check_like("bias_gelu_backward", "dy", dy, x.dtype, x.shape)
    dx = dy * _gelu_grad_reference(x + bias, approximate)
    return dx, dx.sum(axis=0)


# --------------------------------------------------------------------------- Numba CPU
#
# The work is done on blocks (a block of a flat array, or one row of the bias
# version): arithmetic loops around one vectorized call of ``erf_into`` /
# ``tanh_into`` / ``erf_and_gauss_into``. Blocks of 512 keep the scratch arrays in L1.

_BLOCK = 512


@jit
def _inner_into(x, use_tanh, arg, out):
    """``out`` = tanh(u) (tanh form) or erf(x / sqrt 2) (exact form), the costly part every
    block below shares; ``arg`` is scratch of ``x``'s length."""
    dtype = x.dtype.type
    if use_tanh:
        for k in range(x.shape[0]):
            v = x[k]
            arg[k] = dtype(_SQRT_2_OVER_PI) * (v + dtype(_TANH_CUBIC) * v * v * v)
        tanh_into(arg, out)
    else:
        for k in range(x.shape[0]):
            arg[k] = x[k] * dtype(_INV_SQRT_2)
        erf_into(arg, out)


@jit
def _erf_and_density_into(x, arg, erf_out, density_out):
    """``erf_out`` = erf(x / sqrt 2) and ``density_out`` = exp(-x^2 / 2), the normal density
    up to 1/sqrt(2 pi), from one exp (the erf's own); ``arg`` is scratch."""
    for k in range(x.shape[0]):
        arg[k] = x[k] * x.dtype.type(_INV_SQRT_2)
    erf_and_gauss_into(arg, erf_out, density_out)


@jit
def _tanh_form_slope(v, t):
    """gelu'(v) in the tanh form, from t = tanh(u(v))."""
    dtype = type(v)
    half, one = dtype(0.5), dtype(1)
    du = dtype(_SQRT_2_OVER_PI) * (one + dtype(3 * _TANH_CUBIC) * v * v)
    return half * (one + t) + half * v * (one - t * t) * du


@jit
def _exact_slope(v, e, density):
    """gelu'(v) = Phi(v) + v * phi(v), from e = erf(v / sqrt 2) and density = exp(-v^2 / 2)."""
    dtype = type(v)
    return dtype(0.5) * (dtype(1) + e) + v * dtype(_INV_SQRT_2PI) * density


@jit
def _gelu_block(x, y, use_tanh, tmp):
    """``y = gelu(x)`` for 1-D ``x`` and ``y`` (not overlapping); ``tmp`` is scratch."""
    n = x.shape[0]
    dtype = x.dtype.type
    _inner_into(x, use_tanh, tmp[:n], y)
    for k in range(n):
        y[k] = dtype(0.5) * x[k] * (dtype(1) + y[k])


@jit
def _gelu_grad_block(dy, x, dx, use_tanh, tmp1, tmp2):
    """``dx = dy * gelu'(x)`` for 1-D arrays (``dx`` overlapping neither); ``tmp1``, ``tmp2`` scratch."""
    n = x.shape[0]
    arg, value = tmp1[:n], tmp2[:n]
    if use_tanh:
        _inner_into(x, True, arg, value)
        for k in range(n):
            dx[k] = dy[k] * _tanh_form_slope(x[k], value[k])
    else:
        _erf_and_density_into(x, arg, value, dx)  # dx holds the density until the loop below
        for k in range(n):
            dx[k] = dy[k] * _exact_slope(x[k], value[k], dx[k])


@jit
def _gelu_and_grad_block(x, y, slope, use_tanh, tmp):
    """``y = gelu(x)`` and ``slope = gelu'(x)`` for 1-D arrays; ``tmp`` is scratch."""
    n = x.shape[0]
    arg = tmp[:n]
    dtype = x.dtype.type
    half, one = dtype(0.5), dtype(1)
    # y holds tanh(u) or erf(x / sqrt 2) until the last loop, slope the density
    if use_tanh:
        _inner_into(x, True, arg, y)
        for k in range(n):
            slope[k] = _tanh_form_slope(x[k], y[k])
            y[k] = half * x[k] * (one + y[k])
    else:
        _erf_and_density_into(x, arg, y, slope)
        for k in range(n):
            slope[k] = _exact_slope(x[k], y[k], slope[k])
            y[k] = half * x[k] * (one + y[k])


@jit
def _forward_span(x, use_tanh, y, start, stop):
    tmp = np.empty(_BLOCK, x.dtype)
    for begin in range(start, stop, _BLOCK):
        end = min(begin + _BLOCK, stop)
        _gelu_block(x[begin:end], y[begin:end], use_tanh, tmp)


@jit
def _backward_span(dy, x, use_tanh, dx, start, stop):
    tmp1 = np.empty(_BLOCK, x.dtype)
    tmp2 = np.empty(_BLOCK, x.dtype)
    for begin in range(start, stop, _BLOCK):
        end = min(begin + _BLOCK, stop)
        _gelu_grad_block(dy[begin:end], x[begin:end], dx[begin:end], use_tanh, tmp1, tmp2)


@jit
def _forward_with_grad_span(x, use_tanh, y, slope, start, stop):
    tmp = np.empty(_BLOCK, x.dtype)
    for begin in range(start, stop, _BLOCK):
        end = min(begin + _BLOCK, stop)
        _gelu_and_grad_block(x[begin:end], y[begin:end], slope[begin:end], use_tanh, tmp)


@jit(parallel=True)
def _forward_parallel(x, use_tanh, y, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(x.shape[0], n_chunks, chunk)
        _forward_span(x, use_tanh, y, start, stop)


@jit(parallel=True)
def _backward_parallel(dy, x, use_tanh, dx, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(x.shape[0], n_chunks, chunk)
        _backward_span(dy, x, use_tanh, dx, start, stop)


@jit(parallel=True)
def _forward_with_grad_parallel(x, use_tanh, y, slope, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(x.shape[0], n_chunks, chunk)
        _forward_with_grad_span(x, use_tanh, y, slope, start, stop)


def gelu_forward_numba(x, approximate="none"):
    """Numba version of :func:`gelu_forward_reference`."""
    _check("gelu_forward", x, approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    use_tanh = approximate == "tanh"
    if use_parallel(flat.size, transcendental=True):
        _forward_parallel(flat, use_tanh, y, chunk_count(flat.size))
    else:
        _forward_span(flat, use_tanh, y, 0, flat.size)
    return y.reshape(x.shape)


def gelu_forward_with_grad_numba(x, approximate="none"):
    """Numba version of :func:`gelu_forward_with_grad_reference`."""
    _check("gelu_forward_with_grad", x, approximate)
    flat = np.ascontiguousarray(x).reshape(-1)
    y, slope = np.empty_like(flat), np.empty_like(flat)
    use_tanh = approximate == "tanh"
    if use_parallel(flat.size, transcendental=True):
        _forward_with_grad_parallel(flat, use_tanh, y, slope, chunk_count(flat.size))
    else:
        _forward_with_grad_span(flat, use_tanh, y, slope, 0, flat.size)
    return y.reshape(x.shape), slope.reshape(x.shape)


def gelu_backward_numba(dy, x, approximate="none"):
    """Numba version of :func:`gelu_backward_reference`."""
    _check("gelu_backward", x, approximate)
    check_like("gelu_backward", "dy", dy, x.dtype, x.shape)
    flat = np.ascontiguousarray(x).reshape(-1)
    flat_dy = np.ascontiguousarray(dy).reshape(-1)
    dx = np.empty_like(flat)
    use_tanh = approximate == "tanh"
    if use_parallel(flat.size, transcendental=True):
        _backward_parallel(flat_dy, flat, use_tanh, dx, chunk_count(flat.size))
    else:
        _backward_span(flat_dy, flat, use_tanh, dx, 0, flat.size)
    return dx.reshape(x.shape)


@jit
def _bias_forward_rows(x, bias, use_tanh, y, start, stop):
    shifted = np.empty(x.shape[1], x.dtype)
    tmp = np.empty(x.shape[1], x.dtype)
    for i in range(start, stop):
        row = x[i]
        for j in range(row.shape[0]):
            shifted[j] = row[j] + bias[j]
        _gelu_block(shifted, y[i], use_tanh, tmp)


@jit
def _bias_backward_rows(dy, x, bias, use_tanh, dx, dbias, start, stop):
    # dbias (C,) is this chunk's own partial sum.
    c = x.shape[1]
    shifted = np.empty(c, x.dtype)
    tmp1 = np.empty(c, x.dtype)
    tmp2 = np.empty(c, x.dtype)
    for i in range(start, stop):
        row, out = x[i], dx[i]
        for j in range(c):
            shifted[j] = row[j] + bias[j]
        _gelu_grad_block(dy[i], shifted, out, use_tanh, tmp1, tmp2)
        for j in range(c):
            dbias[j] += out[j]


@jit(parallel=True)
def _bias_forward_parallel(x, bias, use_tanh, y, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(x.shape[0], n_chunks, chunk)
        _bias_forward_rows(x, bias, use_tanh, y, start, stop)


@jit(parallel=True)
def _bias_backward_parallel(dy, x, bias, use_tanh, dx, dbias):
    n_chunks = dbias.shape[0]
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(x.shape[0], n_chunks, chunk)
        _bias_backward_rows(dy, x, bias, use_tanh, dx, dbias[chunk], start, stop)


def bias_gelu_forward_numba(x, bias, approximate="none"):
    """Numba version of :func:`bias_gelu_forward_reference`."""
    _check_bias("bias_gelu_forward", x, bias, approximate)
    x = np.ascontiguousarray(x)
    bias = np.ascontiguousarray(bias)
    y = np.empty_like(x)
    use_tanh = approximate == "tanh"
    if use_parallel(x.size, transcendental=True):
        _bias_forward_parallel(x, bias, use_tanh, y, chunk_count(x.shape[0]))
    else:
        _bias_forward_rows(x, bias, use_tanh, y, 0, x.shape[0])
    return y


def bias_gelu_backward_numba(dy, x, bias, approximate="none"):
    """Numba version of :func:`bias_gelu_backward_reference`."""
    _check_bias("bias_gelu_backward", x, bias, approximate)
    check_like("bias_gelu_backward", "dy", dy, x.dtype, x.shape)
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(dy)
    bias = np.ascontiguousarray(bias)
    dx = np.empty_like(x)
    use_tanh = approximate == "tanh"
    parallel = use_parallel(x.size, transcendental=True)
    n_chunks = chunk_count(x.shape[0]) if parallel else 1
    dbias = np.zeros((n_chunks, x.shape[1]), x.dtype)
    if parallel:
        _bias_backward_parallel(dy, x, bias, use_tanh, dx, dbias)
    else:
        _bias_backward_rows(dy, x, bias, use_tanh, dx, dbias[0], 0, x.shape[0])
    return dx, dbias.sum(axis=0)


# --------------------------------------------------------------------------- CUDA


@cuda.jit(device=True)
def _cuda_gelu_value(v, use_tanh):
    dtype = type(v)
    half = dtype(0.5)
    if use_tanh:
        u = dtype(_SQRT_2_OVER_PI) * (v + dtype(_TANH_CUBIC) * v * v * v)
        return half * v * (dtype(1) + math.tanh(u))
    return half * v * (dtype(1) + math.erf(v * dtype(_INV_SQRT_2)))


@cuda.jit(device=True)
def _cuda_gelu_grad(v, use_tanh):
    dtype = type(v)
    half, one = dtype(0.5), dtype(1)
    if use_tanh:
        t = math.tanh(dtype(_SQRT_2_OVER_PI) * (v + dtype(_TANH_CUBIC) * v * v * v))
        du = dtype(_SQRT_2_OVER_PI) * (one + dtype(3 * _TANH_CUBIC) * v * v)
        return half * (one + t) + half * v * (one - t * t) * du
    cdf = half * (one + math.erf(v * dtype(_INV_SQRT_2)))
    return cdf + v * dtype(_INV_SQRT_2PI) * math.exp(-half * v * v)


@cuda.jit
def _forward_cuda_kernel(x, use_tanh, y):
    k = cuda.grid(1)
    if k < x.shape[0]:
        y[k] = _cuda_gelu_value(x[k], use_tanh)


@cuda.jit
def _forward_with_grad_cuda_kernel(x, use_tanh, y, slope):
    k = cuda.grid(1)
    if k < x.shape[0]:
        y[k] = _cuda_gelu_value(x[k], use_tanh)
        slope[k] = _cuda_gelu_grad(x[k], use_tanh)


@cuda.jit
def _backward_cuda_kernel(dy, x, use_tanh, dx):
    k = cuda.grid(1)
    if k < x.shape[0]:
        dx[k] = dy[k] * _cuda_gelu_grad(x[k], use_tanh)


@cuda.jit
def _bias_forward_cuda_kernel(x, bias, use_tanh, y):
    k = cuda.grid(1)
    n, c = x.shape
    if k < n * c:
        i = k // c
        j = k - i * c
        y[i, j] = _cuda_gelu_value(x[i, j] + bias[j], use_tanh)


@cuda.jit
def _bias_backward_cuda_kernel(dy, x, bias, use_tanh, dx):
    k = cuda.grid(1)
    n, c = x.shape
    if k < n * c:
        i = k // c
        j = k - i * c
        dx[i, j] = dy[i, j] * _cuda_gelu_grad(x[i, j] + bias[j], use_tanh)


@cuda.jit
def _column_sum_cuda_kernel(a, out):
    # One thread per column; deterministic, and neighbouring threads read neighbouring addresses.
    j = cuda.grid(1)
    if j < a.shape[1]:
        total = a.dtype.type(0)
        for i in range(a.shape[0]):
            total += a[i, j]
        out[j] = total


def gelu_forward_cuda(x, approximate="none"):
    """CUDA version of :func:`gelu_forward_reference` (CuPy arrays in and out)."""
    _check("gelu_forward", x, approximate)
    xp = array_module(x)
    flat = xp.ascontiguousarray(x).reshape(-1)
    y = xp.empty_like(flat)
    if flat.size:
        blocks, threads = elementwise_launch(flat.size)
        _forward_cuda_kernel[blocks, threads](flat, approximate == "tanh", y)
    return y.reshape(x.shape)


def gelu_forward_with_grad_cuda(x, approximate="none"):
    """CUDA version of :func:`gelu_forward_with_grad_reference` (CuPy arrays in and out)."""
    _check("gelu_forward_with_grad", x, approximate)
    xp = array_module(x)
    flat = xp.ascontiguousarray(x).reshape(-1)
    y, slope = xp.empty_like(flat), xp.empty_like(flat)
    if flat.size:
        blocks, threads = elementwise_launch(flat.size)
        _forward_with_grad_cuda_kernel[blocks, threads](flat, approximate == "tanh", y, slope)
    return y.reshape(x.shape), slope.reshape(x.shape)


def gelu_backward_cuda(dy, x, approximate="none"):
    """CUDA version of :func:`gelu_backward_reference` (CuPy arrays in and out)."""
    _check("gelu_backward", x, approximate)
    check_like("gelu_backward", "dy", dy, x.dtype, x.shape)
    xp = array_module(x)
    flat = xp.ascontiguousarray(x).reshape(-1)
    dx = xp.empty_like(flat)
    if flat.size:
        blocks, threads = elementwise_launch(flat.size)
        _backward_cuda_kernel[blocks, threads](xp.ascontiguousarray(dy).reshape(-1), flat, approximate == "tanh", dx)
    return dx.reshape(x.shape)


def bias_gelu_forward_cuda(x, bias, approximate="none"):
    """CUDA version of :func:`bias_gelu_forward_reference` (CuPy arrays in and out)."""
    _check_bias("bias_gelu_forward", x, bias, approximate)
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    if x.size:
        blocks, threads = elementwise_launch(x.size)
        _bias_forward_cuda_kernel[blocks, threads](x, xp.ascontiguousarray(bias), approximate == "tanh", y)
    return y


def bias_gelu_backward_cuda(dy, x, bias, approximate="none"):
    """CUDA version of :func:`bias_gelu_backward_reference` (CuPy arrays in and out)."""
    _check_bias("bias_gelu_backward", x, bias, approximate)
    check_like("bias_gelu_backward", "dy", dy, x.dtype, x.shape)
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    dx = xp.empty_like(x)
    dbias = xp.zeros(x.shape[1], x.dtype)
    if x.size:
        blocks, threads = elementwise_launch(x.size)
        _bias_backward_cuda_kernel[blocks, threads](
            xp.ascontiguousarray(dy), x, xp.ascontiguousarray(bias), approximate == "tanh", dx
        )
        blocks, threads = elementwise_launch(x.shape[1])
        _column_sum_cuda_kernel[blocks, threads](dx, dbias)
    return dx, dbias
