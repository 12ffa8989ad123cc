"""``tinylm.nn.utils.rnn`` (padding and packing) and packed input to ``RNN``/``LSTM``/``GRU``:
a packed batch gives each sequence what it gets alone, and what PyTorch gives."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm
from tinylm import nn
from tinylm.nn.utils import clip_grad_norm_  # noqa: F401 (the package keeps the module's names)
from tinylm.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
    pad_sequence,
    unpack_sequence,
    unpad_sequence,
)
from tests.parity import assert_close, copy_weights

MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


def _leaf(array):
    return tinylm.tensor(array, requires_grad=True)


def _make(mode, *args, **kwargs):
    if mode.startswith("RNN"):
        return nn.RNN(*args, nonlinearity=mode[4:].lower(), **kwargs)
    return getattr(nn, mode)(*args, **kwargs)


def _torch_make(torch, mode, *args, **kwargs):
    if mode.startswith("RNN"):
        return torch.nn.RNN(*args, nonlinearity=mode[4:].lower(), **kwargs)
    return getattr(torch.nn, mode)(*args, **kwargs)


# ----- padding and packing -------------------------------------------------------------------------


@pytest.mark.parity
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_pad_sequence_matches_pytorch_and_passes_gradients_back(torch, batch_first, padding_side):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((n, 2)) for n in (2, 4, 1)]
    ours, theirs = [_leaf(a) for a in arrays], [torch.tensor(a, requires_grad=True) for a in arrays]
    y = pad_sequence(ours, batch_first, padding_value=-1.0, padding_side=padding_side)
    expected = torch.nn.utils.rnn.pad_sequence(theirs, batch_first, padding_value=-1.0, padding_side=padding_side)
    assert_close(y, expected, np.float64)
    g = rng.standard_normal(y.shape)
    (y * tinylm.tensor(g)).sum().backward()
    (expected * torch.tensor(g)).sum().backward()
    for a, b in zip(ours, theirs):
        assert_close(a.grad, b.grad, np.float64)
    if padding_side == "right":
        for piece, array in zip(unpad_sequence(y, [2, 4, 1], batch_first), arrays):
            np.testing.assert_array_equal(piece.numpy(), array)


@pytest.mark.parity
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths, enforce_sorted", [([4, 4, 2, 1], True), ([2, 4, 1, 4, 3], False)])
def test_pack_and_pad_packed_match_pytorch(torch, batch_first, lengths, enforce_sorted):
    rng = np.random.default_rng(1)
    shape = (len(lengths), 5, 3) if batch_first else (5, len(lengths), 3)
    x = rng.standard_normal(shape)
    ours, theirs = _leaf(x), torch.tensor(x, requires_grad=True)
    packed = pack_padded_sequence(ours, lengths, batch_first, enforce_sorted)
    expected = torch.nn.utils.rnn.pack_padded_sequence(theirs, torch.tensor(lengths), batch_first, enforce_sorted)
    assert_close(packed.data, expected.data, np.float64)
    np.testing.assert_array_equal(packed.batch_sizes.numpy(), expected.batch_sizes.numpy())
    for name in ("sorted_indices", "unsorted_indices"):
        mine, theirs_index = getattr(packed, name), getattr(expected, name)
        if enforce_sorted:
            assert mine is None
        else:
            np.testing.assert_array_equal(mine.numpy(), theirs_index.numpy())
    padded, got_lengths = pad_packed_sequence(packed, batch_first, padding_value=9.0, total_length=6)
    reference, reference_lengths = torch.nn.utils.rnn.pad_packed_sequence(expected, batch_first, 9.0, 6)
    assert_close(padded, reference, np.float64)
    assert got_lengths.dtype == np.int64 and got_lengths.tolist() == reference_lengths.tolist() == lengths
    g = rng.standard_normal(padded.shape)
    (padded * tinylm.tensor(g)).sum().backward()
    (reference * torch.tensor(g)).sum().backward()
    assert_close(ours.grad, theirs.grad, np.float64)  # zero at every padding position


def test_pack_sequence_round_trips():
    arrays = [np.arange(n * 2, dtype=np.float64).reshape(n, 2) + 10 * n for n in (1, 3, 2)]
    packed = pack_sequence([tinylm.tensor(a) for a in arrays], enforce_sorted=False)
    assert isinstance(packed, PackedSequence) and packed.batch_sizes.tolist() == [3, 2, 1]
    for ours, expected in zip(unpack_sequence(packed), arrays):
        np.testing.assert_array_equal(ours.numpy(), expected)


def test_packing_refuses_what_does_not_fit():
    x = tinylm.zeros(4, 3, 2)
    with pytest.raises(ValueError, match=r"must be sorted in decreasing order when enforce_sorted is True"):
        pack_padded_sequence(x, [2, 4, 1])
    with pytest.raises(ValueError, match="expected 3 integer lengths"):
        pack_padded_sequence(x, [2, 1])
    with pytest.raises(ValueError, match="every length must be at least 1, got 0"):
        pack_padded_sequence(x, [2, 1, 0])
    with pytest.raises(ValueError, match="a length of 5 is longer than the padded input's 4 steps"):
        pack_padded_sequence(x, [5, 1, 1])
    with pytest.raises(ValueError, match=r"expected packed data of shape \(sum of lengths, 3\)"):
        nn.LSTM(3, 2)(pack_padded_sequence(x, [4, 2, 1]))
    with pytest.raises(ValueError, match="total_length 2 is shorter"):
        pad_packed_sequence(pack_padded_sequence(x, [4, 2, 1]), total_length=2)


# ----- packed input to the recurrent layers -------------------------------------------------------


@st.composite
def packed_cases(draw):
    mode = draw(st.sampled_from(MODES))
    lengths = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    return dict(
        mode=mode, lengths=lengths, num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
        with_hx=draw(st.booleans()), batch_first=draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
    )  # fmt: skip


def _states_of(result, mode):
    """(output, [h_n] or [h_n, c_n]) from a layer's result."""
    output, state = result
    return output, (list(state) if mode == "LSTM" else [state])


@settings(max_examples=25)
@given(case=packed_cases())
def test_a_packed_batch_gives_each_sequence_what_it_gets_alone(case):
    """Outputs, final states and every gradient (inputs, h0, c0, weights) in float64."""
    mode, lengths, bidirectional = case["mode"], case["lengths"], case["bidirectional"]
    rng = np.random.default_rng(case["seed"])
    tinylm.manual_seed(case["seed"])
    layer = _make(mode, 3, 2, num_layers=case["num_layers"], bidirectional=bidirectional, dtype=np.float64)
    batch, count = len(lengths), case["num_layers"] * (2 if bidirectional else 1)
    arrays = [rng.standard_normal((n, 3)) for n in lengths]
    n_states = 2 if mode == "LSTM" else 1
    h0 = [rng.standard_normal((count, batch, 2)) for _ in range(n_states)] if case["with_hx"] else None
    out_g = [rng.standard_normal((n, 2 * (2 if bidirectional else 1))) for n in lengths]
    state_g = [rng.standard_normal((count, batch, 2)) for _ in range(n_states)]

    def as_hx(states):
        return None if states is None else (tuple(states) if mode == "LSTM" else states[0])

    # packed, from a padded batch
    xs = [_leaf(a) for a in arrays]
    states = None if h0 is None else [_leaf(s) for s in h0]
    padded = pad_sequence(xs, batch_first=case["batch_first"])
    packed = pack_padded_sequence(padded, lengths, case["batch_first"], enforce_sorted=False)
    output, finals = _states_of(layer(packed, as_hx(states)), mode)
    assert isinstance(output, PackedSequence)
    unpacked, got_lengths = pad_packed_sequence(output, batch_first=True)
    assert got_lengths.tolist() == lengths
    loss = sum((unpacked[b, :n] * tinylm.tensor(g)).sum() for b, (n, g) in enumerate(zip(lengths, out_g)))
    loss = loss + sum((f * tinylm.tensor(g)).sum() for f, g in zip(finals, state_g))
    layer.zero_grad()
    loss.backward()
    packed_grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}

    # each sequence alone, unbatched
    layer.zero_grad()
    alone_xs = [_leaf(a) for a in arrays]
    alone_states = None if h0 is None else [[_leaf(s[:, b]) for s in h0] for b in range(batch)]
    total = 0
    for b in range(batch):
        out, alone_finals = _states_of(layer(alone_xs[b], as_hx(None if h0 is None else alone_states[b])), mode)
        np.testing.assert_allclose(unpacked[b, : lengths[b]].numpy(), out.numpy(), rtol=1e-12, atol=1e-14)
        for got, expected in zip(finals, alone_finals):
            np.testing.assert_allclose(got[:, b].numpy(), expected.numpy(), rtol=1e-12, atol=1e-14)
        total = total + (out * tinylm.tensor(out_g[b])).sum()
        total = total + sum((f * tinylm.tensor(g[:, b])).sum() for f, g in zip(alone_finals, state_g))
    total.backward()
    for name, p in layer.named_parameters():
        np.testing.assert_allclose(packed_grads[name], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    for b in range(batch):
        np.testing.assert_allclose(xs[b].grad.numpy(), alone_xs[b].grad.numpy(), rtol=1e-10, atol=1e-12)
        if h0 is not None:
            for s, alone in zip(states, alone_states[b]):
                np.testing.assert_allclose(s.grad.numpy()[:, b], alone.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_packed_layer_gradients_match_finite_differences(mode):
    rng = np.random.default_rng(2)
    layer = _make(mode, 2, 2, bidirectional=True, dtype=np.float64)
    lengths = [3, 1, 3, 2]
    x = rng.standard_normal((3, 4, 2))
    h0 = [rng.standard_normal((2, 4, 2)) for _ in range(2 if mode == "LSTM" else 1)]

    def run(padded, *states):
        packed = pack_padded_sequence(padded, lengths, enforce_sorted=False)
        output, finals = _states_of(layer(packed, tuple(states) if mode == "LSTM" else states[0]), mode)
        return (output.data,) + tuple(finals)

    assert tinylm.gradcheck(run, [_leaf(x)] + [_leaf(s) for s in h0])


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_layers_match_pytorch(torch, dtype, mode, bidirectional):
    """A two-layer stack over an unsorted packed batch, with h0 (and c0) given: the packed output,
    h_n (and c_n), and the gradients of the input, the initial states and every weight."""
    rng = np.random.default_rng(3)
    torch_dtype = getattr(torch, np.dtype(dtype).name)
    reference = _torch_make(torch, mode, 3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True,
                            dtype=torch_dtype)  # fmt: skip
    layer = _make(mode, 3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True, dtype=dtype)
    copy_weights(reference, layer)
    lengths = [2, 5, 5, 1, 3]
    x = rng.standard_normal((5, 5, 3)).astype(dtype)
    count = 2 * (2 if bidirectional else 1)
    h0 = [rng.standard_normal((count, 5, 4)).astype(dtype) for _ in range(2 if mode == "LSTM" else 1)]
    ours_x, theirs_x = _leaf(x), torch.tensor(x, requires_grad=True)
    ours_h, theirs_h = [_leaf(s) for s in h0], [torch.tensor(s, requires_grad=True) for s in h0]
    ours = layer(pack_padded_sequence(ours_x, lengths, True, False), tuple(ours_h) if mode == "LSTM" else ours_h[0])
    theirs = reference(torch.nn.utils.rnn.pack_padded_sequence(theirs_x, lengths, True, False),
                       tuple(theirs_h) if mode == "LSTM" else theirs_h[0])  # fmt: skip
    (ours_out, ours_finals), (theirs_out, theirs_finals) = _states_of(ours, mode), _states_of(theirs, mode)
    assert_close(ours_out.data, theirs_out.data, dtype, "packed output")
    np.testing.assert_array_equal(ours_out.batch_sizes.numpy(), theirs_out.batch_sizes.numpy())
    direction = rng.standard_normal(ours_out.data.shape).astype(dtype)
    ours_loss = (ours_out.data * tinylm.tensor(direction)).sum()
    theirs_loss = (theirs_out.data * torch.tensor(direction)).sum()
    for i, (a, b) in enumerate(zip(ours_finals, theirs_finals)):
        assert_close(a, b, dtype, f"final state {i}")
        ours_loss = ours_loss + (a * a).sum()
        theirs_loss = theirs_loss + (b * b).sum()
    ours_loss.backward()
    theirs_loss.backward()
    assert_close(ours_x.grad, theirs_x.grad, dtype, "input gradient")
    for i, (a, b) in enumerate(zip(ours_h, theirs_h)):
        assert_close(a.grad, b.grad, dtype, f"initial state {i} gradient")
    for name, parameter in reference.named_parameters():
        assert_close(getattr(layer, name).grad, parameter.grad, dtype, f"gradient of {name}")


def test_unpacked_calls_still_take_the_plain_path():
    """An ordinary (T, B, I) input is not turned into runs: one fused op per layer and direction."""
    from tinylm.ops.fused.recurrent import LSTMFunction

    layer = nn.LSTM(3, 2, num_layers=2)
    calls = []
    original = LSTMFunction.forward

    def counting(self, *args, **kwargs):
        calls.append(args[0].shape)
        return original(self, *args, **kwargs)

    LSTMFunction.forward = counting
    try:
        layer(tinylm.zeros(5, 4, 3))
        assert calls == [(5, 4, 3), (5, 4, 2)]
        layer(pack_padded_sequence(tinylm.zeros(5, 4, 3), [5, 3, 3, 1]))
        assert len(calls) == 2 + 2 * 3  # three distinct lengths: three runs per layer
    finally:
        LSTMFunction.forward = original
