"""One AdamW step, in place, exactly as ``torch.optim.AdamW`` (single-tensor path).

For step t = 1, 2, ... and each element::

    param   *= 1 - lr * weight_decay                    (decoupled decay; skipped when 0)
    m       += (1 - beta1) * (grad - m)                 (torch: exp_avg.lerp_(grad, 1 - beta1))
    v        = v * beta2 + (1 - beta2) * grad * grad
    denom    = sqrt(v) / sqrt(1 - beta2**t) + eps
    param   += -(lr / (1 - beta1**t)) * m / denom

``weight_decay=0`` is Adam. The scalar factors are computed in Python floats
(double), then rounded to the parameter's dtype, and the element operations
follow PyTorch's order, so float32 results agree with PyTorch to an ulp or two.
The arrays must be 1-D and contiguous (callers pass flat views of parameters),
since the update is written into them.
"""

import math

import numpy as np
from numba import cuda, prange

from tinylm.backend import array_module

from ._common import check_float, chunk_bounds, chunk_count, elementwise_launch, jit, use_parallel


def _check(param, grad, exp_avg, exp_avg_sq, step):
    check_float("adamw_update", "param", param, ndim=1)
    for name, array in (("param", param), ("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if array.dtype != param.dtype or array.shape != param.shape:
            raise ValueError(
                f"adamw_update: {name} must be {param.dtype} of shape {param.shape}, "
                f"got {array.dtype} of shape {array.shape}"
            )
        if name != "grad" and not array.flags.c_contiguous:
            raise ValueError(f"adamw_update: {name} is updated in place and must be contiguous")
    if step < 1:
        raise ValueError(f"adamw_update: step counts from 1, got {step}")


def _factors(dtype, lr, beta1, beta2, eps, weight_decay, step):
    """The per-step scalars, computed in double as PyTorch does, rounded to ``dtype``."""
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    t = dtype.type
    return (
        t(1 - lr * weight_decay),
        t(1 - beta1),
        t(beta2),
        t(1 - beta2),
        t(bias_correction2**0.5),
        t(eps),
        t(-step_size),
    )


# --------------------------------------------------------------------------- NumPy reference


def adamw_update_reference(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    """Update ``param``, ``exp_avg`` and ``exp_avg_sq`` in place; returns None."""
    _check(param, grad, exp_avg, exp_avg_sq, step)
    decay, one_minus_beta1, beta2_, one_minus_beta2, bc2_sqrt, eps_, neg_step = _factors(
        param.dtype, lr, beta1, beta2, eps, weight_decay, step
    )
    if weight_decay != 0:
        param *= decay
    exp_avg += one_minus_beta1 * (grad - exp_avg)
    exp_avg_sq *= beta2_
    exp_avg_sq += one_minus_beta2 * grad * grad
    denom = np.sqrt(exp_avg_sq) / bc2_sqrt + eps_
    param += neg_step * exp_avg / denom


# --------------------------------------------------------------------------- Numba CPU


@jit
def _update_span(param, grad, m, v, decay, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step,
                 start, stop):
    # Slices, so that the loop index starts at 0: indexing the whole arrays with
    # k from range(start, stop) makes Numba guard every access against a
    # negative k, which stops LLVM from vectorizing (measured: docs/performance.md,
    # "Loops that vectorize").
    p, g, mk, vk = param[start:stop], grad[start:stop], m[start:stop], v[start:stop]
    for k in range(p.shape[0]):
        gk = g[k]
        m_new = mk[k] + one_minus_beta1 * (gk - mk[k])
        v_new = vk[k] * beta2 + one_minus_beta2 * gk * gk
        mk[k] = m_new
        vk[k] = v_new
        p[k] = p[k] * decay + neg_step * m_new / (np.sqrt(v_new) / bc2_sqrt + eps)


@jit(parallel=True)
def _update_parallel(param, grad, m, v, factors, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(param.shape[0], n_chunks, chunk)
        _update_span(param, grad, m, v, *factors, start, stop)


def adamw_update_numba(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    """Numba version of :func:`adamw_update_reference` (one fused pass)."""
    _check(param, grad, exp_avg, exp_avg_sq, step)
    # With weight_decay = 0 the factor is exactly 1 and param * 1 is param.
    factors = _factors(param.dtype, lr, beta1, beta2, eps, weight_decay, step)
    grad = np.ascontiguousarray(grad)
    if use_parallel(param.size):
        _update_parallel(param, grad, exp_avg, exp_avg_sq, factors, chunk_count(param.size))
    else:
        _update_span(param, grad, exp_avg, exp_avg_sq, *factors, 0, param.size)


# --------------------------------------------------------------------------- CUDA


@cuda.jit
def _update_cuda_kernel(param, grad, m, v, decay, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step):
    k = cuda.grid(1)
    if k < param.shape[0]:
        g = grad[k]
        p = param[k] * decay
        mk = m[k] + one_minus_beta1 * (g - m[k])
        vk = v[k] * beta2 + one_minus_beta2 * g * g
        m[k] = mk
        v[k] = vk
        param[k] = p + neg_step * mk / (math.sqrt(vk) / bc2_sqrt + eps)


def adamw_update_cuda(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    """CUDA version of :func:`adamw_update_reference` (CuPy arrays, updated in place)."""
    _check(param, grad, exp_avg, exp_avg_sq, step)
    xp = array_module(param)
    factors = _factors(param.dtype, lr, beta1, beta2, eps, weight_decay, step)
    if param.size:
        blocks, threads = elementwise_launch(param.size)
        _update_cuda_kernel[blocks, threads](param, xp.ascontiguousarray(grad), exp_avg, exp_avg_sq, *factors)
