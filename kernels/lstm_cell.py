"""One LSTM time step after the matrix products, as ``torch.nn.LSTM`` computes it.

``gates`` (B, 4H) holds the pre-activations ``x @ W_ih.T + b_ih + h @ W_hh.T + b_hh``
in PyTorch's gate order **i, f, g, o**. They may also come in parts, as for
PyTorch's fused cell (``torch._thnn_fused_lstm_cell``): ``gates`` the recurrent
product ``h @ W_hh.T``, ``input_gates`` (B, 4H) the input projection of the
step and ``bias`` (4H,) the two biases' sum. Added here, as the gates are
read, they spare the sequence op a pass over its (T, B, 4H) projections for the
biases and an add per step. Then::

    i, f, o = sigmoid(...)      g = tanh(...)
    c = f * c_prev + i * g
    h = o * tanh(c)

The forward returns ``acts`` (B, 4H), the activated gates in the same order,
for the backward. With ``dh`` the total gradient on h and ``dc`` the gradient
reaching c from the next time step (zeros at the last step)::

    dc_total = dc + dh * o * (1 - tanh(c)**2)
    di = dc_total * g * i (1 - i)        df = dc_total * c_prev * f (1 - f)
    dg = dc_total * i * (1 - g**2)       do = dh * tanh(c) * o (1 - o)
    dc_prev = dc_total * f

``tanh(c)`` is recomputed from the saved ``c`` rather than stored.
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


def _check_forward(gates, c_prev, input_gates, bias):
    check_float("lstm_cell_forward", "gates", gates, ndim=2)
    if gates.shape[1] % 4:
        raise ValueError(f"lstm_cell_forward: gates must have shape (B, 4H), got {gates.shape}")
    check_like("lstm_cell_forward", "c_prev", c_prev, gates.dtype, (gates.shape[0], gates.shape[1] // 4))
    if input_gates is not None:
        check_like("lstm_cell_forward", "input_gates", input_gates, gates.dtype, gates.shape)
    if bias is not None:
        check_like("lstm_cell_forward", "bias", bias, gates.dtype, gates.shape[1:])


def _check_backward(dh, dc, acts, c_prev, c):
    check_float("lstm_cell_backward", "c", c, ndim=2)
    b, h = c.shape
    expected = {"dh": (dh, (b, h)), "dc": (dc, (b, h)), "acts": (acts, (b, 4 * h)), "c_prev": (c_prev, (b, h))}
    for name, (array, shape) in expected.items():
        check_like("lstm_cell_backward", name, array, c.dtype, shape)


# --------------------------------------------------------------------------- NumPy reference


def lstm_cell_forward_reference(gates, c_prev, input_gates=None, bias=None):
    """``(h (B, H), c (B, H), acts (B, 4H))``; the pre-activations are ``gates [+ input_gates] [+ bias]``."""
    _check_forward(gates, c_prev, input_gates, bias)
    if input_gates is not None:
        gates = gates + input_gates
    if bias is not None:
        gates = gates + bias
    i, f, g, o = np.split(gates, 4, axis=1)
    i, f, g, o = sigmoid_reference(i), sigmoid_reference(f), np.tanh(g), sigmoid_reference(o)
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    return h, c, np.concatenate([i, f, g, o], axis=1)


def lstm_cell_backward_reference(dh, dc, acts, c_prev, c, *, dgates=None):
    """``(dgates (B, 4H), dc_prev (B, H))``; ``dgates`` given: written into it and returned."""
    _check_backward(dh, dc, acts, c_prev, c)
    out = output_array("lstm_cell_backward", "dgates", dgates, np, acts.shape, acts.dtype)
    i, f, g, o = np.split(acts, 4, axis=1)
    tanh_c = np.tanh(c)
    dc_total = dc + dh * o * (1 - tanh_c * tanh_c)
    out[...] = np.concatenate(
        [
            dc_total * g * i * (1 - i),
            dc_total * c_prev * f * (1 - f),
            dc_total * i * (1 - g * g),
            dh * tanh_c * o * (1 - o),
        ],
        axis=1,
    )
    return out, dc_total * f


# --------------------------------------------------------------------------- Numba CPU


@jit
def _sum_into(gates, input_gates, bias, out):
    """``out = gates + input_gates + bias`` for 1-D arrays, either addend possibly None."""
    for j in range(out.shape[0]):
        value = gates[j]
        if input_gates is not None:  # None arguments get their own compiled version, without the branch
            value += input_gates[j]
        if bias is not None:
            value += bias[j]
        out[j] = value


@jit
def _cell_row(pre, c_prev, act, c, h, tanh_c):
    """One row: pre-activations pre (4H,) and c_prev (H,) -> act (4H,), c (H,), h (H,)."""
    hidden = c_prev.shape[0]
    sigmoid_into(pre[: 2 * hidden], act[: 2 * hidden])  # i, f
    tanh_into(pre[2 * hidden : 3 * hidden], act[2 * hidden : 3 * hidden])  # g
    sigmoid_into(pre[3 * hidden :], act[3 * hidden :])  # o
    for j in range(hidden):
        c[j] = act[hidden + j] * c_prev[j] + act[j] * act[2 * hidden + j]
    tanh_into(c, tanh_c)
    for j in range(hidden):
        h[j] = act[3 * hidden + j] * tanh_c[j]


@jit
def _forward_rows(gates, input_gates, bias, c_prev, h, c, acts, start, stop):
    hidden = c_prev.shape[1]
    tanh_c = np.empty(hidden, gates.dtype)
    # The sums get a buffer of their own: summed into act and activated there
    # in place, the loops would read and write the same array and not
    # vectorize (measured: docs/performance.md, "Loops that vectorize").
    sums = np.empty(4 * hidden, gates.dtype)
    for b in range(start, stop):
        if input_gates is not None:
            _sum_into(gates[b], input_gates[b], bias, sums)
            _cell_row(sums, c_prev[b], acts[b], c[b], h[b], tanh_c)
        elif bias is not None:
            _sum_into(gates[b], None, bias, sums)
            _cell_row(sums, c_prev[b], acts[b], c[b], h[b], tanh_c)
        else:
            _cell_row(gates[b], c_prev[b], acts[b], c[b], h[b], tanh_c)


@jit(parallel=True)
def _forward_parallel(gates, input_gates, bias, c_prev, h, c, acts, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(gates.shape[0], n_chunks, chunk)
        _forward_rows(gates, input_gates, bias, c_prev, h, c, acts, start, stop)


@jit
def _backward_rows(dh, dc, acts, c_prev, c, dgates, dc_prev, start, stop):
    hidden = c.shape[1]
    one = c.dtype.type(1)
    tanh_c = np.empty(hidden, c.dtype)
    for b in range(start, stop):
        act, grad_h, grad_c, cp, out, out_c = acts[b], dh[b], dc[b], c_prev[b], dgates[b], dc_prev[b]
        tanh_into(c[b], tanh_c)
        for j in range(hidden):
            i = act[j]
            f = act[hidden + j]
            g = act[2 * hidden + j]
            o = act[3 * hidden + j]
            t = tanh_c[j]
            dc_total = grad_c[j] + grad_h[j] * o * (one - t * t)
            out[j] = dc_total * g * i * (one - i)
            out[hidden + j] = dc_total * cp[j] * f * (one - f)
            out[2 * hidden + j] = dc_total * i * (one - g * g)
            out[3 * hidden + j] = grad_h[j] * t * o * (one - o)
            out_c[j] = dc_total * f


@jit(parallel=True)
def _backward_parallel(dh, dc, acts, c_prev, c, dgates, dc_prev, n_chunks):
    for chunk in prange(n_chunks):
        start, stop = chunk_bounds(c.shape[0], n_chunks, chunk)
        _backward_rows(dh, dc, acts, c_prev, c, dgates, dc_prev, start, stop)


def lstm_cell_forward_numba(gates, c_prev, input_gates=None, bias=None):
    """Numba version of :func:`lstm_cell_forward_reference`."""
    _check_forward(gates, c_prev, input_gates, bias)
    gates, input_gates, bias, c_prev = (None if a is None else np.ascontiguousarray(a)
                                        for a in (gates, input_gates, bias, c_prev))
    h = np.empty_like(c_prev)
    c = np.empty_like(c_prev)
    acts = np.empty_like(gates)
    args = (gates, input_gates, bias, c_prev, h, c, acts)
    if use_parallel(gates.size, transcendental=True):
        _forward_parallel(*args, chunk_count(gates.shape[0]))
    else:
        _forward_rows(*args, 0, gates.shape[0])
    return h, c, acts


def lstm_cell_backward_numba(dh, dc, acts, c_prev, c, *, dgates=None):
    """Numba version of :func:`lstm_cell_backward_reference`."""
    _check_backward(dh, dc, acts, c_prev, c)
    args = [np.ascontiguousarray(a) for a in (dh, dc, acts, c_prev, c)]
    dgates = output_array("lstm_cell_backward", "dgates", dgates, np, acts.shape, acts.dtype)
    dc_prev = np.empty_like(args[4])
    if use_parallel(dgates.size):  # tanh on a quarter of the elements only
        _backward_parallel(*args, dgates, dc_prev, chunk_count(c.shape[0]))
    else:
        _backward_rows(*args, dgates, dc_prev, 0, c.shape[0])
    return dgates, dc_prev


# --------------------------------------------------------------------------- CUDA
# One thread per (row, hidden unit): it reads that unit's four gates.


@cuda.jit
def _forward_cuda_kernel(gates, input_gates, bias, c_prev, h, c, acts):
    hidden = c_prev.shape[1]
    b, j = cuda_unit_index(c_prev.shape[0], hidden)
    if b < 0:
        return
    i = cuda_sigmoid(gates[b, j] + input_gates[b, j] + bias[j])
    f = cuda_sigmoid(gates[b, hidden + j] + input_gates[b, hidden + j] + bias[hidden + j])
    g = math.tanh(gates[b, 2 * hidden + j] + input_gates[b, 2 * hidden + j] + bias[2 * hidden + j])
    o = cuda_sigmoid(gates[b, 3 * hidden + j] + input_gates[b, 3 * hidden + j] + bias[3 * hidden + j])
    cell = f * c_prev[b, j] + i * g
    c[b, j] = cell
    h[b, j] = o * math.tanh(cell)
    acts[b, j] = i
    acts[b, hidden + j] = f
    acts[b, 2 * hidden + j] = g
    acts[b, 3 * hidden + j] = o


@cuda.jit
def _backward_cuda_kernel(dh, dc, acts, c_prev, c, dgates, dc_prev):
    hidden = c.shape[1]
    b, j = cuda_unit_index(c.shape[0], hidden)
    if b < 0:
        return
    one = c.dtype.type(1)
    i = acts[b, j]
    f = acts[b, hidden + j]
    g = acts[b, 2 * hidden + j]
    o = acts[b, 3 * hidden + j]
    tanh_c = math.tanh(c[b, j])
    dc_total = dc[b, j] + dh[b, j] * o * (one - tanh_c * tanh_c)
    dgates[b, j] = dc_total * g * i * (one - i)
    dgates[b, hidden + j] = dc_total * c_prev[b, j] * f * (one - f)
    dgates[b, 2 * hidden + j] = dc_total * i * (one - g * g)
    dgates[b, 3 * hidden + j] = dh[b, j] * tanh_c * o * (one - o)
    dc_prev[b, j] = dc_total * f


def lstm_cell_forward_cuda(gates, c_prev, input_gates=None, bias=None):
    """CUDA version of :func:`lstm_cell_forward_reference` (CuPy arrays in and out).

    A missing addend is passed as zeros: one kernel, and the extra read is
    nothing beside a launch.
    """
    _check_forward(gates, c_prev, input_gates, bias)
    xp = array_module(gates)
    gates = xp.ascontiguousarray(gates)
    c_prev = xp.ascontiguousarray(c_prev)
    input_gates = xp.zeros_like(gates) if input_gates is None else xp.ascontiguousarray(input_gates)
    bias = xp.zeros(gates.shape[1], gates.dtype) if bias is None else xp.ascontiguousarray(bias)
    h = xp.empty_like(c_prev)
    c = xp.empty_like(c_prev)
    acts = xp.empty_like(gates)
    if c.size:
        blocks, threads = elementwise_launch(c.size)
        _forward_cuda_kernel[blocks, threads](gates, input_gates, bias, c_prev, h, c, acts)
    return h, c, acts


def lstm_cell_backward_cuda(dh, dc, acts, c_prev, c, *, dgates=None):
    """CUDA version of :func:`lstm_cell_backward_reference` (CuPy arrays in and out)."""
    _check_backward(dh, dc, acts, c_prev, c)
    xp = array_module(c)
    args = [xp.ascontiguousarray(a) for a in (dh, dc, acts, c_prev, c)]
    dgates = output_array("lstm_cell_backward", "dgates", dgates, xp, acts.shape, acts.dtype)
    dc_prev = xp.empty_like(args[4])
    if c.size:
        blocks, threads = elementwise_launch(c.size)
        _backward_cuda_kernel[blocks, threads](*args, dgates, dc_prev)
    return dgates, dc_prev
