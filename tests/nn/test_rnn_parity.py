"""``RNN``, ``LSTM``, ``GRU`` and their cells against PyTorch given the same weights:
outputs, final states and every input and parameter gradient."""

import numpy as np
import pytest

import tinylm
from tinylm.ops.fused.recurrent import MODES
from tests.nn.test_rnn import ALL_MODES, as_hx, make_cell, make_stack, outputs_of
from tests.parity import assert_close, assert_same_gradients, copy_weights

pytestmark = pytest.mark.parity

N_STATES = {mode: spec.n_states for mode, spec in MODES.items()}


def torch_stack(torch, mode, *args, **kwargs):
    if mode.startswith("RNN"):
        return torch.nn.RNN(*args, nonlinearity=mode[4:].lower(), **kwargs)
    return getattr(torch.nn, mode)(*args, **kwargs)


def torch_cell(torch, mode, *args, **kwargs):
    if mode.startswith("RNN"):
        return torch.nn.RNNCell(*args, nonlinearity=mode[4:].lower(), **kwargs)
    return getattr(torch.nn, mode + "Cell")(*args, **kwargs)


def torch_outputs(torch, result):
    """A PyTorch layer's or cell's result flattened to a list of tensors."""
    if isinstance(result, torch.Tensor):
        return [result]
    return [tensor for item in result for tensor in torch_outputs(torch, item)]


def compare(torch, ours, theirs, x, states, dtype, seed=0):
    """Run both modules on the same input and states; compare outputs and all gradients."""
    ours_x = tinylm.tensor(x, requires_grad=True)
    theirs_x = torch.tensor(x, requires_grad=True)
    ours_states = [tinylm.tensor(s, requires_grad=True) for s in states]
    theirs_states = [torch.tensor(s, requires_grad=True) for s in states]
    ours_out = outputs_of(ours(ours_x, as_hx(ours_states)))
    theirs_out = torch_outputs(torch, theirs(theirs_x, as_hx(theirs_states)))
    assert len(ours_out) == len(theirs_out)
    rng = np.random.default_rng(seed)
    ours_loss, theirs_loss = 0, 0
    for i, (a, b) in enumerate(zip(ours_out, theirs_out)):
        assert a.shape == tuple(b.shape), f"output {i}: shape {a.shape} vs PyTorch's {tuple(b.shape)}"
        assert a.dtype == dtype
        assert_close(a, b, dtype, what=f"output {i}")
        direction = rng.standard_normal(a.shape).astype(dtype)
        ours_loss = ours_loss + (a * tinylm.tensor(direction)).sum()
        theirs_loss = theirs_loss + (b * torch.tensor(direction)).sum()
    ours.zero_grad()
    theirs.zero_grad()
    ours_loss.backward()
    theirs_loss.backward()
    assert_close(ours_x.grad, theirs_x.grad, dtype, what="input gradient")
    for i, (a, b) in enumerate(zip(ours_states, theirs_states)):
        assert_close(a.grad, b.grad, dtype, what=f"gradient of initial state {i}")
    assert_same_gradients(ours, theirs, dtype)


def torch_dtype(torch, dtype):
    return getattr(torch, np.dtype(dtype).name)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stack_matches_pytorch(torch, dtype, mode, num_layers, bidirectional, batch_first, with_states, bias):
    settings = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    torch.manual_seed(0)
    theirs = torch_stack(torch, mode, 3, 5, **settings).to(torch_dtype(torch, dtype))
    ours = make_stack(mode, 3, 5, dtype=dtype, **settings)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(1)
    length, batch = 4, 2
    x = rng.standard_normal((batch, length, 3) if batch_first else (length, batch, 3)).astype(dtype)
    count = num_layers * (2 if bidirectional else 1)
    states = [rng.standard_normal((count, batch, 5)).astype(dtype) for _ in range(N_STATES[mode] * with_states)]
    for training in (True, False):  # dropout is 0, so the modes must agree
        ours.train(training)
        theirs.train(training)
        compare(torch, ours, theirs, x, states, dtype)


@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unbatched_stack_matches_pytorch(torch, dtype, mode, bidirectional, with_states):
    settings = dict(num_layers=2, bidirectional=bidirectional, batch_first=True)  # ignored when unbatched
    torch.manual_seed(0)
    theirs = torch_stack(torch, mode, 3, 4, **settings).to(torch_dtype(torch, dtype))
    ours = make_stack(mode, 3, 4, dtype=dtype, **settings)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 3)).astype(dtype)
    count = 2 * (2 if bidirectional else 1)
    states = [rng.standard_normal((count, 4)).astype(dtype) for _ in range(N_STATES[mode] * with_states)]
    compare(torch, ours, theirs, x, states, dtype)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_states", [False, True])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cell_matches_pytorch(torch, dtype, mode, bias, with_states, batched, training):
    torch.manual_seed(0)
    theirs = torch_cell(torch, mode, 3, 5, bias=bias).to(torch_dtype(torch, dtype)).train(training)
    ours = make_cell(mode, 3, 5, bias=bias, dtype=dtype).train(training)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(3)
    lead = (4,) if batched else ()
    x = rng.standard_normal(lead + (3,)).astype(dtype)
    states = [rng.standard_normal(lead + (5,)).astype(dtype) for _ in range(N_STATES[mode] * with_states)]
    compare(torch, ours, theirs, x, states, dtype)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_a_wide_batch_matches_pytorch(torch, mode):
    """A batch wide enough for the kernels' parallel drivers (B * G * H >= 32768 elements)."""
    torch.manual_seed(0)
    theirs = torch_stack(torch, mode, 8, 32, bidirectional=True).double()
    ours = make_stack(mode, 8, 32, bidirectional=True, dtype=np.float64)
    copy_weights(theirs, ours)
    x = np.random.default_rng(4).standard_normal((3, 352, 8))
    compare(torch, ours, theirs, x, [], np.float64)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_eval_mode_with_dropout_matches_pytorch(torch, mode):
    """In eval mode dropout between layers is off in both libraries."""
    torch.manual_seed(0)
    theirs = torch_stack(torch, mode, 3, 4, num_layers=3, dropout=0.5, bidirectional=True).double().eval()
    ours = make_stack(mode, 3, 4, num_layers=3, dropout=0.5, bidirectional=True, dtype=np.float64).eval()
    copy_weights(theirs, ours)
    x = np.random.default_rng(5).standard_normal((6, 2, 3))
    compare(torch, ours, theirs, x, [], np.float64)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_state_dict_keys_and_shapes_match_pytorchs(torch, mode):
    for settings in (dict(num_layers=3, bidirectional=True), dict(num_layers=2, bias=False)):
        theirs_layer, ours_layer = torch_stack(torch, mode, 3, 5, **settings), make_stack(mode, 3, 5, **settings)
        theirs, ours = theirs_layer.state_dict(), ours_layer.state_dict()
        assert list(ours) == list(theirs)
        assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
        assert [[tuple(p.shape) for p in group] for group in ours_layer.all_weights] == [
            [tuple(p.shape) for p in group] for group in theirs_layer.all_weights
        ]
    for bias in (True, False):
        theirs = torch_cell(torch, mode, 3, 5, bias=bias).state_dict()
        ours = make_cell(mode, 3, 5, bias=bias).state_dict()
        assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
