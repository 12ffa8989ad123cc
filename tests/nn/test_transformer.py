"""Transformer encoder/decoder layers, their stacks and ``Transformer``: finite differences, the
same computation from primitive ops, and PyTorch given the same weights."""

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinylm
from tinylm import ops
from tinylm.nn.layers.attention import MultiheadAttention
from tinylm.nn.layers.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from tinylm.nn.layers.normalization import LayerNorm
from tinylm.ops.fused.attention import AttentionFunction
from tinylm.ops.fused.layer_norm import LayerNormFunction
from tinylm.ops.fused.linear import LinearFunction
from tests.coverage import covers
from tests.nn.test_attention import _assert_same_values_and_gradients, composed_mha
from tests.parity import assert_close, assert_same_gradients, copy_weights

# ----- references composed from primitive ops ---------------------------------------------


def _layer_norm(norm, x):
    mean = x.mean(-1, keepdim=True)
    centred = x - mean
    y = centred / ((centred * centred).mean(-1, keepdim=True) + norm.eps).sqrt()
    if norm.weight is not None:
        y = y * norm.weight
    if norm.bias is not None:
        y = y + norm.bias
    return y


def _linear(linear, x):
    y = x @ linear.weight.transpose(0, 1)
    return y if linear.bias is None else y + linear.bias


def _activation(layer, x):
    if layer.activation is tinylm.nn.functional.relu:
        return x.relu()
    return x * 0.5 * (1 + ops.erf(x * (1 / math.sqrt(2))))  # exact GELU


def _feed_forward(layer, x):
    return _linear(layer.linear2, _activation(layer, _linear(layer.linear1, x)))


def composed_encoder_layer(layer, x, src_mask=None, src_key_padding_mask=None, is_causal=False):
    def sa(h):
        return composed_mha(layer.self_attn, h, h, h, key_padding_mask=src_key_padding_mask, attn_mask=src_mask,
                            is_causal=is_causal)[0]

    if layer.norm_first:
        x = x + sa(_layer_norm(layer.norm1, x))
        return x + _feed_forward(layer, _layer_norm(layer.norm2, x))
    x = _layer_norm(layer.norm1, x + sa(x))
    return _layer_norm(layer.norm2, x + _feed_forward(layer, x))


def composed_decoder_layer(layer, x, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                           memory_key_padding_mask=None, tgt_is_causal=False):
    def sa(h):
        return composed_mha(layer.self_attn, h, h, h, key_padding_mask=tgt_key_padding_mask, attn_mask=tgt_mask,
                            is_causal=tgt_is_causal)[0]

    def ca(h):
        return composed_mha(layer.multihead_attn, h, memory, memory, key_padding_mask=memory_key_padding_mask,
                            attn_mask=memory_mask)[0]

    if layer.norm_first:
        x = x + sa(_layer_norm(layer.norm1, x))
        x = x + ca(_layer_norm(layer.norm2, x))
        return x + _feed_forward(layer, _layer_norm(layer.norm3, x))
    x = _layer_norm(layer.norm1, x + sa(x))
    x = _layer_norm(layer.norm2, x + ca(x))
    return _layer_norm(layer.norm3, x + _feed_forward(layer, x))


def composed_encoder(stack, x, mask=None, src_key_padding_mask=None, is_causal=False):
    for layer in stack.layers:
        x = composed_encoder_layer(layer, x, mask, src_key_padding_mask, is_causal)
    return x if stack.norm is None else _layer_norm(stack.norm, x)


def composed_decoder(stack, x, memory, tgt_mask=None, memory_key_padding_mask=None, tgt_is_causal=False):
    for layer in stack.layers:
        x = composed_decoder_layer(layer, x, memory, tgt_mask=tgt_mask, memory_key_padding_mask=memory_key_padding_mask,
                                   tgt_is_causal=tgt_is_causal)
    return x if stack.norm is None else _layer_norm(stack.norm, x)


# ----- strategies ----------------------------------------------------------------------------


def _randomise(module, seed=0):
    """Nonzero biases and non-unit norm weights: PyTorch's initial values would hide mistakes."""
    rng = np.random.default_rng(seed)
    for name, parameter in module.named_parameters():
        if parameter.ndim == 1:
            centre = 1.0 if name.split(".")[-2].startswith("norm") and name.endswith("weight") else 0.0
            parameter.data[...] = centre + 0.3 * rng.standard_normal(parameter.shape)
    return module


@st.composite
def layer_cases(draw, decoder=False, d_model=4, nheads=(1, 2)):
    nhead = draw(st.sampled_from(nheads))
    batch_first, batched = draw(st.booleans()), draw(st.booleans())
    n, t, s = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))

    def layout(length):
        if not batched:
            return (length, d_model)
        return (n, length, d_model) if batch_first else (length, n, d_model)

    # Gaussian values from a drawn seed: shrinking toward all-zero inputs would put layer norm at
    # zero variance and relu at its kink, where finite differences mean nothing.
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    case = dict(
        d_model=d_model, nhead=nhead, batch_first=batch_first, norm_first=draw(st.booleans()),
        activation=draw(st.sampled_from(["relu", "gelu"])), bias=draw(st.booleans()),
        x=rng.standard_normal(layout(t)), memory=rng.standard_normal(layout(s)) if decoder else None,
        mask=None, padding=None, is_causal=draw(st.booleans()),
    )
    if draw(st.booleans()):
        blocked = draw(hnp.arrays(bool, (t, t), elements=st.booleans()))
        case["mask"] = blocked if draw(st.booleans()) else np.where(blocked, -np.inf, 0.0)
    if draw(st.booleans()):
        keys = s if decoder else t
        case["padding"] = draw(hnp.arrays(bool, (n, keys) if batched else (keys,), elements=st.booleans()))
    return case


def _make_layer(case, decoder=False, dim_feedforward=3):
    cls = TransformerDecoderLayer if decoder else TransformerEncoderLayer
    layer = cls(case["d_model"], case["nhead"], dim_feedforward=dim_feedforward, dropout=0.0,
                activation=case["activation"], batch_first=case["batch_first"], norm_first=case["norm_first"],
                bias=case["bias"], dtype=np.float64)
    return _randomise(layer)


def _masks(case, decoder=False):
    mask = None if case["mask"] is None else tinylm.tensor(case["mask"])
    padding = None if case["padding"] is None else tinylm.tensor(case["padding"])
    if decoder:  # the padding mask is over the memory; the target gets the (causal-ish) mask
        return dict(tgt_mask=mask, memory_key_padding_mask=padding, tgt_is_causal=case["is_causal"])
    return dict(src_mask=mask, src_key_padding_mask=padding, is_causal=case["is_causal"])


# ----- encoder and decoder layers: three ways ------------------------------------------------


@covers(AttentionFunction, LinearFunction, LayerNormFunction)
@settings(max_examples=8)
@given(case=layer_cases())
def test_encoder_layer_gradients_match_finite_differences(case):
    layer = _make_layer(case)
    masks = _masks(case)
    x = tinylm.tensor(case["x"], requires_grad=True)
    params = list(layer.parameters())
    assert tinylm.gradcheck(lambda x, *p: layer(x, **masks), [x] + params)


@covers(AttentionFunction, LinearFunction, LayerNormFunction)
@settings(max_examples=6)
@given(case=layer_cases(decoder=True))
def test_decoder_layer_gradients_match_finite_differences(case):
    layer = _make_layer(case, decoder=True)
    masks = _masks(case, decoder=True)
    x, memory = (tinylm.tensor(case[name], requires_grad=True) for name in ("x", "memory"))
    params = list(layer.parameters())
    assert tinylm.gradcheck(lambda x, m, *p: layer(x, m, **masks), [x, memory] + params)


@given(case=layer_cases())
def test_encoder_layer_equals_its_composition_from_primitives(case):
    layer = _make_layer(case, dim_feedforward=5)
    masks = _masks(case)
    _assert_same_values_and_gradients(
        lambda x: layer(x, **masks),
        lambda x: composed_encoder_layer(layer, x, **masks),
        [case["x"]], params=list(layer.parameters()))


@given(case=layer_cases(decoder=True))
def test_decoder_layer_equals_its_composition_from_primitives(case):
    layer = _make_layer(case, decoder=True, dim_feedforward=5)
    masks = _masks(case, decoder=True)
    _assert_same_values_and_gradients(
        lambda x, m: layer(x, m, **masks),
        lambda x, m: composed_decoder_layer(layer, x, m, **masks),
        [case["x"], case["memory"]], params=list(layer.parameters()))


# ----- the stacks: three ways ----------------------------------------------------------------


def _make_stack(case, decoder=False, dim_feedforward=3, num_layers=2):
    """Two copies of a layer and a final norm. The copies start equal, which would hide a gradient
    sent to the wrong layer, so every matrix is moved off its copy's values."""
    layer = _make_layer(case, decoder, dim_feedforward)
    cls = TransformerDecoder if decoder else TransformerEncoder
    stack = _randomise(cls(layer, num_layers, norm=LayerNorm(case["d_model"], bias=case["bias"], dtype=np.float64)))
    rng = np.random.default_rng(1)
    for parameter in stack.parameters():
        if parameter.ndim > 1:
            parameter.data[...] += 0.2 * rng.standard_normal(parameter.shape)
    return stack


def _stack_masks(case, decoder=False):
    masks = _masks(case, decoder)
    if not decoder:  # TransformerEncoder calls the layers' src_mask just ``mask``
        masks["mask"] = masks.pop("src_mask")
    return masks


@covers(AttentionFunction, LinearFunction, LayerNormFunction)
@settings(max_examples=5)
@given(case=layer_cases(d_model=3, nheads=(1, 3)))
def test_encoder_stack_gradients_match_finite_differences(case):
    stack = _make_stack(case)
    masks = _stack_masks(case)
    x = tinylm.tensor(case["x"], requires_grad=True)
    params = list(stack.parameters())
    assert len(params) == 2 * len(list(stack.layers[0].parameters())) + len(list(stack.norm.parameters()))
    assert tinylm.gradcheck(lambda x, *p: stack(x, **masks), [x] + params)


@covers(AttentionFunction, LinearFunction, LayerNormFunction)
@settings(max_examples=4)
@given(case=layer_cases(decoder=True, d_model=3, nheads=(1, 3)))
def test_decoder_stack_gradients_match_finite_differences(case):
    stack = _make_stack(case, decoder=True)
    masks = _stack_masks(case, decoder=True)
    x, memory = (tinylm.tensor(case[name], requires_grad=True) for name in ("x", "memory"))
    params = list(stack.parameters())
    assert tinylm.gradcheck(lambda x, m, *p: stack(x, m, **masks), [x, memory] + params)


@settings(max_examples=15)
@given(case=layer_cases(d_model=3, nheads=(1, 3)))
def test_encoder_stack_equals_its_composition_from_primitives(case):
    stack = _make_stack(case, dim_feedforward=5)
    masks = _stack_masks(case)
    _assert_same_values_and_gradients(
        lambda x: stack(x, **masks),
        lambda x: composed_encoder(stack, x, **masks),
        [case["x"]], params=list(stack.parameters()))


@settings(max_examples=15)
@given(case=layer_cases(decoder=True, d_model=3, nheads=(1, 3)))
def test_decoder_stack_equals_its_composition_from_primitives(case):
    stack = _make_stack(case, decoder=True, dim_feedforward=5)
    masks = _stack_masks(case, decoder=True)
    _assert_same_values_and_gradients(
        lambda x, m: stack(x, m, **masks),
        lambda x, m: composed_decoder(stack, x, m, **masks),
        [case["x"], case["memory"]], params=list(stack.parameters()))


# ----- PyTorch parity -------------------------------------------------------------------------


def _torch_dtype(torch, dtype):
    return getattr(torch, np.dtype(dtype).name)


def _torch_randomised(torch, module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.ndim == 1:
                centre = 1.0 if name.split(".")[-2].startswith("norm") and name.endswith("weight") else 0.0
                parameter.copy_(centre + 0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def _layout(shape_nt, batch_first):
    n, t, d = shape_nt
    return (n, t, d) if batch_first else (t, n, d)


def _pair(torch, array):
    return tinylm.tensor(array, requires_grad=True), torch.tensor(array, requires_grad=True)


def _backward_both(torch, ours, theirs, dtype, seed=3):
    g = np.random.default_rng(seed).standard_normal(ours.shape).astype(dtype)
    ours.backward(g)
    theirs.backward(torch.tensor(g))


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:Support for mismatched src_key_padding_mask and src_mask")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_encoder_layer_matches_pytorch(torch, dtype, norm_first, activation, batch_first, mode):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=16, dropout=0.0, activation=activation, batch_first=batch_first, norm_first=norm_first)
    reference = _torch_randomised(torch, torch.nn.TransformerEncoderLayer(8, 2, **kw).to(_torch_dtype(torch, dtype)))
    layer = TransformerEncoderLayer(8, 2, dtype=dtype, **kw)
    copy_weights(reference, layer)
    reference.train(mode == "train")
    layer.train(mode == "train")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(_layout((2, 5, 8), batch_first)).astype(dtype)
    mask = np.triu(np.full((5, 5), -np.inf), 1).astype(dtype)
    padding = np.zeros((2, 5), dtype=bool)
    padding[1, 3:] = True
    ours, theirs = _pair(torch, x)
    y = layer(ours, src_mask=tinylm.tensor(mask), src_key_padding_mask=tinylm.tensor(padding), is_causal=True)
    expected = reference(theirs, src_mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(padding),
                         is_causal=True)
    assert y.dtype == dtype
    assert_close(y, expected, dtype, "output")
    _backward_both(torch, y, expected, dtype)
    assert_close(ours.grad, theirs.grad, dtype, "gradient of src")
    assert_same_gradients(layer, reference, dtype)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_decoder_layer_matches_pytorch(torch, dtype, norm_first, activation, batch_first, mode):
    torch.manual_seed(1)
    kw = dict(dim_feedforward=16, dropout=0.0, activation=activation, batch_first=batch_first, norm_first=norm_first)
    reference = _torch_randomised(torch, torch.nn.TransformerDecoderLayer(8, 2, **kw).to(_torch_dtype(torch, dtype)))
    layer = TransformerDecoderLayer(8, 2, dtype=dtype, **kw)
    copy_weights(reference, layer)
    reference.train(mode == "train")
    layer.train(mode == "train")
    rng = np.random.default_rng(1)
    tgt = rng.standard_normal(_layout((2, 4, 8), batch_first)).astype(dtype)
    memory = rng.standard_normal(_layout((2, 6, 8), batch_first)).astype(dtype)
    tgt_mask = np.triu(np.ones((4, 4), dtype=bool), 1)
    memory_mask = rng.standard_normal((4, 6)).astype(dtype)
    tgt_padding = np.zeros((2, 4), dtype=bool)
    tgt_padding[0, 3] = True
    memory_padding = np.zeros((2, 6), dtype=bool)
    memory_padding[1, 4:] = True
    (ours, theirs), (ours_m, theirs_m) = _pair(torch, tgt), _pair(torch, memory)
    masks = dict(tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_padding,
                 memory_key_padding_mask=np.where(memory_padding, -np.inf, 0).astype(dtype))
    y = layer(ours, ours_m, **{k: tinylm.tensor(v) for k, v in masks.items()}, tgt_is_causal=True)
    expected = reference(theirs, theirs_m, **{k: torch.tensor(v) for k, v in masks.items()}, tgt_is_causal=True)
    assert y.dtype == dtype
    assert_close(y, expected, dtype, "output")
    _backward_both(torch, y, expected, dtype)
    assert_close(ours.grad, theirs.grad, dtype, "gradient of tgt")
    assert_close(ours_m.grad, theirs_m.grad, dtype, "gradient of memory")
    assert_same_gradients(layer, reference, dtype)


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_transformer_matches_pytorch(torch, dtype, norm_first, batch_first, mode):
    torch.manual_seed(2)
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=12, dropout=0.0,
              activation="gelu", batch_first=batch_first, norm_first=norm_first)
    reference = _torch_randomised(torch, torch.nn.Transformer(**kw).to(_torch_dtype(torch, dtype)))
    model = Transformer(**kw, dtype=dtype)
    assert list(model.state_dict()) == list(reference.state_dict())
    copy_weights(reference, model)
    reference.train(mode == "train")  # eval with gradients recorded: PyTorch's fast path stays off
    model.train(mode == "train")
    rng = np.random.default_rng(2)
    src = rng.standard_normal(_layout((2, 5, 8), batch_first)).astype(dtype)
    tgt = rng.standard_normal(_layout((2, 4, 8), batch_first)).astype(dtype)
    src_padding = np.zeros((2, 5), dtype=bool)
    src_padding[0, 4] = True
    (ours_s, theirs_s), (ours_t, theirs_t) = _pair(torch, src), _pair(torch, tgt)
    tgt_mask = Transformer.generate_square_subsequent_mask(4, dtype=dtype)
    y = model(ours_s, ours_t, tgt_mask=tgt_mask, src_key_padding_mask=tinylm.tensor(src_padding),
              memory_key_padding_mask=tinylm.tensor(src_padding), tgt_is_causal=True)
    expected = reference(theirs_s, theirs_t, tgt_mask=torch.tensor(tgt_mask.numpy()),
                         src_key_padding_mask=torch.tensor(src_padding),
                         memory_key_padding_mask=torch.tensor(src_padding), tgt_is_causal=True)
    assert_close(y, expected, dtype, "output")
    _backward_both(torch, y, expected, dtype)
    assert_close(ours_s.grad, theirs_s.grad, dtype, "gradient of src")
    assert_close(ours_t.grad, theirs_t.grad, dtype, "gradient of tgt")
    assert_same_gradients(model, reference, dtype)


def _torch_distinct_layers(torch, module, seed=0):
    """Move every matrix off its copy's values (the stack's layers are deep copies of one)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.ndim > 1:
                parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def _stack_pair(torch, decoder, dtype, mode, **kw):
    """A PyTorch stack (2 layers, final norm) and a tinylm one loaded from it, both in ``mode``."""
    torch_dtype = _torch_dtype(torch, dtype)
    if decoder:
        reference = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, **kw), 2,
                                                norm=torch.nn.LayerNorm(8))
        ours = TransformerDecoder(TransformerDecoderLayer(8, 2, dtype=dtype, **kw), 2, norm=LayerNorm(8, dtype=dtype))
    else:
        reference = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, **kw), 2,
                                                norm=torch.nn.LayerNorm(8), enable_nested_tensor=False)
        ours = TransformerEncoder(TransformerEncoderLayer(8, 2, dtype=dtype, **kw), 2, norm=LayerNorm(8, dtype=dtype))
    reference = _torch_distinct_layers(torch, _torch_randomised(torch, reference.to(torch_dtype)))
    assert list(ours.state_dict()) == list(reference.state_dict())
    copy_weights(reference, ours)
    reference.train(mode == "train")  # eval with gradients recorded: PyTorch's fast path stays off
    ours.train(mode == "train")
    return ours, reference


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_encoder_stack_matches_pytorch(torch, dtype, norm_first, batch_first, mode):
    torch.manual_seed(5)
    stack, reference = _stack_pair(torch, False, dtype, mode, dim_feedforward=16, dropout=0.0, activation="relu",
                                   batch_first=batch_first, norm_first=norm_first)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(_layout((2, 5, 8), batch_first)).astype(dtype)
    mask = np.triu(np.ones((5, 5), dtype=bool), 1)
    padding = np.zeros((2, 5), dtype=bool)
    padding[0, 3:] = True
    ours, theirs = _pair(torch, x)
    y = stack(ours, mask=tinylm.tensor(mask), src_key_padding_mask=tinylm.tensor(padding), is_causal=True)
    expected = reference(theirs, mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(padding), is_causal=True)
    assert y.dtype == dtype and y.shape == tuple(expected.shape)
    assert_close(y, expected, dtype, "output")
    _backward_both(torch, y, expected, dtype)
    assert_close(ours.grad, theirs.grad, dtype, "gradient of src")
    assert_same_gradients(stack, reference, dtype)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_decoder_stack_matches_pytorch(torch, dtype, norm_first, batch_first, mode):
    torch.manual_seed(6)
    stack, reference = _stack_pair(torch, True, dtype, mode, dim_feedforward=16, dropout=0.0, activation="gelu",
                                   batch_first=batch_first, norm_first=norm_first)
    rng = np.random.default_rng(6)
    tgt = rng.standard_normal(_layout((2, 4, 8), batch_first)).astype(dtype)
    memory = rng.standard_normal(_layout((2, 6, 8), batch_first)).astype(dtype)
    memory_padding = np.zeros((2, 6), dtype=bool)
    memory_padding[1, 4:] = True
    masks = dict(tgt_mask=np.triu(np.ones((4, 4), dtype=bool), 1),
                 memory_mask=rng.standard_normal((4, 6)).astype(dtype),
                 memory_key_padding_mask=np.where(memory_padding, -np.inf, 0.0).astype(dtype))
    (ours, theirs), (ours_m, theirs_m) = _pair(torch, tgt), _pair(torch, memory)
    y = stack(ours, ours_m, **{k: tinylm.tensor(v) for k, v in masks.items()}, tgt_is_causal=True)
    expected = reference(theirs, theirs_m, **{k: torch.tensor(v) for k, v in masks.items()}, tgt_is_causal=True)
    assert y.dtype == dtype and y.shape == tuple(expected.shape)
    assert_close(y, expected, dtype, "output")
    _backward_both(torch, y, expected, dtype)
    assert_close(ours.grad, theirs.grad, dtype, "gradient of tgt")
    assert_close(ours_m.grad, theirs_m.grad, dtype, "gradient of memory")
    assert_same_gradients(stack, reference, dtype)


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")
def test_stacks_without_grad_in_eval_mode_match_pytorch(torch):
    """Inference (eval, no_grad) outputs, with PyTorch's fused fast path turned off so that it
    computes the documented formula."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        torch.manual_seed(3)
        encoder_ref = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(8, 4, 16, batch_first=True), 3, norm=torch.nn.LayerNorm(8),
            enable_nested_tensor=False).double().eval()
        decoder_ref = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 4, 16, batch_first=True), 2,
                                                  norm=torch.nn.LayerNorm(8)).double().eval()
        encoder = TransformerEncoder(TransformerEncoderLayer(8, 4, 16, batch_first=True, dtype=np.float64), 3,
                                     norm=LayerNorm(8, dtype=np.float64)).eval()
        decoder = TransformerDecoder(TransformerDecoderLayer(8, 4, 16, batch_first=True, dtype=np.float64), 2,
                                     norm=LayerNorm(8, dtype=np.float64)).eval()
        for ref, ours in ((encoder_ref, encoder), (decoder_ref, decoder)):
            _torch_randomised(torch, ref)
            assert list(ours.state_dict()) == list(ref.state_dict())
            copy_weights(ref, ours)
        rng = np.random.default_rng(3)
        src, tgt = rng.standard_normal((3, 6, 8)), rng.standard_normal((3, 5, 8))
        padding = np.zeros((3, 6), dtype=bool)
        padding[2, 2:] = True
        with torch.no_grad(), tinylm.no_grad():
            memory_ref = encoder_ref(torch.tensor(src), src_key_padding_mask=torch.tensor(padding))
            memory = encoder(tinylm.tensor(src), src_key_padding_mask=tinylm.tensor(padding))
            assert_close(memory, memory_ref, np.float64, "encoder output")
            causal = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
            expected = decoder_ref(torch.tensor(tgt), memory_ref, tgt_mask=causal, tgt_is_causal=True,
                                   memory_key_padding_mask=torch.tensor(padding))
            y = decoder(tinylm.tensor(tgt), memory, tgt_is_causal=True, memory_key_padding_mask=tinylm.tensor(padding))
            assert_close(y, expected, np.float64, "decoder output")
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


@pytest.mark.parity
def test_square_subsequent_mask_is_pytorchs(torch):
    for size in (1, 4):
        ours = Transformer.generate_square_subsequent_mask(size)
        theirs = torch.nn.Transformer.generate_square_subsequent_mask(size)
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert Transformer.generate_square_subsequent_mask(3, dtype=np.float64).dtype == np.float64


# ----- structure, copies, modes, errors --------------------------------------------------------


@st.composite
def transformer_cases(draw):
    """A one-layer encoder-decoder of odd or even width, batched or not, sequences of 1 to 3."""
    d_model = draw(st.sampled_from([2, 3]))
    nhead = draw(st.sampled_from([h for h in (1, 2, 3) if d_model % h == 0]))
    batch_first, batched = draw(st.booleans()), draw(st.booleans())
    n, s, t = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))

    def layout(length):
        if not batched:
            return (length, d_model)
        return (n, length, d_model) if batch_first else (length, n, d_model)

    rng = np.random.default_rng(draw(st.integers(0, 2**16)))  # Gaussian values: see layer_cases
    padding = None
    if draw(st.booleans()):
        padding = draw(hnp.arrays(bool, (n, s) if batched else (s,), elements=st.booleans()))
    return dict(
        config=dict(d_model=d_model, nhead=nhead, num_encoder_layers=1, num_decoder_layers=1,
                    dim_feedforward=draw(st.integers(1, 3)), dropout=0.0,
                    activation=draw(st.sampled_from(["relu", "gelu"])), batch_first=batch_first,
                    norm_first=draw(st.booleans()), bias=draw(st.booleans())),
        src=rng.standard_normal(layout(s)), tgt=rng.standard_normal(layout(t)), padding=padding,
        tgt_is_causal=draw(st.booleans()),
    )


@covers(AttentionFunction, LinearFunction, LayerNormFunction)
@settings(max_examples=5)
@given(case=transformer_cases())
def test_a_small_transformer_gradients_match_finite_differences(case):
    tinylm.manual_seed(4)
    model = _randomise(Transformer(**case["config"], dtype=np.float64))
    padding = None if case["padding"] is None else tinylm.tensor(case["padding"])
    src, tgt = (tinylm.tensor(case[name], requires_grad=True) for name in ("src", "tgt"))
    params = list(model.parameters())

    def forward(s, t, *p):
        return model(s, t, src_key_padding_mask=padding, memory_key_padding_mask=padding,
                     tgt_is_causal=case["tgt_is_causal"])

    assert tinylm.gradcheck(forward, [src, tgt] + params)


def test_stack_layers_are_independent_deep_copies_with_pytorch_names():
    layer = TransformerEncoderLayer(4, 2, dim_feedforward=6)
    stack = TransformerEncoder(layer, 3)
    names = [name for name, _ in stack.named_parameters()]
    assert names[0] == "layers.0.self_attn.in_proj_weight" and names[-1] == "layers.2.norm2.bias"
    assert len(names) == 3 * len(list(layer.named_parameters()))
    first, second = stack.layers[0], stack.layers[1]
    assert first is not layer and first is not second
    np.testing.assert_array_equal(first.linear1.weight.numpy(), second.linear1.weight.numpy())
    first.linear1.weight.data[...] = 0
    assert np.abs(second.linear1.weight.numpy()).max() > 0 and np.abs(layer.linear1.weight.numpy()).max() > 0
    x = tinylm.randn(5, 2, 4)
    stack(x).sum().backward()
    assert all(p.grad is not None for p in stack.parameters())
    assert layer.linear1.weight.grad is None  # the template layer is not part of the stack


def test_transformer_initialises_every_matrix_xavier_uniform():
    tinylm.manual_seed(0)
    model = Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32)
    for name, parameter in model.named_parameters():
        if parameter.ndim > 1:
            bound = math.sqrt(6 / sum(parameter.shape))
            assert np.abs(parameter.numpy()).max() <= bound, name
            assert np.abs(parameter.numpy()).max() > 0.8 * bound, name


def test_causal_flags_equal_the_square_subsequent_mask():
    tinylm.manual_seed(1)
    layer = TransformerDecoderLayer(4, 2, dim_feedforward=8, dropout=0.0, dtype=np.float64)
    tgt, memory = tinylm.randn(5, 2, 4, dtype=np.float64), tinylm.randn(3, 2, 4, dtype=np.float64)
    mask = Transformer.generate_square_subsequent_mask(5, dtype=np.float64)
    np.testing.assert_allclose(layer(tgt, memory, tgt_is_causal=True).numpy(),
                               layer(tgt, memory, tgt_mask=mask).numpy(), rtol=1e-12)


def test_dropout_is_active_in_training_and_off_in_eval():
    tinylm.manual_seed(2)
    layer = TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.5, batch_first=True)
    x = tinylm.randn(2, 4, 8)
    assert not np.allclose(layer(x).numpy(), layer(x).numpy())
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transformer_keeps_its_dtype(dtype):
    model = Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8,
                        dtype=dtype)
    assert all(p.dtype == dtype for p in model.parameters())
    src, tgt = tinylm.randn(3, 2, 4, dtype=dtype), tinylm.randn(2, 2, 4, dtype=dtype)
    y = model(src, tgt, tgt_mask=Transformer.generate_square_subsequent_mask(2))
    assert y.dtype == dtype and y.shape == (2, 2, 4)
    y.sum().backward()
    assert all(p.grad.dtype == dtype for p in model.parameters())


def test_layers_reject_wrong_shapes_naming_themselves():
    encoder = TransformerEncoderLayer(4, 2, dim_feedforward=8)
    with pytest.raises(ValueError, match=r"TransformerEncoderLayer: expected src of shape \(T, N, d_model\) or "
                                         r"\(T, d_model\) with d_model=4, got \(3, 2, 5\)"):
        encoder(tinylm.zeros(3, 2, 5))
    decoder = TransformerDecoderLayer(4, 2, dim_feedforward=8, batch_first=True)
    with pytest.raises(ValueError, match=r"TransformerDecoderLayer: expected memory of shape \(N, T, d_model\).*got \(2, 3\)"):
        decoder(tinylm.zeros(2, 3, 4), tinylm.zeros(2, 3))
    model = Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=8)
    with pytest.raises(ValueError, match=r"Transformer: src and tgt must have the same batch size \(dimension 1\), "
                                         r"got shapes \(3, 2, 4\) and \(3, 1, 4\)"):
        model(tinylm.zeros(3, 2, 4), tinylm.zeros(3, 1, 4))
    with pytest.raises(ValueError, match=r"Transformer: expected tgt of shape"):
        model(tinylm.zeros(3, 2, 4), tinylm.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="TransformerEncoderLayer: activation must be 'relu', 'gelu' or a callable"):
        TransformerEncoderLayer(4, 2, activation="swish")


def test_stacks_reject_wrong_shapes_naming_themselves():
    """The stack checks its input itself: the error names it, not its first layer."""
    encoder = TransformerEncoder(TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True), 2)
    with pytest.raises(ValueError, match=r"^TransformerEncoder: expected src of shape \(N, T, d_model\) or "
                                         r"\(T, d_model\) with d_model=8, got \(2, 5, 7\)$"):
        encoder(tinylm.zeros(2, 5, 7))
    with pytest.raises(ValueError, match=r"^TransformerEncoder: expected src .* got \(1, 2, 5, 8\)$"):
        encoder(tinylm.zeros(1, 2, 5, 8))
    with pytest.raises(TypeError, match=r"^TransformerEncoder: src must be a Tensor, got ndarray$"):
        encoder(np.zeros((2, 5, 8)))
    decoder = TransformerDecoder(TransformerDecoderLayer(8, 2, dim_feedforward=16), 2)
    tgt = tinylm.zeros(4, 2, 8)
    with pytest.raises(ValueError, match=r"^TransformerDecoder: expected tgt of shape \(T, N, d_model\) or "
                                         r"\(T, d_model\) with d_model=8, got \(4, 2, 6\)$"):
        decoder(tinylm.zeros(4, 2, 6), tinylm.zeros(3, 2, 8))
    with pytest.raises(ValueError, match=r"^TransformerDecoder: expected memory of shape .* got \(3, 2, 9\)$"):
        decoder(tgt, tinylm.zeros(3, 2, 9))
    with pytest.raises(ValueError, match=r"^TransformerDecoder: tgt and memory must both be batched or both "
                                         r"unbatched, got shapes \(4, 2, 8\) and \(3, 8\)$"):
        decoder(tgt, tinylm.zeros(3, 8))
    with pytest.raises(ValueError, match=r"^TransformerDecoder: tgt and memory must have the same batch size "
                                         r"\(dimension 1\), got shapes \(4, 2, 8\) and \(3, 1, 8\)$"):
        decoder(tgt, tinylm.zeros(3, 1, 8))
    assert decoder(tgt, tinylm.zeros(3, 2, 8)).shape == (4, 2, 8)  # the right shapes still pass


@pytest.mark.parametrize("count", [0, -1])
def test_stacks_need_at_least_one_layer(count):
    with pytest.raises(ValueError, match=rf"^TransformerEncoder: num_layers must be at least 1, got {count}$"):
        TransformerEncoder(TransformerEncoderLayer(4, 2, dim_feedforward=8), count)
    with pytest.raises(ValueError, match=rf"^TransformerDecoder: num_layers must be at least 1, got {count}$"):
        TransformerDecoder(TransformerDecoderLayer(4, 2, dim_feedforward=8), count)
    with pytest.raises(ValueError, match=rf"^Transformer: num_encoder_layers must be at least 1, got {count}$"):
        Transformer(d_model=4, nhead=2, num_encoder_layers=count, num_decoder_layers=1, dim_feedforward=8)
    with pytest.raises(ValueError, match=rf"^Transformer: num_decoder_layers must be at least 1, got {count}$"):
        Transformer(d_model=4, nhead=2, num_encoder_layers=1, num_decoder_layers=count, dim_feedforward=8)


def test_stacks_need_an_integer_layer_count():
    with pytest.raises(TypeError, match=r"^TransformerEncoder: num_layers must be an integer, got float$"):
        TransformerEncoder(TransformerEncoderLayer(4, 2, dim_feedforward=8), 2.0)
    with pytest.raises(TypeError, match=r"^TransformerDecoder: num_layers must be an integer, got bool$"):
        TransformerDecoder(TransformerDecoderLayer(4, 2, dim_feedforward=8), True)
    assert len(TransformerEncoder(TransformerEncoderLayer(4, 2, dim_feedforward=8), np.int64(2)).layers) == 2


def test_custom_activation_and_unbatched_input():
    layer = TransformerEncoderLayer(4, 2, dim_feedforward=8, activation=lambda x: x.tanh(), dropout=0.0)
    x = tinylm.randn(3, 4)
    y = layer(x)
    assert y.shape == (3, 4)
    batched = layer(x.unsqueeze(1))
    np.testing.assert_allclose(batched.numpy()[:, 0], y.numpy(), rtol=1e-5)
    assert isinstance(layer.self_attn, MultiheadAttention) and copy.deepcopy(layer)(x).shape == (3, 4)
