"""A whole GRU layer over time: the loop of ``h @ W_hh^T`` and the cell, forward and backward.

The GRU's counterpart of ``lstm_sequence.py`` (see there for why the loop is
compiled). ``GRUFunction`` does the input projection of all steps in one
matmul, then this loop, then the weight gradients::

    forward, each step t:   gh = h_prev @ W_hh^T
                            h_t, saved_t = cell(gi[t], gh, h_prev, b_ih, b_hh)
    backward, t reversed:   dgi_t, dgh_t, dh_direct = cell_backward(dh_t, saved_t, h_prev)
                            dh_prev = dgh_t @ W_hh + dh_direct      (dh_t: dh from the step after, + g_out[t])

Unlike the LSTM's, the recurrent product cannot be added into the input
projection: the reset gate scales its n part alone. So the Numba version
multiplies into one (B, 3H) array it reuses at every step, and in the
backward adds dgh_t @ W_hh straight onto the cell's direct part (BLAS's
beta = 1). The NumPy reference and the CUDA version are the same loop in
Python with the cell kernels of ``gru_cell.py``. Measured as for the LSTM
(docs/performance.md, "Recurrent loops in compiled code").
"""

import numpy as np
from numba import prange

from tinylm.backend import array_module

from ._common import add_rows, check_like, check_sequence, chunk_bounds, jit, step_chunk_count
from .steps import time_steps
from .blas import find_gemm, gemm_into
from .gru_cell import (
    _backward_rows,
    _forward_rows,
    gru_cell_backward_cuda,
    gru_cell_backward_numba,
    gru_cell_backward_reference,
    gru_cell_forward_cuda,
    gru_cell_forward_numba,
    gru_cell_forward_reference,
)

GATES = 3


def _check_forward(gi, w_hh, h0, b_ih, b_hh):
    kernel = "gru_sequence_forward"
    _, batch, hidden = check_sequence(kernel, "gi", gi, w_hh, GATES)
    check_like(kernel, "h0", h0, gi.dtype, (batch, hidden))
    for name, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None:
            check_like(kernel, name, bias, gi.dtype, (GATES * hidden,))


def _check_backward(g_out, g_h, w_hh, h0, out, saved):
    kernel = "gru_sequence_backward"
    length, batch, hidden = check_sequence(kernel, "saved", saved, w_hh, GATES, GATES + 1)
    check_like(kernel, "h0", h0, saved.dtype, (batch, hidden))
    check_like(kernel, "out", out, saved.dtype, (length, batch, hidden))
    if g_out is not None:
        check_like(kernel, "g_out", g_out, saved.dtype, (length, batch, hidden))
    if g_h is not None:
        check_like(kernel, "g_h", g_h, saved.dtype, (batch, hidden))


# --------------------------------------------------------------------------- NumPy reference (and CUDA)


def _forward_loop(cell, gi, w_hh, h0, b_ih, b_hh, reverse):
    """The forward as a Python loop over the steps, with the ``gru_cell_forward`` kernel ``cell``."""
    xp = array_module(gi)
    length, batch, width = gi.shape
    hidden = width // GATES
    out = xp.empty((length, batch, hidden), gi.dtype)
    saved = xp.empty((length, batch, (GATES + 1) * hidden), gi.dtype)
    w_hh_t = xp.ascontiguousarray(w_hh.T)
    h = h0
    for t in time_steps(length, reverse):
        out[t], saved[t] = cell(gi[t], h @ w_hh_t, h, b_ih, b_hh)
        h = out[t]
    return out, saved


def _backward_loop(cell_backward, g_out, g_h, w_hh, h0, out, saved, reverse):
    """The backward as a Python loop over the steps, with the ``gru_cell_backward`` kernel ``cell_backward``."""
    xp = array_module(saved)
    length, batch, hidden = out.shape
    dgi = xp.empty((length, batch, GATES * hidden), saved.dtype)
    dgh = xp.empty_like(dgi)
    dh = xp.zeros((batch, hidden), saved.dtype) if g_h is None else g_h
    first = length - 1 if reverse else 0
    before = 1 if reverse else -1  # the step the forward visited just before t
    for t in time_steps(length, not reverse):
        if g_out is not None:
            dh = dh + g_out[t]
        h_prev = h0 if t == first else out[t + before]
        _, _, dh_direct = cell_backward(dh, saved[t], h_prev, dgi=dgi[t], dgh=dgh[t])
        dh = dgh[t] @ w_hh
        dh += dh_direct
    return dgi, dgh, dh


def gru_sequence_forward_reference(gi, w_hh, h0, b_ih=None, b_hh=None, *, reverse=False):
    """The GRU layer's loop over time, from the input projections on.

    gi (T, B, 3H) = x_t @ W_ih^T for every step (without b_ih); w_hh (3H, H);
    h0 (B, H); b_ih, b_hh (3H,) or None; gates in PyTorch's order r, z, n.
    ``reverse`` runs from the last step to the first. Returns ``(out, saved)``:
    h_t (T, B, H) and each step's [r, z, n, gh_n] (T, B, 4H) for the backward.
    """
    _check_forward(gi, w_hh, h0, b_ih, b_hh)
    return _forward_loop(gru_cell_forward_reference, gi, w_hh, h0, b_ih, b_hh, reverse)


def gru_sequence_backward_reference(g_out, g_h, w_hh, h0, out, saved, *, reverse=False):
    """Backpropagation through the loop of :func:`gru_sequence_forward_reference`.

    g_out (T, B, H) is the gradient on the outputs and g_h (B, H) the one on the
    last step's h; either may be None (zeros). ``out`` and ``saved`` are what
    the forward returned. Returns ``(dgi, dgh, dh0)``: the gradients on every
    step's x @ W_ih^T + b_ih and h_prev @ W_hh^T + b_hh (each (T, B, 3H)) and
    on the initial state.
    """
    _check_backward(g_out, g_h, w_hh, h0, out, saved)
    return _backward_loop(gru_cell_backward_reference, g_out, g_h, w_hh, h0, out, saved, reverse)


# --------------------------------------------------------------------------- Numba CPU
# The cell runs split between the threads at every step where that pays (see
# ``_common.step_chunk_count``), the products on OpenBLAS's threads between.


@jit(parallel=True)
def _forward_numba_loop(gemm, blas_int, gi, w_hh_t, h0, b_ih, b_hh, out, saved, reverse, n_chunks):
    length, batch, width = gi.shape
    gh = np.empty((batch, width), gi.dtype)
    h_prev = h0
    for s in range(length):
        t = length - 1 - s if reverse else s
        gemm_into(gemm, blas_int, h_prev, w_hh_t, gh, 0.0)
        if n_chunks == 1:  # no parallel region: even one of one chunk costs time (step_chunk_count)
            _forward_rows(gi[t], gh, b_ih, b_hh, h_prev, out[t], saved[t], 0, batch)
        else:
            for chunk in prange(n_chunks):
                start, stop = chunk_bounds(batch, n_chunks, chunk)
                _forward_rows(gi[t], gh, b_ih, b_hh, h_prev, out[t], saved[t], start, stop)
        h_prev = out[t]


@jit
def _backward_cell_rows(g_out, t, grad, saved, h_prev, dgi, dgh, carried, start, stop):
    """g_out[t] added into grad, then the cell's backward: carried = grad * z (rows start:stop)."""
    if g_out is not None:  # a None g_out compiles without this branch
        add_rows(grad, g_out[t], start, stop)
    _backward_rows(grad, saved, h_prev, dgi, dgh, carried, start, stop)


@jit(parallel=True)
def _backward_numba_loop(gemm, blas_int, g_out, w_hh, h0, out, saved, dgi, dgh, dh, reverse, n_chunks):
    """``dh`` (2, B, H): step s reads ``dh[s % 2]`` and writes the other, so g_h enters in
    ``dh[0]`` and dh0 leaves in ``dh[length % 2]``."""
    length, batch, _ = out.shape
    for s in range(length):
        t = s if reverse else length - 1 - s
        first = t == (length - 1 if reverse else 0)
        h_prev = h0 if first else out[t + 1 if reverse else t - 1]
        grad, carried = dh[s % 2], dh[(s + 1) % 2]
        if n_chunks == 1:  # as in the forward: no parallel region
            _backward_cell_rows(g_out, t, grad, saved[t], h_prev, dgi[t], dgh[t], carried, 0, batch)
        else:
            for chunk in prange(n_chunks):
                start, stop = chunk_bounds(batch, n_chunks, chunk)
                _backward_cell_rows(g_out, t, grad, saved[t], h_prev, dgi[t], dgh[t], carried, start, stop)
        gemm_into(gemm, blas_int, dgh[t], w_hh, carried, 1.0)  # carried += dgh_t @ W_hh


def gru_sequence_forward_numba(gi, w_hh, h0, b_ih=None, b_hh=None, *, reverse=False):
    """Numba version of :func:`gru_sequence_forward_reference`: the whole loop compiled."""
    _check_forward(gi, w_hh, h0, b_ih, b_hh)
    found = find_gemm(gi.dtype)
    if found is None:  # no OpenBLAS to call from compiled code: NumPy's matmul between Numba cells
        return _forward_loop(gru_cell_forward_numba, gi, w_hh, h0, b_ih, b_hh, reverse)
    length, batch, width = gi.shape
    hidden = width // GATES
    out = np.empty((length, batch, hidden), gi.dtype)
    saved = np.empty((length, batch, (GATES + 1) * hidden), gi.dtype)
    if gi.size:
        biases = [None if b is None else np.ascontiguousarray(b) for b in (b_ih, b_hh)]
        _forward_numba_loop(*found, np.ascontiguousarray(gi), np.ascontiguousarray(w_hh.T), np.ascontiguousarray(h0),
                            *biases, out, saved, bool(reverse), step_chunk_count(batch))
    return out, saved


def gru_sequence_backward_numba(g_out, g_h, w_hh, h0, out, saved, *, reverse=False):
    """Numba version of :func:`gru_sequence_backward_reference`."""
    _check_backward(g_out, g_h, w_hh, h0, out, saved)
    found = find_gemm(saved.dtype)
    if found is None:
        return _backward_loop(gru_cell_backward_numba, g_out, g_h, w_hh, h0, out, saved, reverse)
    length, batch, hidden = out.shape
    dgi = np.empty((length, batch, GATES * hidden), saved.dtype)
    dgh = np.empty_like(dgi)
    dh = np.zeros((2, batch, hidden), saved.dtype)
    if g_h is not None:
        dh[0] = g_h
    if saved.size:
        g_out = None if g_out is None else np.ascontiguousarray(g_out)
        arrays = [np.ascontiguousarray(a) for a in (w_hh, h0, out, saved)]
        _backward_numba_loop(*found, g_out, *arrays, dgi, dgh, dh, bool(reverse), step_chunk_count(batch))
    return dgi, dgh, dh[length % 2]


# --------------------------------------------------------------------------- CUDA


def gru_sequence_forward_cuda(gi, w_hh, h0, b_ih=None, b_hh=None, *, reverse=False):
    """CUDA version of :func:`gru_sequence_forward_reference`: CuPy's matmul and the CUDA cell, step by step."""
    _check_forward(gi, w_hh, h0, b_ih, b_hh)
    return _forward_loop(gru_cell_forward_cuda, gi, w_hh, h0, b_ih, b_hh, reverse)


def gru_sequence_backward_cuda(g_out, g_h, w_hh, h0, out, saved, *, reverse=False):
    """CUDA version of :func:`gru_sequence_backward_reference`."""
    _check_backward(g_out, g_h, w_hh, h0, out, saved)
    return _backward_loop(gru_cell_backward_cuda, g_out, g_h, w_hh, h0, out, saved, reverse)
