"""``RNN``, ``LSTM``, ``GRU`` and their cells: the fused sequence ops against finite
differences and against the same computation from primitive ops, and the layers'
behaviour (initialisation, dropout between layers, errors, dtypes, long sequences).

The comparison with PyTorch is in ``test_rnn_parity.py``.
"""

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm
from tinylm.nn.layers import rnn as rnn_layers
from tinylm.nn.layers.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from tinylm.ops.fused.recurrent import MODES, GRUFunction, LSTMFunction, RNNFunction, recurrent_layer
from tests import strategies as S
from tests.coverage import covers

ALL_MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


def make_stack(mode, input_size, hidden_size, **kwargs):
    if mode.startswith("RNN"):
        return RNN(input_size, hidden_size, nonlinearity=mode[4:].lower(), **kwargs)
    return {"LSTM": LSTM, "GRU": GRU}[mode](input_size, hidden_size, **kwargs)


def make_cell(mode, input_size, hidden_size, **kwargs):
    if mode.startswith("RNN"):
        return RNNCell(input_size, hidden_size, nonlinearity=mode[4:].lower(), **kwargs)
    return {"LSTM": LSTMCell, "GRU": GRUCell}[mode](input_size, hidden_size, **kwargs)


def as_hx(states):
    """The ``hx`` argument for a list of initial states: None, h0, or (h0, c0)."""
    if not states:
        return None
    return tuple(states) if len(states) == 2 else states[0]


def outputs_of(result):
    """A layer's or cell's result flattened to a list of tensors."""
    if isinstance(result, tinylm.Tensor):
        return [result]
    flat = []
    for item in result:
        flat.extend(outputs_of(item))
    return flat


# ----- the fused op of one layer in one direction ---------------------------------------------


@st.composite
def sequence_cases(draw, mode):
    """Inputs of one fused op, (x, h0[, c0], w_ih, w_hh[, b_ih, b_hh]), with tiny sizes,
    a direction, which inputs require grad and which outputs take part in the result."""
    length, batch, features, hidden = (draw(st.integers(1, 3)) for _ in range(4))
    gates, n_states = MODES[mode].gates * hidden, MODES[mode].n_states
    bias = draw(st.booleans())
    shapes = [(length, batch, features)] + [(batch, hidden)] * n_states + [(gates, features), (gates, hidden)]
    shapes += [(gates,), (gates,)] if bias else []
    if mode == "RNN_RELU":
        # relu has a kink at 0 where finite differences disagree with any derivative;
        # random continuous values keep every pre-activation (almost surely) away from it
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        arrays = [rng.uniform(-1.5, 1.5, shape) for shape in shapes]
    else:
        arrays = [draw(S.arrays(shape, -1.5, 1.5)) for shape in shapes]
    wants_grad = draw(st.lists(st.booleans(), min_size=len(shapes), max_size=len(shapes)))
    wants_grad[draw(st.integers(0, len(shapes) - 1))] = True  # at least one
    n_outputs = 1 + n_states
    used = draw(st.lists(st.integers(0, n_outputs - 1), min_size=1, max_size=n_outputs, unique=True))
    leaves = [tinylm.tensor(a, requires_grad=w) for a, w in zip(arrays, wants_grad)]
    return leaves, n_states, draw(st.booleans()), sorted(used)


def check_sequence_op(mode, case):
    leaves, n_states, reverse, used = case

    def run(x, *rest):
        outputs = recurrent_layer(mode, x, rest[:n_states], rest[n_states:], reverse=reverse)
        return tuple(outputs[i] for i in used)

    assert tinylm.gradcheck(run, leaves)


@covers(RNNFunction)
@given(case=sequence_cases("RNN_TANH"))
def test_rnn_tanh_op_gradients_match_finite_differences(case):
    check_sequence_op("RNN_TANH", case)


@covers(RNNFunction)
@given(case=sequence_cases("RNN_RELU"))
def test_rnn_relu_op_gradients_match_finite_differences(case):
    check_sequence_op("RNN_RELU", case)


@covers(LSTMFunction)
@given(case=sequence_cases("LSTM"))
def test_lstm_op_gradients_match_finite_differences(case):
    check_sequence_op("LSTM", case)


@covers(GRUFunction)
@given(case=sequence_cases("GRU"))
def test_gru_op_gradients_match_finite_differences(case):
    check_sequence_op("GRU", case)


# ----- the same op reading its input as rows of a table (ids) ------------------------------------


@st.composite
def table_cases(draw, mode):
    """A sequence case whose input is given as a table (V, I) and ids (T, B) picking its rows."""
    leaves, n_states, reverse, used = draw(sequence_cases(mode))
    length, batch, features = leaves[0].shape
    vocab = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = rng.integers(0, vocab, (length, batch))
    leaves[0] = tinylm.tensor(rng.uniform(-1.5, 1.5, (vocab, features)), requires_grad=True)
    return leaves, n_states, reverse, used, ids


@pytest.mark.parametrize("mode", ALL_MODES)
@settings(max_examples=15)
@given(data=st.data())
def test_op_reading_rows_of_a_table_matches_finite_differences_and_the_looked_up_input(mode, data):
    leaves, n_states, reverse, used, ids = data.draw(table_cases(mode))

    def run(table, *rest, ids=ids):
        outputs = recurrent_layer(mode, table, rest[:n_states], rest[n_states:], reverse=reverse, ids=ids)
        return tuple(outputs[i] for i in used)

    assert tinylm.gradcheck(run, leaves)
    # the same values and gradients as the op given table[ids] itself
    results = []
    for given_ids in (True, False):
        rng = np.random.default_rng(0)  # the same weights on the outputs both times
        for leaf in leaves:
            leaf.grad = None
        if given_ids:
            outputs = run(*leaves)
        else:
            outputs = run(tinylm.nn.functional.embedding(tinylm.tensor(ids), leaves[0]), *leaves[1:], ids=None)
        weights = [tinylm.tensor(rng.standard_normal(out.shape)) for out in outputs]
        sum((out * w).sum() for out, w in zip(outputs, weights)).backward()
        results.append(([out.numpy() for out in outputs],
                        [None if leaf.grad is None else leaf.grad.numpy() for leaf in leaves]))
    (outputs, grads), (expected_outputs, expected_grads) = results
    for got, want in zip(outputs, expected_outputs):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, expected_grads):
        assert (got is None) == (want is None)
        if got is not None:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


# ----- whole layers and cells: configurations ---------------------------------------------------


@st.composite
def stack_configs(draw, max_side=3):
    return dict(
        num_layers=draw(st.integers(1, 2)),
        bidirectional=draw(st.booleans()),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        with_states=draw(st.booleans()),
        batched=draw(st.booleans()),
        length=draw(st.integers(1, max_side)),
        batch=draw(st.integers(1, max_side)),
        input_size=draw(st.integers(1, max_side)),
        hidden_size=draw(st.integers(1, max_side)),
        seed=draw(st.integers(0, 2**16)),
    )


def build_stack(mode, config, dtype=np.float64):
    """A layer, an input and its initial states (maybe none) for ``config``."""
    c = config
    tinylm.manual_seed(c["seed"])
    layer = make_stack(
        mode, c["input_size"], c["hidden_size"], num_layers=c["num_layers"], bias=c["bias"],
        batch_first=c["batch_first"], bidirectional=c["bidirectional"], dtype=dtype,
    )  # fmt: skip
    rng = np.random.default_rng(c["seed"])
    length, batch, features = c["length"], c["batch"], c["input_size"]
    if not c["batched"]:
        shape = (length, features)
    else:
        shape = (batch, length, features) if c["batch_first"] else (length, batch, features)
    x = tinylm.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
    states = []
    if c["with_states"]:
        count = c["num_layers"] * (2 if c["bidirectional"] else 1)
        state_shape = (count, batch, c["hidden_size"]) if c["batched"] else (count, c["hidden_size"])
        states = [
            tinylm.tensor(rng.standard_normal(state_shape).astype(dtype), requires_grad=True)
            for _ in range(MODES[mode].n_states)
        ]
    return layer, x, states


@st.composite
def cell_configs(draw, max_side=3):
    return dict(
        bias=draw(st.booleans()),
        with_states=draw(st.booleans()),
        batched=draw(st.booleans()),
        batch=draw(st.integers(1, max_side)),
        input_size=draw(st.integers(1, max_side)),
        hidden_size=draw(st.integers(1, max_side)),
        seed=draw(st.integers(0, 2**16)),
    )


def build_cell(mode, config, dtype=np.float64):
    c = config
    tinylm.manual_seed(c["seed"])
    cell = make_cell(mode, c["input_size"], c["hidden_size"], bias=c["bias"], dtype=dtype)
    rng = np.random.default_rng(c["seed"])
    lead = (c["batch"],) if c["batched"] else ()
    x = tinylm.tensor(rng.standard_normal(lead + (c["input_size"],)).astype(dtype), requires_grad=True)
    states = []
    if c["with_states"]:
        states = [
            tinylm.tensor(rng.standard_normal(lead + (c["hidden_size"],)).astype(dtype), requires_grad=True)
            for _ in range(MODES[mode].n_states)
        ]
    return cell, x, states


def run_with_gradients(module, x, states, seed=0):
    """Forward, then backward of a random projection of every output; returns
    (outputs, {name: gradient}) as NumPy arrays."""
    module.zero_grad()
    for leaf in [x, *states]:
        leaf.grad = None
    outputs = outputs_of(module(x, as_hx(states)))
    rng = np.random.default_rng(seed)
    loss = sum((out * tinylm.tensor(rng.standard_normal(out.shape).astype(out.dtype))).sum() for out in outputs)
    loss.backward()
    grads = {"input": x.grad.numpy().copy()}
    grads.update({f"state {i}": s.grad.numpy().copy() for i, s in enumerate(states)})
    grads.update({name: p.grad.numpy().copy() for name, p in module.named_parameters()})
    return [out.numpy().copy() for out in outputs], grads


# ----- whole layers and cells against finite differences -----------------------------------------


def check_module_gradients(module, x, states):
    parameters = list(module.parameters())
    n_states = len(states)

    def run(x, *rest):  # the parameters are passed only so that gradcheck perturbs them
        return tuple(outputs_of(module(x, as_hx(list(rest[:n_states])))))

    assert tinylm.gradcheck(run, [x, *states, *parameters])


@pytest.mark.parametrize("mode", ALL_MODES)
@settings(max_examples=6)
@given(config=stack_configs(max_side=2))
def test_stack_gradients_match_finite_differences(mode, config):
    check_module_gradients(*build_stack(mode, config))


@pytest.mark.parametrize("mode", ALL_MODES)
@settings(max_examples=10)
@given(config=cell_configs())
def test_cell_gradients_match_finite_differences(mode, config):
    check_module_gradients(*build_cell(mode, config))


def test_gradients_through_dropout_between_layers_match_finite_differences():
    layer = LSTM(2, 2, num_layers=2, dropout=0.4, bidirectional=True, dtype=np.float64)
    x = tinylm.randn(3, 2, 2, dtype=np.float64, requires_grad=True)

    def run(x, *parameters):
        tinylm.manual_seed(7)  # the same masks on every evaluation
        return tuple(outputs_of(layer(x)))

    assert tinylm.gradcheck(run, [x, *layer.parameters()])


# ----- against the same computation from primitive ops --------------------------------------------


def composed_layer(mode, x, states, weights, reverse=False, ids=None):
    """What ``recurrent_layer`` computes, written with primitive ops one step at a time,
    so that autograd traces every step (the reference for the fused BPTT)."""
    if ids is not None:  # x is a table, the input its rows picked by ids
        x = tinylm.nn.functional.embedding(tinylm.tensor(ids), x)
    w_ih, w_hh, *biases = weights
    b_ih, b_hh = biases if biases else (0.0, 0.0)
    hidden = w_hh.shape[1]
    part = [slice(k * hidden, (k + 1) * hidden) for k in range(4)]
    h, c = states[0], states[-1]
    length = x.shape[0]
    outputs = [None] * length
    for t in reversed(range(length)) if reverse else range(length):
        gi = x[t] @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if mode == "RNN_TANH":
            h = tinylm.tanh(gi + gh)
        elif mode == "RNN_RELU":
            h = tinylm.relu(gi + gh)
        elif mode == "LSTM":
            gates = gi + gh
            i, f, g, o = (gates[:, p] for p in part)
            c = f.sigmoid() * c + i.sigmoid() * g.tanh()
            h = o.sigmoid() * c.tanh()
        else:
            r = (gi[:, part[0]] + gh[:, part[0]]).sigmoid()
            z = (gi[:, part[1]] + gh[:, part[1]]).sigmoid()
            n = (gi[:, part[2]] + r * gh[:, part[2]]).tanh()
            h = (1 - z) * n + z * h
        outputs[t] = h
    finals = (h, c) if mode == "LSTM" else (h,)
    return (tinylm.stack(outputs, 0),) + finals


def assert_fused_equals_composed(module, x, states, rtol=1e-11, atol=1e-12):
    fused_outputs, fused_grads = run_with_gradients(module, x, states)
    with mock.patch.object(rnn_layers, "recurrent_layer", composed_layer):
        composed_outputs, composed_grads = run_with_gradients(module, x, states)
    for ours, reference in zip(fused_outputs, composed_outputs):
        np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)
    assert fused_grads.keys() == composed_grads.keys()
    for name, grad in fused_grads.items():
        np.testing.assert_allclose(grad, composed_grads[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("mode", ALL_MODES)
@settings(max_examples=15)
@given(config=stack_configs())
def test_stack_equals_its_composition_from_primitives(mode, config):
    assert_fused_equals_composed(*build_stack(mode, config))


@pytest.mark.parametrize("mode", ALL_MODES)
@settings(max_examples=10)
@given(config=cell_configs())
def test_cell_equals_its_composition_from_primitives(mode, config):
    assert_fused_equals_composed(*build_cell(mode, config))


@pytest.mark.parametrize("mode", ALL_MODES)
def test_float32_stack_equals_its_composition_from_primitives(mode):
    config = dict(num_layers=2, bidirectional=True, bias=True, batch_first=True, with_states=True,
                  batched=True, length=6, batch=3, input_size=5, hidden_size=7, seed=3)  # fmt: skip
    assert_fused_equals_composed(*build_stack(mode, config, dtype=np.float32), rtol=2e-5, atol=2e-6)


# ----- shapes, names, initialisation -------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES)
def test_parameter_names_and_shapes_are_pytorchs(mode):
    layer = make_stack(mode, 3, 5, num_layers=2, bidirectional=True)
    g = MODES[mode].gates * 5
    expected = {}
    for k, width in ((0, 3), (1, 10)):
        for suffix in (f"_l{k}", f"_l{k}_reverse"):
            expected.update({
                "weight_ih" + suffix: (g, width), "weight_hh" + suffix: (g, 5),
                "bias_ih" + suffix: (g,), "bias_hh" + suffix: (g,),
            })  # fmt: skip
    assert {name: tuple(p.shape) for name, p in layer.named_parameters()} == expected
    assert [name for name, _ in layer.named_parameters()][:4] == [
        "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
    ]  # fmt: skip
    no_bias = make_stack(mode, 3, 5, bias=False)
    assert [name for name, _ in no_bias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    cell = make_cell(mode, 3, 5)
    assert {name: tuple(p.shape) for name, p in cell.named_parameters()} == {
        "weight_ih": (g, 3), "weight_hh": (g, 5), "bias_ih": (g,), "bias_hh": (g,),
    }  # fmt: skip
    assert [name for name, _ in make_cell(mode, 3, 5, bias=False).named_parameters()] == ["weight_ih", "weight_hh"]


@pytest.mark.parametrize("mode", ALL_MODES)
def test_initialisation_is_uniform_within_one_over_sqrt_hidden(mode):
    tinylm.manual_seed(0)
    bound = 1 / np.sqrt(16)
    for module in (make_stack(mode, 10, 16, num_layers=2, bidirectional=True), make_cell(mode, 10, 16)):
        for name, parameter in module.named_parameters():
            values = parameter.numpy()
            assert values.dtype == np.float32
            assert np.abs(values).max() <= bound, name
            assert values.min() < 0 < values.max(), name
        pooled = np.concatenate([p.numpy().ravel() for p in module.parameters()])
        assert pooled.min() < -0.99 * bound and pooled.max() > 0.99 * bound
        assert abs(pooled.mean()) < 0.05 * bound  # centred, as U(-b, b)
    tinylm.manual_seed(0)
    first = make_stack(mode, 3, 4).weight_hh_l0.numpy().copy()
    tinylm.manual_seed(0)
    np.testing.assert_array_equal(make_stack(mode, 3, 4).weight_hh_l0.numpy(), first)


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("batch_first", [False, True])
def test_output_and_state_shapes(mode, batch_first):
    layer = make_stack(mode, 3, 5, num_layers=3, bidirectional=True, batch_first=batch_first)
    x = tinylm.randn(*((2, 7, 3) if batch_first else (7, 2, 3)))
    output, last = layer(x)
    assert output.shape == ((2, 7, 10) if batch_first else (7, 2, 10))
    for state in outputs_of(last):
        assert state.shape == (6, 2, 5)
    output, last = layer(tinylm.randn(7, 3))  # unbatched: batch_first does not apply
    assert output.shape == (7, 10)
    for state in outputs_of(last):
        assert state.shape == (6, 5)
    if mode == "LSTM":
        assert isinstance(last, tuple) and len(last) == 2
    else:
        assert isinstance(last, tinylm.Tensor)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_h_n_holds_the_last_step_of_each_direction(mode):
    layer = make_stack(mode, 3, 4, bidirectional=True, dtype=np.float64)
    output, last = layer(tinylm.randn(5, 2, 3, dtype=np.float64))
    h_n = outputs_of(last)[0].numpy()
    np.testing.assert_array_equal(h_n[0], output.numpy()[-1, :, :4])  # forward: after the last step
    np.testing.assert_array_equal(h_n[1], output.numpy()[0, :, 4:])  # backward: after the first


@pytest.mark.parametrize("mode", ALL_MODES)
def test_default_initial_states_are_zeros(mode):
    layer = make_stack(mode, 3, 4, num_layers=2, bidirectional=True, dtype=np.float64)
    x = tinylm.randn(5, 2, 3, dtype=np.float64)
    zeros = [tinylm.zeros(4, 2, 4, dtype=np.float64) for _ in range(MODES[mode].n_states)]
    for ours, explicit in zip(outputs_of(layer(x)), outputs_of(layer(x, as_hx(zeros)))):
        np.testing.assert_array_equal(ours.numpy(), explicit.numpy())
    cell = make_cell(mode, 3, 4, dtype=np.float64)
    x = tinylm.randn(2, 3, dtype=np.float64)
    zeros = [tinylm.zeros(2, 4, dtype=np.float64) for _ in range(MODES[mode].n_states)]
    for ours, explicit in zip(outputs_of(cell(x)), outputs_of(cell(x, as_hx(zeros)))):
        np.testing.assert_array_equal(ours.numpy(), explicit.numpy())


# ----- dropout between layers ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES)
def test_dropout_is_applied_between_layers_in_training_only(mode):
    tinylm.manual_seed(0)
    layer = make_stack(mode, 3, 8, num_layers=2, dropout=0.5, dtype=np.float64)
    x = tinylm.randn(4, 2, 3, dtype=np.float64)

    def run(seed):
        tinylm.manual_seed(seed)
        output, last = layer(x)
        return output.numpy().copy(), outputs_of(last)[0].numpy().copy()

    first, first_h = run(1)
    second, second_h = run(2)
    assert not np.allclose(first, second)  # different masks on the second layer's input
    np.testing.assert_array_equal(first_h[0], second_h[0])  # the first layer is not affected
    again, _ = run(1)
    np.testing.assert_array_equal(again, first)  # the masks come from tinylm's seeded generator

    layer.eval()
    eval_first, _ = run(1)
    eval_second, _ = run(2)
    np.testing.assert_array_equal(eval_first, eval_second)
    without = make_stack(mode, 3, 8, num_layers=2, dropout=0.0, dtype=np.float64)
    without.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(without(x)[0].numpy(), eval_first)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_no_dropout_after_the_last_layer(mode):
    layer = make_stack(mode, 3, 4, num_layers=1, dropout=0.9, bidirectional=True, dtype=np.float64)
    x = tinylm.randn(4, 2, 3, dtype=np.float64)
    tinylm.manual_seed(1)
    training = outputs_of(layer(x))
    layer.eval()
    for ours, reference in zip(training, outputs_of(layer(x))):
        np.testing.assert_array_equal(ours.numpy(), reference.numpy())


# ----- the fused op is one node per layer and direction, and handles long sequences -------------


def graph_size(tensor):
    seen, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(t.grad_fn for t in node.inputs)
    return len(seen)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_the_graph_does_not_grow_with_the_sequence_length(mode):
    layer = make_stack(mode, 2, 3, num_layers=2, bidirectional=True)
    sizes = {graph_size(layer(tinylm.randn(length, 1, 2))[0]) for length in (1, 5, 50)}
    assert len(sizes) == 1


@pytest.mark.parametrize("mode", ALL_MODES)
def test_a_long_sequence_runs_forward_and_backward(mode):
    layer = make_stack(mode, 2, 3, num_layers=2, bidirectional=True)
    x = tinylm.randn(2000, 1, 2, requires_grad=True)
    output, last = layer(x)
    (output.sum() + outputs_of(last)[0].sum()).backward()
    assert np.isfinite(x.grad.numpy()).all() and np.abs(x.grad.numpy()).sum() > 0
    for name, parameter in layer.named_parameters():
        assert np.isfinite(parameter.grad.numpy()).all(), name


# ----- dtypes and grad mode -------------------------------------------------------------------------


def saved_arrays(node):
    """Every array a Function node keeps for its backward."""
    for value in vars(node).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, np.ndarray):
                yield item


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_everywhere(mode, dtype):
    layer = make_stack(mode, 3, 4, num_layers=2, bidirectional=True, dtype=dtype)
    x = tinylm.randn(5, 2, 3, dtype=dtype, requires_grad=True)
    h0 = tinylm.randn(4, 2, 4, dtype=dtype, requires_grad=True)
    hx = (h0, tinylm.randn(4, 2, 4, dtype=dtype)) if mode == "LSTM" else h0
    outputs = outputs_of(layer(x, hx))
    ops = recurrent_layer(mode, x, [h0[0]] * MODES[mode].n_states, layer._weights(0, 0))
    for out in outputs + list(ops):
        assert out.dtype == dtype
    node = ops[0].grad_fn
    assert all(array.dtype == dtype for array in saved_arrays(node))
    sum(out.sum() for out in outputs).backward()
    assert x.grad.dtype == dtype and h0.grad.dtype == dtype
    for parameter in layer.parameters():
        assert parameter.grad.dtype == dtype


@pytest.mark.parametrize("mode", ALL_MODES)
def test_no_grad_gives_the_same_values_and_records_nothing(mode):
    layer = make_stack(mode, 3, 4, num_layers=2, dtype=np.float64)
    x = tinylm.randn(5, 2, 3, dtype=np.float64)
    recorded = outputs_of(layer(x))
    with tinylm.no_grad():
        unrecorded = outputs_of(layer(x))
    for ours, reference in zip(unrecorded, recorded):
        assert ours.grad_fn is None and not ours.requires_grad
        np.testing.assert_array_equal(ours.numpy(), reference.numpy())


# ----- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES)
def test_a_wrong_input_shape_names_the_layer_and_both_shapes(mode):
    layer = make_stack(mode, 4, 3)
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(seq_len, batch, 4\).*got \(5, 2, 3\)"):
        layer(tinylm.zeros(5, 2, 3))
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape .*got \(4,\)"):
        layer(tinylm.zeros(4))
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape .*got \(1, 5, 2, 4\)"):
        layer(tinylm.zeros(1, 5, 2, 4))
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(batch, seq_len, 4\)"):
        make_stack(mode, 4, 3, batch_first=True)(tinylm.zeros(2, 5, 3))
    empty = rf"{name}: expected a sequence of at least one step, got input of shape \(0, 2, 4\)"
    with pytest.raises(ValueError, match=empty):
        layer(tinylm.zeros(0, 2, 4))


@pytest.mark.parametrize("mode", ALL_MODES)
@settings(max_examples=8)
@given(config=stack_configs(max_side=3))
def test_forward_embedded_equals_forward_on_the_looked_up_rows(mode, config):
    layer, x, states = build_stack(mode, config)
    rng = np.random.default_rng(config["seed"])
    ids = tinylm.tensor(rng.integers(0, 3, x.shape[:-1]))
    table = tinylm.tensor(rng.standard_normal((3, config["input_size"])), requires_grad=True)
    results = []
    for embedded in (True, False):
        layer.zero_grad()
        for leaf in [table, *states]:
            leaf.grad = None
        if embedded:
            result = layer.forward_embedded(table, ids, as_hx(states))
        else:
            result = layer(tinylm.nn.functional.embedding(ids, table), as_hx(states))
        outputs = outputs_of(result)
        sum((out * out.detach()).sum() for out in outputs).backward()
        grads = [table.grad.numpy()] + [s.grad.numpy() for s in states] + [p.grad.numpy() for p in layer.parameters()]
        results.append(([out.numpy() for out in outputs], grads))
    for got, want in zip(*(outputs + grads for outputs, grads in results)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_forward_embedded_refuses_bad_ids_and_tables_naming_them(mode):
    layer = make_stack(mode, 4, 3, batch_first=True)
    name = f"{type(layer).__name__}.forward_embedded"
    table, ids = tinylm.zeros(6, 4), tinylm.tensor(np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(IndexError, match=rf"{name}: id 6 is out of range for an embedding of size 6"):
        layer.forward_embedded(table, tinylm.tensor(np.array([[0, 6]])))
    with pytest.raises(TypeError, match=rf"{name}: ids must be an integer tensor, got float32"):
        layer.forward_embedded(table, tinylm.zeros(2, 5))
    with pytest.raises(ValueError, match=rf"{name}: expected a table of shape \(num_embeddings, 4\), got \(6, 3\)"):
        layer.forward_embedded(tinylm.zeros(6, 3), ids)
    with pytest.raises(TypeError, match=rf"{name}: the table is float64 but the parameters are float32"):
        layer.forward_embedded(tinylm.zeros(6, 4, dtype=np.float64), ids)
    with pytest.raises(ValueError, match=rf"{name}: expected ids of shape \(batch, seq_len\) or \(seq_len,\), got \(1, 2, 5\)"):
        layer.forward_embedded(table, ids.reshape(1, 2, 5))
    with pytest.raises(ValueError, match=rf"{name}: expected a sequence of at least one step, got ids of shape \(2, 0\)"):
        layer.forward_embedded(table, tinylm.tensor(np.zeros((2, 0), dtype=np.int64)))


@pytest.mark.parametrize("mode", ALL_MODES)
def test_a_wrong_initial_state_names_the_layer_and_both_shapes(mode):
    layer = make_stack(mode, 4, 3, num_layers=2, bidirectional=True)
    name = type(layer).__name__
    x = tinylm.zeros(5, 2, 4)
    good, bad = tinylm.zeros(4, 2, 3), tinylm.zeros(2, 2, 3)
    with pytest.raises(ValueError, match=rf"{name}: expected h0 of shape \(4, 2, 3\), got \(2, 2, 3\)"):
        layer(x, (bad, good) if mode == "LSTM" else bad)
    if mode == "LSTM":
        with pytest.raises(ValueError, match=r"LSTM: expected c0 of shape \(4, 2, 3\), got \(4, 2, 5\)"):
            layer(x, (good, tinylm.zeros(4, 2, 5)))
        with pytest.raises(TypeError, match=r"LSTM: hx must be a tuple \(h0, c0\)"):
            layer(x, good)
    with pytest.raises(ValueError, match=rf"{name}: expected h0 of shape \(4, 3\), got \(4, 2, 3\)"):
        layer(tinylm.zeros(5, 4), (good, good) if mode == "LSTM" else good)  # unbatched input, batched h0


@pytest.mark.parametrize("mode", ALL_MODES)
def test_a_dtype_mismatch_names_the_layer(mode):
    layer = make_stack(mode, 4, 3)
    name = type(layer).__name__
    with pytest.raises(TypeError, match=rf"{name}: input is float64 but the parameters are float32"):
        layer(tinylm.zeros(5, 2, 4, dtype=np.float64))
    h0 = tinylm.zeros(1, 2, 3, dtype=np.float64)
    with pytest.raises(TypeError, match=rf"{name}: h0 is float64 but the parameters are float32"):
        layer(tinylm.zeros(5, 2, 4), (h0, h0) if mode == "LSTM" else h0)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_cell_errors_name_the_cell_and_both_shapes(mode):
    cell = make_cell(mode, 4, 3)
    name = type(cell).__name__
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(batch, 4\) or \(4,\), got \(2, 5\)"):
        cell(tinylm.zeros(2, 5))
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape .*got \(1, 2, 4\)"):
        cell(tinylm.zeros(1, 2, 4))
    state = tinylm.zeros(2, 5)
    state_name = "h" if mode == "LSTM" else "hx"
    with pytest.raises(ValueError, match=rf"{name}: expected {state_name} of shape \(2, 3\), got \(2, 5\)"):
        cell(tinylm.zeros(2, 4), (state, tinylm.zeros(2, 3)) if mode == "LSTM" else state)
    with pytest.raises(TypeError, match=rf"{name}: input is float64 but the parameters are float32"):
        cell(tinylm.zeros(2, 4, dtype=np.float64))


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="RNN: nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="RNNCell: nonlinearity must be 'tanh' or 'relu'"):
        RNNCell(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="LSTM: dropout must be a number between 0 and 1, got 1.5"):
        LSTM(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="GRU: num_layers must be a positive integer, got 0"):
        GRU(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="LSTM: hidden_size must be greater than zero"):
        LSTM(3, 0)
    with pytest.raises(ValueError, match="GRUCell: input_size must be a non-negative integer"):
        GRUCell(-1, 4)


def test_repr_shows_the_settings():
    assert repr(LSTM(3, 4, num_layers=2, batch_first=True)) == "LSTM(3, 4, num_layers=2, batch_first=True)"
    assert repr(RNN(3, 4, nonlinearity="relu", bias=False)) == "RNN(3, 4, bias=False, nonlinearity='relu')"
    assert repr(GRUCell(3, 4)) == "GRUCell(3, 4)"
