"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their one-step cells.

Arguments, parameter names and shapes, gate orders, initialisation, initial
states and return values are PyTorch's, so a PyTorch state dict loads
unchanged and gives the same results.

Each (layer, direction) of a stack is one fused op from
``tinylm.ops.fused.recurrent`` that runs the whole sequence and has its own
backpropagation through time; this module only stacks them: the backward
direction's outputs are concatenated to the forward's (``tinylm.cat``), and
dropout is applied between layers (not after the last) in training mode.

A ``PackedSequence`` input (``tinylm.nn.utils.rnn``) runs through the same
fused ops, unchanged: its steps fall into runs over which the number of
sequences still going stays the same (one run per distinct length), and each
run is one op over exactly those sequences, started from the states the run
before left (see ``_packed_direction``). Every sequence then sees the same
computation as alone, and its h_n is its state after its own last step.
"""

import math

from tinylm import backend, ops
from tinylm.nn import functional as F
from tinylm.nn import init
from tinylm.nn.layers.linear import new_parameter
from tinylm.nn.module import Module
from tinylm.nn.utils.rnn import PackedSequence
from tinylm.ops.fused.recurrent import MODES, recurrent_layer
from tinylm.tensor import Tensor


def _shape(tensor):
    return tuple(tensor.shape)


def _check_dtype(layer, what, tensor, dtype):
    if tensor.dtype != dtype:
        raise TypeError(
            f"{layer}: {what} is {tensor.dtype} but the parameters are {dtype}; "
            "convert one to match the other (.float() / .double())"
        )


def _zeros_like_state(like, shape):
    """A (non-learnable) zero initial state on ``like``'s device, in its dtype."""
    xp = backend.array_module(like.data)
    return Tensor(xp.zeros(shape, dtype=like.dtype))


def _check_state(layer, name, state, expected, dtype):
    if not isinstance(state, Tensor):
        raise TypeError(f"{layer}: {name} must be a tensor, got {type(state).__name__}")
    if _shape(state) != expected:
        raise ValueError(f"{layer}: expected {name} of shape {expected}, got {_shape(state)}")
    _check_dtype(layer, name, state, dtype)


def _state_tuple(layer, hx, n_states):
    """``hx`` as a list of ``n_states`` tensors: [h0] or [h0, c0]."""
    if n_states == 1:
        return [hx]
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"{layer}: hx must be a tuple (h0, c0), got {type(hx).__name__}")
    return list(hx)


def _init_uniform(module, hidden_size):
    """PyTorch's recurrent initialisation: every weight and bias from U(-1/sqrt(H), 1/sqrt(H))."""
    bound = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0.0
    for parameter in module.parameters():
        init.uniform_(parameter, -bound, bound)


def _check_sizes(layer, input_size, hidden_size):
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{layer}: {name} must be a non-negative integer, got {value!r}")
    if hidden_size == 0:
        raise ValueError(f"{layer}: hidden_size must be greater than zero")


def _mode_for(layer, nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{layer}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


# ----- whole sequences ---------------------------------------------------------------


class RNNBase(Module):
    """The stack shared by ``RNN``, ``LSTM`` and ``GRU``; ``mode`` is PyTorch's
    ("RNN_TANH", "RNN_RELU", "LSTM" or "GRU").

    Parameters, per layer k and direction (suffix ``_reverse`` for the backward one):
    ``weight_ih_l{k}`` (G*hidden, in), ``weight_hh_l{k}`` (G*hidden, hidden) and,
    with ``bias``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (G*hidden,); G = 1, 4, 3;
    in = input_size for layer 0 and num_directions * hidden_size above it.
    """

    def __init__(
        self,
        mode,
        input_size,
        hidden_size,
        num_layers=1,
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        dtype=None,
        device=None,
    ):
        super().__init__()
        layer = type(self).__name__
        _check_sizes(layer, input_size, hidden_size)
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"{layer}: num_layers must be a positive integer, got {num_layers!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{layer}: dropout must be a number between 0 and 1, got {dropout!r}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        directions = 2 if bidirectional else 1
        gates = MODES[mode].gates * hidden_size
        self._weight_names = []  # [layer][direction] -> the parameter names, in the op's order
        for k in range(num_layers):
            width = input_size if k == 0 else hidden_size * directions
            per_direction = []
            for direction in range(directions):
                suffix = f"_l{k}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (gates, width)), ("weight_hh", (gates, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gates,)), ("bias_hh", (gates,))]
                names = []
                for stem, shape in shapes:
                    setattr(self, stem + suffix, new_parameter(*shape, dtype=dtype, device=device))
                    names.append(stem + suffix)
                per_direction.append(names)
            self._weight_names.append(per_direction)
        self.reset_parameters()

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def reset_parameters(self):
        _init_uniform(self, self.hidden_size)

    @property
    def all_weights(self):
        """The parameters per (layer, direction): [[w_ih, w_hh, b_ih, b_hh], ...], as PyTorch's."""
        return [[getattr(self, name) for name in names] for per_layer in self._weight_names for names in per_layer]

    def flatten_parameters(self):
        """Does nothing: kept so code written for PyTorch's cuDNN layers runs unchanged."""

    def _weights(self, layer, direction):
        return [getattr(self, name) for name in self._weight_names[layer][direction]]

    def _check_input(self, given):
        """The input as (T, B, I), and whether it came batched; raises naming both shapes."""
        layer = type(self).__name__
        layout = "(batch, seq_len, {})" if self.batch_first else "(seq_len, batch, {})"
        expected = f"{layout.format(self.input_size)} (or (seq_len, {self.input_size}) unbatched)"
        if not isinstance(given, Tensor):
            raise TypeError(f"{layer}: input must be a tensor, got {type(given).__name__}")
        if given.ndim not in (2, 3) or given.shape[-1] != self.input_size:
            raise ValueError(f"{layer}: expected input of shape {expected}, got {_shape(given)}")
        _check_dtype(layer, "input", given, self.weight_ih_l0.dtype)
        batched, x = given.ndim == 3, given
        if not batched:
            x = x.unsqueeze(1)  # unbatched input is (seq_len, input_size) whatever batch_first says
        elif self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[0] == 0:
            raise ValueError(f"{layer}: expected a sequence of at least one step, got input of shape {_shape(given)}")
        return x, batched

    def _initial_states(self, hx, x, batch, batched):
        """One list per (layer, direction) of the states that start it: [h0] or [h0, c0]."""
        layer = type(self).__name__
        n_states = MODES[self.mode].n_states
        count = self.num_layers * self.num_directions
        if hx is None:
            zeros = _zeros_like_state(x, (batch, self.hidden_size))
            return [[zeros] * n_states for _ in range(count)]
        states = _state_tuple(layer, hx, n_states)
        expected = (count, batch, self.hidden_size) if batched else (count, self.hidden_size)
        names = ["h0", "c0"] if n_states == 2 else ["h0"]
        for name, state in zip(names, states):
            _check_state(layer, name, state, expected, x.dtype)
        if not batched:
            states = [state.unsqueeze(1) for state in states]
        return [[state[k] for state in states] for k in range(count)]

    def forward(self, input, hx=None):  # noqa: A002 (PyTorch's argument name)
        """input (seq_len, batch, input_size), or (batch, seq_len, input_size) with
        ``batch_first``, or (seq_len, input_size) unbatched; ``hx`` h0 (or (h0, c0) for
        the LSTM), each (num_layers * num_directions, batch, hidden_size), zeros if left out.

        Returns (output, h_n), or (output, (h_n, c_n)) for the LSTM; output holds the
        last layer's hidden states, both directions concatenated on the last axis.

        ``input`` may also be a ``PackedSequence`` (``tinylm.nn.utils.rnn``); output is
        then one too, and h_n holds each sequence's state after its own last step.
        """
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx)
        x, batched = self._check_input(input)
        return self._run_layers(x, None, hx, batched, x.shape[1])

    def _forward_packed(self, packed, hx):
        """A ``PackedSequence`` in, a ``PackedSequence`` (with the same batch_sizes and indices) out;
        h0 and h_n are in the batch's original order, as PyTorch's."""
        layer = type(self).__name__
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        if not isinstance(data, Tensor) or data.ndim != 2 or data.shape[1] != self.input_size:
            got = _shape(data) if isinstance(data, Tensor) else type(data).__name__
            raise ValueError(f"{layer}: expected packed data of shape (sum of lengths, {self.input_size}), got {got}")
        _check_dtype(layer, "input", data, self.weight_ih_l0.dtype)
        sizes = [int(n) for n in batch_sizes.numpy()]
        if not sizes or sum(sizes) != data.shape[0] or any(a < b for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"{layer}: the PackedSequence's batch_sizes {sizes} do not describe its "
                             f"{data.shape[0]} rows")  # fmt: skip
        runs = _runs(sizes)
        initial = self._initial_states(hx, data, sizes[0], True)
        if sorted_indices is not None:  # h0 is given in the original order; the runs need the sorted one
            order = sorted_indices.numpy()
            initial = [[state[order] for state in states] for states in initial]
        x, finals = data, []
        for k in range(self.num_layers):
            # each run's rows, apart: one op (one gradient array in backward), shared by both directions
            blocks = ops.split(x, [steps * batch for steps, batch in runs], dim=0)
            outputs = []
            for direction in range(self.num_directions):
                out, last = _packed_direction(
                    self.mode, blocks, runs, initial[k * self.num_directions + direction],
                    self._weights(k, direction), reverse=direction == 1,
                )  # fmt: skip
                outputs.append(out)
                finals.append(last)
            x = outputs[0] if len(outputs) == 1 else ops.cat(outputs, dim=1)
            if k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)
        states = [ops.stack([last[i] for last in finals], dim=0) for i in range(len(finals[0]))]
        if unsorted_indices is not None:
            states = [state[:, unsorted_indices.numpy()] for state in states]
        output = PackedSequence(x, batch_sizes, sorted_indices, unsorted_indices)
        return output, (states[0] if len(states) == 1 else tuple(states))

    def forward_embedded(self, weight, ids, hx=None):
        """The same as ``self(F.embedding(ids, weight), hx)``, computed more cheaply when the
        table has fewer rows than ``ids`` has entries (as in a character-level model).

        ``weight`` (num_embeddings, input_size) is the table; ``ids`` an integer tensor
        (batch, seq_len) with ``batch_first``, else (seq_len, batch), or (seq_len,)
        unbatched. The first layer's input projection is then computed once per
        table row, and its backward sums the gate gradients per id before the
        products (``tinylm.ops.fused.recurrent``): for the LSTM language model of
        ``benchmarks/compare.py`` (65 rows, 3200 ids) that drops three products
        of 3200 x 1024 x 64 from the training step.
        """
        layer = f"{type(self).__name__}.forward_embedded"
        F.check_embedding_ids(ids, weight, layer)
        if weight.shape[1] != self.input_size:
            raise ValueError(f"{layer}: expected a table of shape (num_embeddings, {self.input_size}), "
                             f"got {_shape(weight)}")
        _check_dtype(layer, "the table", weight, self.weight_ih_l0.dtype)
        if ids.ndim not in (1, 2):
            layout = "(batch, seq_len)" if self.batch_first else "(seq_len, batch)"
            raise ValueError(f"{layer}: expected ids of shape {layout} or (seq_len,), got {_shape(ids)}")
        batched = ids.ndim == 2
        steps = ids.data.T if batched and self.batch_first else ids.data  # (T, B) or (T,)
        steps = steps if batched else steps.reshape(-1, 1)
        if steps.shape[0] == 0:
            raise ValueError(f"{layer}: expected a sequence of at least one step, got ids of shape {_shape(ids)}")
        xp = backend.array_module(steps)
        return self._run_layers(weight, xp.ascontiguousarray(steps), hx, batched, steps.shape[1])

    def _run_layers(self, x, ids, hx, batched, batch):
        """The stack over x (T, B, I), or with ``ids`` (T, B) over the rows of the table x that ids picks."""
        initial = self._initial_states(hx, x, batch, batched)
        finals = []  # per (layer, direction): [h_n] or [h_n, c_n]
        for k in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                out, *last = recurrent_layer(
                    self.mode,
                    x,
                    initial[k * self.num_directions + direction],
                    self._weights(k, direction),
                    reverse=direction == 1,
                    ids=ids if k == 0 else None,
                )
                outputs.append(out)
                finals.append(last)
            x = outputs[0] if len(outputs) == 1 else ops.cat(outputs, dim=2)
            if k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)
        states = [ops.stack([last[i] for last in finals], dim=0) for i in range(len(finals[0]))]
        if not batched:
            x = x.squeeze(1)
            states = [state.squeeze(1) for state in states]
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, (states[0] if len(states) == 1 else tuple(states))

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text


def _runs(sizes):
    """The steps of a packing grouped where the batch size stays the same: a list of
    (number of steps, batch size), in time order; run i's rows follow run i - 1's in the data."""
    runs, t = [], 0
    while t < len(sizes):
        end = t
        while end < len(sizes) and sizes[end] == sizes[t]:
            end += 1
        runs.append((end - t, sizes[t]))
        t = end
    return runs


def _packed_direction(mode, blocks, runs, states, weights, reverse):
    """One layer in one direction over packed rows, sorted longest first, given as one
    block (steps * batch, I) per run.

    Within a run of ``steps`` steps the first ``batch`` sequences are all going,
    so its rows are one (steps, batch, I) block for the fused op. Forward in
    time, a run starts from the first ``batch`` rows of the states the run
    before ended with; the other rows belong to sequences that have just ended,
    and are their h_n. Backward in time (``reverse``), the runs go from the
    last to the first, and the sequences that join a run (the ones whose last
    step is that run's last) start from their own rows of h0.

    Returns (the output rows (N, H), in the packed order; the final states
    [h_n] or [h_n, c_n], (B, H) each), all through the autograd graph.
    """
    outputs, batch_total = [], states[0].shape[0]
    if not reverse:
        ended = []  # per run boundary: the states of the sequences that stopped there
        for (steps, batch), block in zip(runs, blocks):
            if states[0].shape[0] > batch:
                ended.append([state[batch:] for state in states])
                states = [state[:batch] for state in states]
            block = block.reshape(steps, batch, block.shape[1])
            out, *states = recurrent_layer(mode, block, states, weights)
            outputs.append(out.reshape(steps * batch, -1))
        # rows 0..batch of the last run, then those that stopped, latest first
        finals = [ops.cat([states[i]] + [part[i] for part in reversed(ended)], dim=0) if ended else states[i]
                  for i in range(len(states))]  # fmt: skip
        return (outputs[0] if len(outputs) == 1 else ops.cat(outputs, dim=0)), finals
    carried = None
    for (steps, batch), block in zip(reversed(runs), reversed(blocks)):
        if carried is None:
            start = [state[:batch] if batch < batch_total else state for state in states]
        elif carried[0].shape[0] < batch:  # sequences that end with this run start here from their h0
            start = [ops.cat([c, state[c.shape[0] : batch]], dim=0) for c, state in zip(carried, states)]
        else:
            start = carried
        block = block.reshape(steps, batch, block.shape[1])
        out, *carried = recurrent_layer(mode, block, start, weights, reverse=True)
        outputs.append(out.reshape(steps * batch, -1))
    outputs.reverse()
    return (outputs[0] if len(outputs) == 1 else ops.cat(outputs, dim=0)), carried


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu),
    with PyTorch's arguments; see ``RNNBase.forward`` for inputs and outputs."""

    def __init__(
        self,
        input_size,
        hidden_size,
        num_layers=1,
        nonlinearity="tanh",
        bias=True,
        batch_first=False,
        dropout=0.0,
        bidirectional=False,
        dtype=None,
        device=None,
    ):
        super().__init__(
            _mode_for("RNN", nonlinearity), input_size, hidden_size, num_layers, bias,
            batch_first, dropout, bidirectional, dtype, device,
        )  # fmt: skip
        self.nonlinearity = nonlinearity

    def extra_repr(self):
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else text + ", nonlinearity='relu'"


class LSTM(RNNBase):
    """Long short-term memory (gates i, f, g, o, as PyTorch):

        i, f, o = sigmoid(...), g = tanh(...)    c_t = f * c_{t-1} + i * g    h_t = o * tanh(c_t)

    ``forward(input, (h0, c0))`` returns ``(output, (h_n, c_n))``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, device=None):  # fmt: skip
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, device
        )


class GRU(RNNBase):
    """Gated recurrent unit (gates r, z, n, as PyTorch):

        r, z = sigmoid(...)    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))    h_t = (1 - z) * n + z * h_{t-1}
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, dtype=None, device=None):  # fmt: skip
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, dtype, device
        )


# ----- one step ------------------------------------------------------------------------


class RNNCellBase(Module):
    """One time step of a recurrent layer: the same fused op with a sequence of length 1.

    Parameters ``weight_ih`` (G*hidden, input_size), ``weight_hh`` (G*hidden, hidden_size)
    and, with ``bias``, ``bias_ih``, ``bias_hh`` (G*hidden,).
    """

    def __init__(self, mode, input_size, hidden_size, bias=True, dtype=None, device=None):
        super().__init__()
        _check_sizes(type(self).__name__, input_size, hidden_size)
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bool(bias)
        gates = MODES[mode].gates * hidden_size
        self.weight_ih = new_parameter(gates, input_size, dtype=dtype, device=device)
        self.weight_hh = new_parameter(gates, hidden_size, dtype=dtype, device=device)
        if bias:
            self.bias_ih = new_parameter(gates, dtype=dtype, device=device)
            self.bias_hh = new_parameter(gates, dtype=dtype, device=device)
        self.reset_parameters()

    def reset_parameters(self):
        _init_uniform(self, self.hidden_size)

    def forward(self, input, hx=None):  # noqa: A002
        """input (batch, input_size) or (input_size,); hx (batch, hidden_size) or (hidden_size,)
        (a tuple (h, c) for ``LSTMCell``), zeros if left out. Returns h' (or (h', c'))."""
        layer = type(self).__name__
        if not isinstance(input, Tensor):
            raise TypeError(f"{layer}: input must be a tensor, got {type(input).__name__}")
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(
                f"{layer}: expected input of shape (batch, {self.input_size}) or ({self.input_size},), "
                f"got {_shape(input)}"
            )
        _check_dtype(layer, "input", input, self.weight_ih.dtype)
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        n_states = MODES[self.mode].n_states
        if hx is None:
            states = [_zeros_like_state(x, (x.shape[0], self.hidden_size))] * n_states
        else:
            states = _state_tuple(layer, hx, n_states)
            expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            for name, state in zip(["h", "c"] if n_states == 2 else ["hx"], states):
                _check_state(layer, name, state, expected, x.dtype)
            if not batched:
                states = [state.unsqueeze(0) for state in states]
        weights = [self.weight_ih, self.weight_hh] + ([self.bias_ih, self.bias_hh] if self.bias else [])
        _, *last = recurrent_layer(self.mode, x.unsqueeze(0), states, weights)
        if not batched:
            last = [state.squeeze(0) for state in last]
        return last[0] if len(last) == 1 else tuple(last)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", dtype=None, device=None):
        super().__init__(_mode_for("RNNCell", nonlinearity), input_size, hidden_size, bias, dtype, device)
        self.nonlinearity = nonlinearity

    def extra_repr(self):
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else text + ", nonlinearity='relu'"


class LSTMCell(RNNCellBase):
    """One LSTM step: ``cell(x, (h, c)) -> (h', c')``."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, device=None):
        super().__init__("LSTM", input_size, hidden_size, bias, dtype, device)


class GRUCell(RNNCellBase):
    """One GRU step: ``cell(x, h) -> h'``."""

    def __init__(self, input_size, hidden_size, bias=True, dtype=None, device=None):
        super().__init__("GRU", input_size, hidden_size, bias, dtype, device)
