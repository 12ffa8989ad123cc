"""One GRU time step after the matrix products, as ``torch.nn.GRU`` computes it.

``gi = x @ W_ih.T + b_ih`` and ``gh = h_prev @ W_hh.T + b_hh``, both (B, 3H) in
PyTorch's gate order **r, z, n**. As for PyTorch's fused cell
(``torch._thnn_fused_gru_cell``), the biases may instead be given apart,
``input_bias`` = b_ih and ``hidden_bias`` = b_hh (3H,), with ``gi`` and ``gh``
the bare products. Added here, as the gates are read, they spare the sequence
op a pass over its (T, B, 3H) input projections and an add per step. Then::

    r = sigmoid(gi_r + gh_r)
    z = sigmoid(gi_z + gh_z)
    n = tanh(gi_n + r * gh_n)          (the reset gate scales gh_n, bias included)
    h = (1 - z) * n + z * h_prev       (computed as n + z * (h_prev - n), like PyTorch)

The forward saves ``saved`` (B, 4H) = [r, z, n, gh_n]. The backward, from
``dh`` and ``h_prev``::

    dn_pre = dh * (1 - z) * (1 - n**2)
    dz_pre = dh * (h_prev - n) * z (1 - z)
    dr_pre = dn_pre * gh_n * r (1 - r)
    dgi = [dr_pre, dz_pre, dn_pre]
    dgh = [dr_pre, dz_pre, dn_pre * r]
    dh_prev_partial = dh * z           (the caller adds dgh @ W_hh)
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
    cuda_sigmoid,
    cuda_unit_index,
    elementwise_launch,
    jit,
    output_array,
    sigmoid_reference,
    use_parallel,
)
from .fastmath import sigmoid_into, tanh_into


def _check_forward(gi, gh, h_prev, input_bias, hidden_bias):
    check_float("gru_cell_forward", "h_prev", h_prev, ndim=2)
    b, h = h_prev.shape
    check_like("gru_cell_forward", "gi", gi, h_prev.dtype, (b, 3 * h))
    check_like("gru_cell_forward", "gh", gh, h_prev.dtype, (b, 3 * h))
    for name, bias in (("input_bias", input_bias), ("hidden_bias", hidden_bias)):
        if bias is not None:
            check_like("gru_cell_forward", name, bias, h_prev.dtype, (3 * h,))


def _gate_gradient_arrays(dgi, dgh, xp, h_prev):
    """The (B, 3H) arrays the backward writes into: the ones given, checked, or new ones."""
    batch, hidden = h_prev.shape
    return tuple(output_array("gru_cell_backward", name, given, xp, (batch, 3 * hidden), h_prev.dtype)
                 for name, given in (("dgi", dgi), ("dgh", dgh)))


def _check_backward(dh, saved, h_prev):
    check_float("gru_cell_backward", "h_prev", h_prev, ndim=2)
    b, h = h_prev.shape
    check_like("gru_cell_backward", "dh", dh, h_prev.dtype, (b, h))
    check_like("gru_cell_backward", "saved", saved, h_prev.dtype, (b, 4 * h))


# --------------------------------------------------------------------------- NumPy reference


def gru_cell_forward_reference(gi, gh, h_prev, input_bias=None, hidden_bias=None):
    """``(h (B, H), saved (B, 4H))`` with ``saved = [r, z, n, gh_n]`` (gh_n with its bias)."""
    _check_forward(gi, gh, h_prev, input_bias, hidden_bias)
    if input_bias is not None:
        gi = gi + input_bias
    if hidden_bias is not None:
        gh = gh + hidden_bias
    gi_r, gi_z, gi_n = np.split(gi, 3, axis=1)
    gh_r, gh_z, gh_n = np.split(gh, 3, axis=1)
    r = sigmoid_reference(gi_r + gh_r)
    z = sigmoid_reference(gi_z + gh_z)
    n = np.tanh(gi_n + r * gh_n)
    h = n + z * (h_prev - n)
    return h, np.concatenate([r, z, n, gh_n], axis=1)


def gru_cell_backward_reference(dh, saved, h_prev, *, dgi=None, dgh=None):
    """``(dgi (B, 3H), dgh (B, 3H), dh_prev_partial (B, H))``; ``dgi``/``dgh`` given: written into and returned."""
    _check_backward(dh, saved, h_prev)
    dgi, dgh = _gate_gradient_arrays(dgi, dgh, np, h_prev)
    r, z, n, gh_n = np.split(saved, 4, axis=1)
    dn_pre = dh * (1 - z) * (1 - n * n)
    dz_pre = dh * (h_prev - n) * z * (1 - z)
    dr_pre = dn_pre * gh_n * r * (1 - r)
    dgi[...] = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
    dgh[...] = np.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
    return dgi, dgh, dh * z


# --------------------------------------------------------------------------- Numba CPU


@jit
def _with_bias(value, bias, j):
    """``value + bias[j]``, or ``value`` when ``bias`` is None (a compile-time choice)."""
    if bias is None:
        return value
    return value + bias[j]


@jit
def _forward_rows(gi, gh, input_bias, hidden_bias, h_prev, h, saved, start, stop):
    hidden = h_prev.shape[1]
    pre = np.empty(2 * hidden, h_prev.dtype)
    for b in range(start, stop):
        x_row, h_row, s_row, hp, out = gi[b], gh[b], saved[b], h_prev[b], h[b]
        for j in range(2 * hidden):
            pre[j] = _with_bias(x_row[j], input_bias, j) + _with_bias(h_row[j], hidden_bias, j)
        sigmoid_into(pre, s_row[: 2 * hidden])  # r, z
        for j in range(hidden):
            gh_n = _with_bias(h_row[2 * hidden + j], hidden_bias, 2 * hidden + j)
            s_row[3 * hidden + j] = gh_n
            pre[j] = _with_bias(x_row[2 * hidden + j], input_bias, 2 * hidden + j) + s_row[j] * gh_n
        tanh_into(pre[:hidden], s_row[2 * hidden : 3 * hidden])  # n
        for j in range(hidden):
            z, n = s_row[hidden + j], s_row[2 * hidden + j]
            out[j] = n + z * (hp[j] - n)


@jit(parallel=True)
def _forward_parallel(gi, gh, input_bias, hidden_bias, h_prev, h, saved, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(h_prev.shape[0], n_chunks, chunk)
        _forward_rows(gi, gh, input_bias, hidden_bias, h_prev, h, saved, start, stop)


@jit
def _backward_rows(dh, saved, h_prev, dgi, dgh, dh_prev, start, stop):
    hidden = h_prev.shape[1]
    one = h_prev.dtype.type(1)
    for b in range(start, stop):
        s_row, grad, hp, dx_row, dh_row, out = saved[b], dh[b], h_prev[b], dgi[b], dgh[b], dh_prev[b]
        for j in range(hidden):
            r = s_row[j]
            z = s_row[hidden + j]
            n = s_row[2 * hidden + j]
            gh_n = s_row[3 * hidden + j]
            dn_pre = grad[j] * (one - z) * (one - n * n)
            dz_pre = grad[j] * (hp[j] - n) * z * (one - z)
            dr_pre = dn_pre * gh_n * r * (one - r)
            dx_row[j] = dr_pre
            dx_row[hidden + j] = dz_pre
            dx_row[2 * hidden + j] = dn_pre
            dh_row[j] = dr_pre
            dh_row[hidden + j] = dz_pre
            dh_row[2 * hidden + j] = dn_pre * r
            out[j] = grad[j] * z


@jit(parallel=True)
def _backward_parallel(dh, saved, h_prev, dgi, dgh, dh_prev, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(h_prev.shape[0], n_chunks, chunk)
        _backward_rows(dh, saved, h_prev, dgi, dgh, dh_prev, start, stop)


def gru_cell_forward_numba(gi, gh, h_prev, input_bias=None, hidden_bias=None):
    """Numba version of :func:`gru_cell_forward_reference`."""
    _check_forward(gi, gh, h_prev, input_bias, hidden_bias)
    gi, gh, input_bias, hidden_bias, h_prev = (None if a is None else np.ascontiguousarray(a)
                                               for a in (gi, gh, input_bias, hidden_bias, h_prev))
    batch, hidden = h_prev.shape
    h = np.empty_like(h_prev)
    saved = np.empty((batch, 4 * hidden), h_prev.dtype)
    args = (gi, gh, input_bias, hidden_bias, h_prev, h, saved)
    if use_parallel(gi.size, transcendental=True):
        _forward_parallel(*args, chunk_count(batch))
    else:
        _forward_rows(*args, 0, batch)
    return h, saved


def gru_cell_backward_numba(dh, saved, h_prev, *, dgi=None, dgh=None):
    """Numba version of :func:`gru_cell_backward_reference`."""
    _check_backward(dh, saved, h_prev)
    dh, saved, h_prev = (np.ascontiguousarray(a) for a in (dh, saved, h_prev))
    batch = h_prev.shape[0]
    dgi, dgh = _gate_gradient_arrays(dgi, dgh, np, h_prev)
    dh_prev = np.empty_like(h_prev)
    if use_parallel(dgi.size):
        _backward_parallel(dh, saved, h_prev, dgi, dgh, dh_prev, chunk_count(batch))
    else:
        _backward_rows(dh, saved, h_prev, dgi, dgh, dh_prev, 0, batch)
    return dgi, dgh, dh_prev


# --------------------------------------------------------------------------- CUDA
# One thread per (row, hidden unit).


@cuda.jit
def _forward_cuda_kernel(gi, gh, input_bias, hidden_bias, h_prev, h, saved):
    hidden = h_prev.shape[1]
    b, j = cuda_unit_index(h_prev.shape[0], hidden)
    if b < 0:
        return
    # Summed in the reference's order: (gi + b_ih) + (gh + b_hh).
    r = cuda_sigmoid((gi[b, j] + input_bias[j]) + (gh[b, j] + hidden_bias[j]))
    z = cuda_sigmoid((gi[b, hidden + j] + input_bias[hidden + j]) + (gh[b, hidden + j] + hidden_bias[hidden + j]))
    gh_n = gh[b, 2 * hidden + j] + hidden_bias[2 * hidden + j]
    n = math.tanh((gi[b, 2 * hidden + j] + input_bias[2 * hidden + j]) + r * gh_n)
    h[b, j] = n + z * (h_prev[b, j] - n)
    saved[b, j] = r
    saved[b, hidden + j] = z
    saved[b, 2 * hidden + j] = n
    saved[b, 3 * hidden + j] = gh_n


@cuda.jit
def _backward_cuda_kernel(dh, saved, h_prev, dgi, dgh, dh_prev):
    hidden = h_prev.shape[1]
    b, j = cuda_unit_index(h_prev.shape[0], hidden)
    if b < 0:
        return
    one = h_prev.dtype.type(1)
    r = saved[b, j]
    z = saved[b, hidden + j]
    n = saved[b, 2 * hidden + j]
    gh_n = saved[b, 3 * hidden + j]
    grad = dh[b, j]
    dn_pre = grad * (one - z) * (one - n * n)
    dz_pre = grad * (h_prev[b, j] - n) * z * (one - z)
    dr_pre = dn_pre * gh_n * r * (one - r)
    dgi[b, j] = dr_pre
    dgi[b, hidden + j] = dz_pre
    dgi[b, 2 * hidden + j] = dn_pre
    dgh[b, j] = dr_pre
    dgh[b, hidden + j] = dz_pre
    dgh[b, 2 * hidden + j] = dn_pre * r
    dh_prev[b, j] = grad * z


def gru_cell_forward_cuda(gi, gh, h_prev, input_bias=None, hidden_bias=None):
    """CUDA version of :func:`gru_cell_forward_reference` (CuPy arrays in and out); a missing bias is zeros."""
    _check_forward(gi, gh, h_prev, input_bias, hidden_bias)
    xp = array_module(h_prev)
    gi, gh, h_prev = (xp.ascontiguousarray(a) for a in (gi, gh, h_prev))
    batch, hidden = h_prev.shape
    input_bias, hidden_bias = (xp.zeros(3 * hidden, h_prev.dtype) if bias is None else xp.ascontiguousarray(bias)
                               for bias in (input_bias, hidden_bias))
    h = xp.empty_like(h_prev)
    saved = xp.empty((batch, 4 * hidden), h_prev.dtype)
    if h.size:
        blocks, threads = elementwise_launch(h.size)
        _forward_cuda_kernel[blocks, threads](gi, gh, input_bias, hidden_bias, h_prev, h, saved)
    return h, saved


def gru_cell_backward_cuda(dh, saved, h_prev, *, dgi=None, dgh=None):
    """CUDA version of :func:`gru_cell_backward_reference` (CuPy arrays in and out)."""
    _check_backward(dh, saved, h_prev)
    xp = array_module(h_prev)
    dh, saved, h_prev = (xp.ascontiguousarray(a) for a in (dh, saved, h_prev))
    dgi, dgh = _gate_gradient_arrays(dgi, dgh, xp, h_prev)
    dh_prev = xp.empty_like(h_prev)
    if h_prev.size:
        blocks, threads = elementwise_launch(h_prev.size)
        _backward_cuda_kernel[blocks, threads](dh, saved, h_prev, dgi, dgh, dh_prev)
    return dgi, dgh, dh_prev
