"""Recurrent sequences: one layer in one direction over all time steps, as ONE op.

``RNNFunction``, ``LSTMFunction`` and ``GRUFunction`` each run a whole
sequence x (T, B, I) from initial state(s) (B, H) and return every step's
hidden state (T, B, H) and the final state(s) (B, H). The weights are
PyTorch's: ``w_ih`` (G*H, I) and ``w_hh`` (G*H, H) with G = 1, 4 (gates
i, f, g, o) or 3 (gates r, z, n), and optional biases ``b_ih``, ``b_hh`` (G*H,).
Multi-layer and bidirectional stacks are built from these by
``tinylm.nn.layers.rnn``; a cell (``LSTMCell``...) is the same op with T = 1.

Forward, for every op:

    1. the input projection of all steps in one matmul:
           X (T*B, I) @ W_ih^T               -> (T, B, G*H)
    2. a loop over the steps (t = 0..T-1, or T-1..0 with ``reverse``):
           h_prev @ W_hh^T, then the pointwise cell.
       For the LSTM and the GRU the whole loop, forward and backward, is a
       kernel from ``tinylm.kernels`` (``lstm_sequence_*``, ``gru_sequence_*``),
       which on the CPU runs compiled, with no Python between the steps; the
       RNN's loop is NumPy's.

The RNN adds its biases (summed first) to the projections in one pass. The LSTM
and GRU kernels take the projections and the biases apart and add them as the
cells read the gates, as PyTorch's fused cells do. Added apart, the biases
were a pass each over the (T, B, G*H) projections and the projection an add
per step (measured: docs/performance.md, "Recurrent layers: biases, the
transposed W_hh and the embedding shortcut").

Backward is backpropagation through time from the values the forward saved,
without re-running the forward:

    1. a loop over the steps in the opposite order: the pointwise backward of
       the cell gives the step's gate gradients dG_t (B, G*H), which are stored
       in one (T, B, G*H) array, and the gradient on the previous state,
       dh_prev = dG_t @ W_hh (+ dc_prev for the LSTM's cell state);
    2. after the loop, each gradient of the op's other inputs is ONE matmul
       or sum over all T*B rows:
           dX = dG @ W_ih     dW_ih = dG^T @ X     dW_hh = dG_hh^T @ H_prev
           db_ih = sum(dG)    db_hh = sum(dG_hh)
       where H_prev (T, B, H) holds the state each step started from
       (h0, then the outputs shifted by one step).

The inputs are ``(x, h0, w_ih, w_hh[, b_ih, b_hh])``, with ``c0`` after ``h0``
for the LSTM; ``reverse=True`` runs the sequence from its last step to its
first, and ``output[t]`` is then the state after reading x[T-1], ..., x[t]
(PyTorch's backward direction).

With ``ids`` (T, B), an integer array, x is instead a table E (V, I) and the
input is its rows E[ids], as after an embedding. Then the projection is
computed per table row and picked by id, (E @ W_ih^T)[ids], and the backward
first sums the gate gradients of the tokens of each id (the
``embedding_backward`` kernel) into dG_E (V, G*H):

           dE = dG_E @ W_ih     dW_ih = dG_E^T @ E

the same sums in another order; V rows of products in place of T*B, which
pays for a character-level model (measured: docs/performance.md, "Recurrent
layers: biases, the transposed W_hh and the embedding shortcut").
"""

from typing import NamedTuple

from tinylm.backend import array_module
from tinylm.kernels.registry import kernel_for
from tinylm.kernels.steps import time_steps
from tinylm.tensor import Function


def contiguous_transpose(w_hh):
    """W_hh^T (H, G*H) as a contiguous copy, made once per sequence (the RNN's loop; the
    LSTM and GRU kernels do the same).

    The loop multiplies by it at every step, and OpenBLAS is faster on a
    contiguous right operand than on the transposed view (measured:
    docs/performance.md, "Recurrent layers: biases, the transposed W_hh and
    the embedding shortcut").
    """
    return array_module(w_hh).ascontiguousarray(w_hh.T)


def _project_inputs(x_rows, seq_shape, w_ih, biases=()):
    """X (T*B, I) @ W_ih^T plus the sum of the given biases, as a (T, B, G*H) array."""
    gates = x_rows @ w_ih.T
    if biases:
        gates += _bias_sum(biases)  # gates is a fresh array: add in place
    return gates.reshape(seq_shape + (w_ih.shape[0],))


def _bias_sum(biases):
    """b_ih + b_hh (G*H,), or None without biases: where both enter one sum, one vector does."""
    if not biases:
        return None
    b_ih, b_hh = biases
    return b_ih + b_hh


class _SequenceFunction(Function):
    """What the three ops share: saving the inputs, and every gradient after the loop."""

    n_states = 1  # initial states among the inputs: h0 (and c0 for the LSTM)

    def _save(self, x, h0, w_ih, w_hh, reverse, ids):
        """x (T, B, I); or, with ``ids`` (T, B), the table (V, I) whose rows make the input, table[ids]."""
        if ids is None:
            length, batch, features = x.shape
            self.x_rows = x.reshape(length * batch, features)  # a copy only if x is not contiguous
            self.x_shape = x.shape
        else:
            self.table, self.x_shape = x, ids.shape + (x.shape[1],)
        self.ids, self.h0, self.w_ih, self.w_hh, self.reverse = ids, h0, w_ih, w_hh, reverse

    def _project(self, w_ih, biases=()):
        """X @ W_ih^T plus the sum of the given biases, (T, B, G*H). With ids, each table row
        is projected once and the projections are picked by id: V rows of products, not T*B."""
        if self.ids is None:
            return _project_inputs(self.x_rows, self.x_shape[:2], w_ih, biases)
        return _project_inputs(self.table, self.table.shape[:1], w_ih, biases)[self.ids]

    def _previous_states(self):
        """H_prev (T, B, H): the hidden state each step started from."""
        xp = array_module(self.out)
        first = self.h0[None]
        if self.reverse:
            return xp.concatenate([self.out[1:], first])
        return xp.concatenate([first, self.out[:-1]])

    def _gradients(self, d_in, d_hidden, d_states):
        """All input gradients from the gate gradients of the whole sequence.

        ``d_in`` (T, B, G*H) is the gradient on the input projection
        X @ W_ih^T + b_ih, ``d_hidden`` the one on h_prev @ W_hh^T + b_hh (the
        same array for RNN and LSTM, where both enter the same sum, and whose
        sum over the rows is then both bias gradients) and ``d_states`` the
        gradients on the initial states.
        """
        needs = self.needs_input_grad
        k = 1 + self.n_states  # position of w_ih among the inputs
        length, batch, width = d_in.shape
        rows = length * batch
        d_in_rows = d_in.reshape(rows, width)
        if self.ids is None:
            d_x = (d_in_rows @ self.w_ih).reshape(self.x_shape) if needs[0] else None
            d_w_ih = d_in_rows.T @ self.x_rows if needs[k] else None
        elif needs[0] or needs[k]:  # X = table[ids]: sum dG's rows per id, then the same products on V rows
            d_per_row = kernel_for("embedding_backward", d_in)(d_in_rows, self.ids.reshape(rows), self.table.shape[0])
            d_x = d_per_row @ self.w_ih if needs[0] else None  # the table's gradient
            d_w_ih = d_per_row.T @ self.table if needs[k] else None
        else:
            d_x = d_w_ih = None
        grads = [d_x] + [d if need else None for d, need in zip(d_states, needs[1:])] + [d_w_ih]
        if needs[k + 1]:
            hidden = self.w_hh.shape[1]
            h_prev = self._previous_states().reshape(rows, hidden)
            grads.append(d_hidden.reshape(rows, width).T @ h_prev)
        else:
            grads.append(None)
        if len(needs) > k + 2:  # with biases
            d_b_ih = d_in.sum(axis=(0, 1)) if needs[k + 2] else None
            if not needs[k + 3]:
                d_b_hh = None
            elif d_hidden is d_in and d_b_ih is not None:
                d_b_hh = d_b_ih.copy()  # one sum of the (T, B, G*H) gradients for both; an array each
            else:
                d_b_hh = d_hidden.sum(axis=(0, 1))
            grads += [d_b_ih, d_b_hh]
        return tuple(grads)

    def _total_grad(self, carried, g_out, t):
        """The gradient on h_t: what came back from the step after t, plus what output[t] got."""
        return carried if g_out is None else carried + g_out[t]


class RNNFunction(_SequenceFunction):
    """Elman RNN: h_t = act(x_t @ W_ih^T + b_ih + h_{t-1} @ W_hh^T + b_hh), act = tanh or relu.

    Backward per step: dpre_t = dh_t * (1 - h_t^2) for tanh, dh_t * [h_t > 0]
    for relu; dh_{t-1} = dpre_t @ W_hh. Only the outputs are saved.
    """

    def forward(self, x, h0, w_ih, w_hh, *biases, nonlinearity="tanh", reverse=False, ids=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNFunction: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        xp = array_module(x)
        self._save(x, h0, w_ih, w_hh, reverse, ids)
        length, batch, _ = self.x_shape
        pre_x = self._project(w_ih, biases)  # both biases folded in
        out = xp.empty((length, batch, w_hh.shape[1]), dtype=x.dtype)
        w_hh_t = contiguous_transpose(w_hh)
        h = h0
        for t in time_steps(length, reverse):
            pre = h @ w_hh_t
            pre += pre_x[t]
            if nonlinearity == "tanh":
                xp.tanh(pre, out=pre)
            else:
                xp.maximum(pre, 0, out=pre)
            out[t] = h = pre
        self.out, self.nonlinearity = out, nonlinearity
        return out, h  # h: the last step's own array, not a view of out

    def backward(self, g_out, g_h):
        out, w_hh = self.out, self.w_hh
        xp = array_module(out)
        d_pre = xp.empty_like(out)
        dh = xp.zeros(out.shape[1:], dtype=out.dtype) if g_h is None else g_h
        for t in time_steps(out.shape[0], not self.reverse):
            dh = self._total_grad(dh, g_out, t)
            h = out[t]
            if self.nonlinearity == "tanh":
                xp.multiply(dh, 1 - h * h, out=d_pre[t])
            else:
                xp.multiply(dh, h > 0, out=d_pre[t])
            dh = d_pre[t] @ w_hh
        return self._gradients(d_pre, d_pre, [dh])


class LSTMFunction(_SequenceFunction):
    """LSTM with PyTorch's gate order i, f, g, o; inputs (x, h0, c0, w_ih, w_hh[, b_ih, b_hh]),
    outputs (output, h_n, c_n).

    The loop over the steps is the ``lstm_sequence_forward`` /
    ``lstm_sequence_backward`` kernel (on the CPU, the whole loop compiled),
    which keeps every step's activated gates (T, B, 4H) and cell state (T, B, H)
    for the backward.
    """

    n_states = 2

    def forward(self, x, h0, c0, w_ih, w_hh, *biases, reverse=False, ids=None):
        self._save(x, h0, w_ih, w_hh, reverse, ids)
        length = self.x_shape[0]
        pre_x = self._project(w_ih)
        run = kernel_for("lstm_sequence_forward", x)
        out, cells, acts = run(pre_x, w_hh, h0, c0, _bias_sum(biases), reverse=reverse)
        last = 0 if reverse else length - 1
        self.out, self.c0, self.cells, self.acts = out, c0, cells, acts
        return out, out[last].copy(), cells[last].copy()  # h_n, c_n apart from the saved arrays

    def backward(self, g_out, g_h, g_c):
        run = kernel_for("lstm_sequence_backward", self.acts)
        d_gates, dh0, dc0 = run(g_out, g_h, g_c, self.w_hh, self.c0, self.cells, self.acts, reverse=self.reverse)
        return self._gradients(d_gates, d_gates, [dh0, dc0])


class GRUFunction(_SequenceFunction):
    """GRU with PyTorch's gate order r, z, n and n = tanh(gi_n + r * (h @ W_hn^T + b_hn)).

    ``b_hh`` cannot be folded into the input projection (the reset gate scales
    its n part), so the gate gradients come in two arrays: dGi on
    x @ W_ih^T + b_ih and dGh on h @ W_hh^T + b_hh. The loop over the steps is
    the ``gru_sequence_forward`` / ``gru_sequence_backward`` kernel (on the
    CPU, the whole loop compiled), which keeps every step's [r, z, n, gh_n].
    """

    def forward(self, x, h0, w_ih, w_hh, *biases, reverse=False, ids=None):
        self._save(x, h0, w_ih, w_hh, reverse, ids)
        length = self.x_shape[0]
        b_ih, b_hh = biases if biases else (None, None)
        gi = self._project(w_ih)
        out, saved = kernel_for("gru_sequence_forward", x)(gi, w_hh, h0, b_ih, b_hh, reverse=reverse)
        self.out, self.saved = out, saved
        return out, out[0 if reverse else length - 1].copy()  # h_n apart from the saved outputs

    def backward(self, g_out, g_h):
        run = kernel_for("gru_sequence_backward", self.saved)
        d_gi, d_gh, dh0 = run(g_out, g_h, self.w_hh, self.h0, self.out, self.saved, reverse=self.reverse)
        return self._gradients(d_gi, d_gh, [dh0])


class Mode(NamedTuple):
    """What one of PyTorch's recurrent mode names means here."""

    function: type  # the sequence op
    gates: int  # gate blocks per hidden unit (G): W_ih is (G*H, I)
    params: dict  # the op's keyword arguments

    @property
    def n_states(self):
        """Initial states: 1 (h0), or 2 (h0 and c0) for the LSTM."""
        return self.function.n_states


#: Everything that differs between the modes, in one table.
MODES = {
    "RNN_TANH": Mode(RNNFunction, 1, {"nonlinearity": "tanh"}),
    "RNN_RELU": Mode(RNNFunction, 1, {"nonlinearity": "relu"}),
    "LSTM": Mode(LSTMFunction, 4, {}),
    "GRU": Mode(GRUFunction, 3, {}),
}


def recurrent_layer(mode, x, states, weights, reverse=False, ids=None):
    """Run one layer in one direction: x (T, B, I) tensor, ``states`` [h0] or [h0, c0]
    (each (B, H)), ``weights`` [w_ih, w_hh] or [w_ih, w_hh, b_ih, b_hh].

    With ``ids`` (T, B), an integer array, x is a table (V, I) and the layer's
    input is table[ids]; x gets the table's gradient (see ``_gradients``).

    Returns (output (T, B, H), h_n) or, for the LSTM, (output, h_n, c_n).
    """
    spec = MODES[mode]
    return spec.function.apply(x, *states, *weights, reverse=reverse, ids=ids, **spec.params)
