"""A whole LSTM layer over time: the loop of ``h @ W_hh^T`` and the cell, forward and backward.

The sequence op (``tinylm.ops.fused.recurrent.LSTMFunction``) does the input
projection of all steps in one matmul, then this loop, then the weight
gradients in a few large matmuls. The loop is what these kernels run::

    forward, each step t:   pre = pre_x[t] + h_prev @ W_hh^T (+ bias)
                            h_t, c_t, acts_t = cell(pre, c_prev)
    backward, t reversed:   dgates_t, dc_prev = cell_backward(dh_t, dc_t, ...)
                            dh_prev = dgates_t @ W_hh       (dh_t: dh from the step after, + g_out[t])

The NumPy reference and the CUDA version are that loop in Python, with
NumPy's (CuPy's) matmul and the cell kernels of ``lstm_cell.py``. The Numba
version runs the whole loop in one compiled function: it calls NumPy's
OpenBLAS for the products from compiled code (``blas.gemm_into``), adds
h_prev @ W_hh^T straight into ``pre_x[t]`` (BLAS's beta = 1, no array per
step) and writes every step's results into arrays made once. What that saves
is the Python between the steps: calls, checks and allocations around every
step's matmul (measured with ``python benchmarks/bench_recurrent.py``, which
alternates training steps of both loops in one process: docs/performance.md,
"Recurrent loops in compiled code").

Each step's cell runs with its rows split between the threads where a
parallel region is cheap, that is where the threads spin between regions
(``_common.step_chunk_count``; the shared pool of ``blas_pool.py``): the
products before and after it already run on those threads. That made whole
training steps of the LSTM and GRU language models faster (same section).

Tried and dropped (the figures in the same section):

- Splitting the hidden units between the two threads, each running OpenBLAS
  on one thread on its own half of W_hh and the cell on its own units: a
  small gain, and only with two process-wide settings that must be in place
  before NumPy and Numba load (OpenBLAS's threads must not poll for work
  after each product, Numba's must spin a little instead of sleeping; the
  shared pool now makes both).
- The products transposed, W_hh @ h^T: faster products, but the transposes
  of the gates and of h around them cost as much as they saved.
- The whole layer gate-major, (4H, T*B): no transposes, but each step then
  touches 4H rows far apart, and the forward with its projection was slower.
"""

import numpy as np
from numba import prange

from tinylm.backend import array_module

from ._common import add_rows, check_like, check_sequence, chunk_bounds, jit, step_chunk_count
from .steps import time_steps
from .blas import find_gemm, gemm_into
from .lstm_cell import (
    _backward_rows,
    _forward_rows,
    lstm_cell_backward_cuda,
    lstm_cell_backward_numba,
    lstm_cell_backward_reference,
    lstm_cell_forward_cuda,
    lstm_cell_forward_numba,
    lstm_cell_forward_reference,
)

GATES = 4


def _check_forward(pre_x, w_hh, h0, c0, bias):
    kernel = "lstm_sequence_forward"
    _, batch, hidden = check_sequence(kernel, "pre_x", pre_x, w_hh, GATES)
    check_like(kernel, "h0", h0, pre_x.dtype, (batch, hidden))
    check_like(kernel, "c0", c0, pre_x.dtype, (batch, hidden))
    if bias is not None:
        check_like(kernel, "bias", bias, pre_x.dtype, (GATES * hidden,))


def _check_backward(g_out, g_h, g_c, w_hh, c0, cells, acts):
    kernel = "lstm_sequence_backward"
    length, batch, hidden = check_sequence(kernel, "acts", acts, w_hh, GATES)
    check_like(kernel, "cells", cells, acts.dtype, (length, batch, hidden))
    check_like(kernel, "c0", c0, acts.dtype, (batch, hidden))
    if g_out is not None:
        check_like(kernel, "g_out", g_out, acts.dtype, (length, batch, hidden))
    for name, array in (("g_h", g_h), ("g_c", g_c)):
        if array is not None:
            check_like(kernel, name, array, acts.dtype, (batch, hidden))


# --------------------------------------------------------------------------- NumPy reference (and CUDA)


def _forward_loop(cell, pre_x, w_hh, h0, c0, bias, reverse):
    """The forward as a Python loop over the steps, with the ``lstm_cell_forward`` kernel ``cell``."""
    xp = array_module(pre_x)
    length, batch, width = pre_x.shape
    out = xp.empty((length, batch, width // GATES), pre_x.dtype)
    cells = xp.empty_like(out)
    acts = xp.empty_like(pre_x)
    w_hh_t = xp.ascontiguousarray(w_hh.T)
    h, c = h0, c0
    for t in time_steps(length, reverse):
        out[t], cells[t], acts[t] = cell(h @ w_hh_t, c, pre_x[t], bias)
        h, c = out[t], cells[t]
    return out, cells, acts


def _backward_loop(cell_backward, g_out, g_h, g_c, w_hh, c0, cells, acts, reverse):
    """The backward as a Python loop over the steps, with the ``lstm_cell_backward`` kernel ``cell_backward``."""
    xp = array_module(acts)
    length, batch, width = acts.shape
    dgates = xp.empty_like(acts)
    dh = xp.zeros((batch, width // GATES), acts.dtype) if g_h is None else g_h
    dc = xp.zeros_like(dh) if g_c is None else g_c
    first = length - 1 if reverse else 0
    before = 1 if reverse else -1  # the step the forward visited just before t
    for t in time_steps(length, not reverse):
        if g_out is not None:
            dh = dh + g_out[t]
        c_prev = c0 if t == first else cells[t + before]
        _, dc = cell_backward(dh, dc, acts[t], c_prev, cells[t], dgates=dgates[t])
        dh = dgates[t] @ w_hh
    return dgates, dh, dc


def lstm_sequence_forward_reference(pre_x, w_hh, h0, c0, bias=None, *, reverse=False):
    """The LSTM layer's loop over time, from the input projections on.

    pre_x (T, B, 4H) = x_t @ W_ih^T for every step; w_hh (4H, H); h0, c0 (B, H);
    bias (4H,) = b_ih + b_hh or None; gates in PyTorch's order i, f, g, o.
    ``reverse`` runs from the last step to the first. Returns ``(out, cells,
    acts)``: h_t (T, B, H), c_t (T, B, H) and the activated gates (T, B, 4H)
    of every step. ``pre_x`` may serve as scratch (the Numba version adds the
    recurrent products into it).
    """
    _check_forward(pre_x, w_hh, h0, c0, bias)
    return _forward_loop(lstm_cell_forward_reference, pre_x, w_hh, h0, c0, bias, reverse)


def lstm_sequence_backward_reference(g_out, g_h, g_c, w_hh, c0, cells, acts, *, reverse=False):
    """Backpropagation through the loop of :func:`lstm_sequence_forward_reference`.

    g_out (T, B, H) is the gradient on the outputs, g_h and g_c (B, H) those on
    the last step's h and c; each may be None (zeros). ``cells`` and ``acts``
    are what the forward returned. Returns ``(dgates, dh0, dc0)``: the gradient
    on every step's pre-activations (T, B, 4H) and those on the initial states.
    """
    _check_backward(g_out, g_h, g_c, w_hh, c0, cells, acts)
    return _backward_loop(lstm_cell_backward_reference, g_out, g_h, g_c, w_hh, c0, cells, acts, reverse)


# --------------------------------------------------------------------------- Numba CPU


@jit(parallel=True)
def _forward_numba_loop(gemm, blas_int, pre_x, w_hh_t, h0, c0, bias, out, cells, acts, reverse, n_chunks):
    length, batch = pre_x.shape[0], pre_x.shape[1]
    h_prev, c_prev = h0, c0
    for s in range(length):
        t = length - 1 - s if reverse else s
        pre = pre_x[t]
        gemm_into(gemm, blas_int, h_prev, w_hh_t, pre, 1.0)  # pre += h_prev @ W_hh^T
        if n_chunks == 1:  # no parallel region: even one of one chunk costs time (step_chunk_count)
            _forward_rows(pre, None, bias, c_prev, out[t], cells[t], acts[t], 0, batch)
        else:
            for chunk in prange(n_chunks):  # the cell, each thread on its own rows
                start, stop = chunk_bounds(batch, n_chunks, chunk)
                _forward_rows(pre, None, bias, c_prev, out[t], cells[t], acts[t], start, stop)
        h_prev, c_prev = out[t], cells[t]


@jit
def _backward_cell_rows(g_out, t, dh, dc_in, act, c_prev, c, dgates, dc_out, start, stop):
    """g_out[t] added into dh, then the cell's backward (rows start:stop)."""
    if g_out is not None:  # a None g_out compiles without this branch
        add_rows(dh, g_out[t], start, stop)
    _backward_rows(dh, dc_in, act, c_prev, c, dgates, dc_out, start, stop)


@jit(parallel=True)
def _backward_numba_loop(gemm, blas_int, g_out, w_hh, c0, cells, acts, dgates, dh, dc, reverse, n_chunks):
    """``dh`` (B, H) enters holding g_h and leaves holding dh0; ``dc`` (2, B, H): step s
    reads ``dc[s % 2]`` and writes the other, so g_c enters in ``dc[0]`` and dc0 leaves
    in ``dc[length % 2]``. At step t, dh first holds the gradient from the step after;
    g_out[t] is added, the cell's backward runs on every row, then dh is overwritten
    with dh_prev = dgates_t @ W_hh."""
    length, batch = acts.shape[0], acts.shape[1]
    for s in range(length):
        t = s if reverse else length - 1 - s
        first = t == (length - 1 if reverse else 0)
        c_prev = c0 if first else cells[t + 1 if reverse else t - 1]
        dc_in, dc_out = dc[s % 2], dc[(s + 1) % 2]
        if n_chunks == 1:  # as in the forward: no parallel region
            _backward_cell_rows(g_out, t, dh, dc_in, acts[t], c_prev, cells[t], dgates[t], dc_out, 0, batch)
        else:
            for chunk in prange(n_chunks):  # the cell's backward, each thread on its own rows
                start, stop = chunk_bounds(batch, n_chunks, chunk)
                _backward_cell_rows(g_out, t, dh, dc_in, acts[t], c_prev, cells[t], dgates[t], dc_out, start, stop)
        gemm_into(gemm, blas_int, dgates[t], w_hh, dh, 0.0)


def lstm_sequence_forward_numba(pre_x, w_hh, h0, c0, bias=None, *, reverse=False):
    """Numba version of :func:`lstm_sequence_forward_reference`: the whole loop compiled
    (see the module's docstring); ``pre_x`` is overwritten."""
    _check_forward(pre_x, w_hh, h0, c0, bias)
    found = find_gemm(pre_x.dtype)
    if found is None:  # no OpenBLAS to call from compiled code: NumPy's matmul between Numba cells
        return _forward_loop(lstm_cell_forward_numba, pre_x, w_hh, h0, c0, bias, reverse)
    length, batch, width = pre_x.shape
    pre_x = np.ascontiguousarray(pre_x)
    out = np.empty((length, batch, width // GATES), pre_x.dtype)
    cells = np.empty_like(out)
    acts = np.empty_like(pre_x)
    if pre_x.size:
        h0, c0 = np.ascontiguousarray(h0), np.ascontiguousarray(c0)
        bias = None if bias is None else np.ascontiguousarray(bias)
        _forward_numba_loop(*found, pre_x, np.ascontiguousarray(w_hh.T), h0, c0, bias, out, cells, acts, bool(reverse),
                            step_chunk_count(batch))
    return out, cells, acts


def lstm_sequence_backward_numba(g_out, g_h, g_c, w_hh, c0, cells, acts, *, reverse=False):
    """Numba version of :func:`lstm_sequence_backward_reference`."""
    _check_backward(g_out, g_h, g_c, w_hh, c0, cells, acts)
    found = find_gemm(acts.dtype)
    if found is None:
        return _backward_loop(lstm_cell_backward_numba, g_out, g_h, g_c, w_hh, c0, cells, acts, reverse)
    length, batch, width = acts.shape
    dgates = np.empty_like(acts)
    dh = np.zeros((batch, width // GATES), acts.dtype)
    dc = np.zeros((2,) + dh.shape, acts.dtype)
    if g_h is not None:
        dh[...] = g_h
    if g_c is not None:
        dc[0] = g_c
    if acts.size:
        g_out = None if g_out is None else np.ascontiguousarray(g_out)
        arrays = [np.ascontiguousarray(a) for a in (w_hh, c0, cells, acts)]
        _backward_numba_loop(*found, g_out, *arrays, dgates, dh, dc, bool(reverse), step_chunk_count(batch))
    return dgates, dh, dc[length % 2]


# --------------------------------------------------------------------------- CUDA


def lstm_sequence_forward_cuda(pre_x, w_hh, h0, c0, bias=None, *, reverse=False):
    """CUDA version of :func:`lstm_sequence_forward_reference`: CuPy's matmul and the CUDA cell, step by step."""
    _check_forward(pre_x, w_hh, h0, c0, bias)
    return _forward_loop(lstm_cell_forward_cuda, pre_x, w_hh, h0, c0, bias, reverse)


def lstm_sequence_backward_cuda(g_out, g_h, g_c, w_hh, c0, cells, acts, *, reverse=False):
    """CUDA version of :func:`lstm_sequence_backward_reference`."""
    _check_backward(g_out, g_h, g_c, w_hh, c0, cells, acts)
    return _backward_loop(lstm_cell_backward_cuda, g_out, g_h, g_c, w_hh, c0, cells, acts, reverse)
