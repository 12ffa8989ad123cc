"""``LayerNorm``, ``GELU`` and ``cross_entropy``, each checked three ways: finite differences,
the same computation from primitive ops, and PyTorch given the same weights."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm
from tinylm import nn
from tinylm.nn import functional as F
from tinylm.ops.fused.cross_entropy import CrossEntropyFunction
from tinylm.ops.fused.gelu import GeluFunction
from tinylm.ops.fused.layer_norm import LayerNormFunction
from tests import strategies as S
from tests.coverage import covers
from tests.parity import assert_close, assert_same_gradients, copy_weights


def _leaves(arrays):
    return [tinylm.tensor(a, requires_grad=True) for a in arrays]


def _assert_same_forward_and_gradients(fused_fn, composed_fn, arrays, rtol=1e-10, atol=1e-12):
    fused, composed = _leaves(arrays), _leaves(arrays)
    y, z = fused_fn(*fused), composed_fn(*composed)
    np.testing.assert_allclose(y.numpy(), z.numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(g)
    z.backward(g)
    for ours, reference in zip(fused, composed):
        np.testing.assert_allclose(ours.grad.numpy(), reference.grad.numpy(), rtol=rtol, atol=atol)


# ----- LayerNorm ---------------------------------------------------------------------


@st.composite
def layer_norm_inputs(draw):
    normalized = draw(S.shapes(min_dims=1, max_dims=2, min_side=1))
    batch = draw(S.shapes(max_dims=2, min_side=1))
    x = draw(S.arrays(batch + normalized))
    affine = draw(st.sampled_from(["none", "weight", "both"]))
    params = [draw(S.arrays(normalized)) for _ in range({"none": 0, "weight": 1, "both": 2}[affine])]
    return normalized, x, params


def _layer_norm_call(normalized):
    def call(x, *params):
        weight = params[0] if params else None
        bias = params[1] if len(params) > 1 else None
        return F.layer_norm(x, normalized, weight, bias, eps=1e-5)

    return call


def _layer_norm_composed(normalized):
    dims = tuple(range(-len(normalized), 0))

    def call(x, *params):
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        y = centred / ((centred * centred).mean(dim=dims, keepdim=True) + 1e-5).sqrt()
        if params:
            y = y * params[0]
        if len(params) > 1:
            y = y + params[1]
        return y

    return call


@covers(LayerNormFunction, ops=["F.layer_norm"])
@given(inputs=layer_norm_inputs())
def test_layer_norm_gradients_match_finite_differences(inputs):
    normalized, x, params = inputs
    # rows of (near-)constant values have a tiny variance: the derivative then grows
    # like 1/std and finite differences lose their precision, so spread the values
    x = x + np.linspace(0, 1, x.size).reshape(x.shape)
    assert tinylm.gradcheck(_layer_norm_call(normalized), _leaves([x] + params))


@given(inputs=layer_norm_inputs())
def test_layer_norm_equals_its_composition_from_primitives(inputs):
    normalized, x, params = inputs
    x = x + np.linspace(0, 1, x.size).reshape(x.shape)
    _assert_same_forward_and_gradients(_layer_norm_call(normalized), _layer_norm_composed(normalized), [x] + params)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("normalized, bias", [((6,), True), ((6,), False), ((3, 6), True)])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_norm_matches_pytorch(torch, dtype, normalized, bias, mode):
    torch_dtype = getattr(torch, np.dtype(dtype).name)
    reference = torch.nn.LayerNorm(normalized, bias=bias, dtype=torch_dtype)
    with torch.no_grad():  # non-trivial weights, so their gradients are tested too
        reference.weight.uniform_(0.5, 1.5)
        if bias:
            reference.bias.uniform_(-0.5, 0.5)
    layer = nn.LayerNorm(normalized, bias=bias, dtype=dtype)
    copy_weights(reference, layer)
    reference.train(mode == "train")
    layer.train(mode == "train")
    x = np.random.default_rng(2).standard_normal((2, 4) + normalized).astype(dtype) * 3 + 1
    ours, theirs = tinylm.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, expected = layer(ours), reference(theirs)
    assert_close(y, expected, dtype)
    (y * y * y).sum().backward()
    (expected * expected * expected).sum().backward()
    assert_close(ours.grad, theirs.grad, dtype, "input gradient")
    assert_same_gradients(layer, reference, dtype)


def test_layer_norm_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match=r"layer_norm: input of shape \(2, 5\) does not end in normalized_shape \(4,\)"):
        nn.LayerNorm(4)(tinylm.zeros(2, 5))


# ----- GELU ------------------------------------------------------------------------------


def _gelu_composed(approximate):
    if approximate == "tanh":
        return lambda x: 0.5 * x * (1 + ((2 / math.pi) ** 0.5 * (x + 0.044715 * x**3)).tanh())
    return lambda x: 0.5 * x * (1 + (x / math.sqrt(2)).erf())


@covers(GeluFunction, ops=["F.gelu"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(x=S.arrays(S.shapes(max_dims=3), low=-5.0, high=5.0))
def test_gelu_gradients_match_finite_differences(approximate, x):
    assert tinylm.gradcheck(lambda t: F.gelu(t, approximate), _leaves([x]))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(x=S.arrays(S.shapes(max_dims=3), low=-8.0, high=8.0))
def test_gelu_equals_its_composition_from_primitives(approximate, x):
    _assert_same_forward_and_gradients(lambda t: F.gelu(t, approximate), _gelu_composed(approximate), [x])


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gelu_matches_pytorch(torch, dtype, approximate, mode):
    x = np.linspace(-9, 9, 301).astype(dtype)
    ours, theirs = tinylm.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    layer, reference = nn.GELU(approximate).train(mode == "train"), torch.nn.GELU(approximate).train(mode == "train")
    y, expected = layer(ours), reference(theirs)
    assert_close(y, expected, dtype)
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    assert_close(ours.grad, theirs.grad, dtype)


# ----- ReLU and Tanh modules ----------------------------------------------------------------------


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["ReLU", "Tanh"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_relu_and_tanh_modules_match_pytorch(torch, dtype, name, mode):
    """Forward and input gradient, 0 included (both take ReLU's derivative there as 0)."""
    x = np.linspace(-9, 9, 301).astype(dtype).reshape(7, 43)
    assert (x == 0).any()
    ours, theirs = tinylm.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    layer, reference = getattr(nn, name)().train(mode == "train"), getattr(torch.nn, name)().train(mode == "train")
    y, expected = layer(ours), reference(theirs)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, expected, dtype, "output")
    g = np.random.default_rng(4).standard_normal(x.shape).astype(dtype)
    y.backward(g)
    expected.backward(torch.tensor(g))
    assert_close(ours.grad, theirs.grad, dtype, "input gradient")


# ----- cross_entropy ------------------------------------------------------------------------


@st.composite
def cross_entropy_inputs(draw):
    """Logits (N, C) or (N, C, d) or (C,), targets with some ignored, and the options."""
    classes = draw(st.integers(1, 4))
    form = draw(st.sampled_from(["rows", "spatial", "single"]))
    n = draw(st.integers(1, 3))
    shape, target_shape = {
        "rows": ((n, classes), (n,)),
        "spatial": ((n, classes, 2), (n, 2)),
        "single": ((classes,), ()),
    }[form]
    logits = draw(S.arrays(shape, low=-4.0, high=4.0))
    targets = draw(S.index_arrays(target_shape, classes))
    if form != "single" and draw(st.booleans()):
        targets = np.where(draw(S.hnp.arrays(np.bool_, target_shape)), -100, targets)
    options = dict(
        reduction=draw(st.sampled_from(["mean", "sum", "none"])),
        label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )
    if options["reduction"] == "mean" and np.all(targets == -100):
        targets = np.zeros_like(targets)  # a mean over no targets is NaN; tested separately
    return logits, targets, options


def _cross_entropy_composed(logits, targets, reduction, label_smoothing, ignore_index=-100):
    classes = logits.shape[0] if logits.ndim == 1 else logits.shape[1]
    log_p = logits.log_softmax(0 if logits.ndim == 1 else 1)
    if logits.ndim > 2:
        log_p = log_p.permute(0, 2, 1)
    log_p = log_p.reshape(-1, classes)
    flat = targets.reshape(-1)
    keep = flat != ignore_index
    safe = tinylm.where(keep, flat, 0)
    picked = log_p.gather(1, safe.reshape(-1, 1)).reshape(-1)
    losses = -(1 - label_smoothing) * picked - label_smoothing * log_p.mean(dim=1)
    losses = tinylm.where(keep, losses, 0.0)
    if reduction == "none":
        return losses.reshape(targets.shape)
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / keep.numpy().sum()


@covers(CrossEntropyFunction, ops=["F.cross_entropy"])
@given(inputs=cross_entropy_inputs())
def test_cross_entropy_gradients_match_finite_differences(inputs):
    logits, targets, options = inputs
    assert tinylm.gradcheck(lambda t: F.cross_entropy(t, tinylm.tensor(targets), **options), _leaves([logits]))


@given(inputs=cross_entropy_inputs())
def test_cross_entropy_equals_its_composition_from_primitives(inputs):
    logits, targets, options = inputs
    _assert_same_forward_and_gradients(
        lambda t: F.cross_entropy(t, tinylm.tensor(targets), **options),
        lambda t: _cross_entropy_composed(t, tinylm.tensor(targets), **options),
        [logits],
    )


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy_matches_pytorch(torch, dtype, reduction, label_smoothing):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((6, 5, 3)) * 4).astype(dtype)
    targets = rng.integers(0, 5, (6, 3))
    targets[0, 1] = targets[4, 2] = 7  # ignored below
    ours, theirs = tinylm.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    options = dict(reduction=reduction, label_smoothing=label_smoothing, ignore_index=7)
    y = F.cross_entropy(ours, tinylm.tensor(targets), **options)
    expected = torch.nn.functional.cross_entropy(theirs, torch.tensor(targets), **options)
    assert_close(y, expected, dtype)
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    assert_close(ours.grad, theirs.grad, dtype)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("ignore_index", [-100, 2])  # the default (outside [0, C)) and a real class
@pytest.mark.parametrize("shape", [(7, 5), (4, 5, 3)])
def test_cross_entropy_with_ignored_targets_matches_pytorch(torch, dtype, reduction, label_smoothing, ignore_index,
                                                            shape):
    """(N, C) and (N, C, d) logits, some targets ignored, with and without label smoothing."""
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    target_shape = shape[:1] + shape[2:]
    targets = rng.integers(0, 5, target_shape)
    targets.flat[[0, 3]] = ignore_index
    if ignore_index != 2:
        targets.flat[1] = 2  # class 2 then counts as any other
    kept = targets != ignore_index
    assert kept.any() and not kept.all()
    ours, theirs = tinylm.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    options = dict(reduction=reduction, label_smoothing=label_smoothing, ignore_index=ignore_index)
    y = F.cross_entropy(ours, tinylm.tensor(targets), **options)
    expected = torch.nn.functional.cross_entropy(theirs, torch.tensor(targets), **options)
    assert y.dtype == dtype and y.shape == tuple(expected.shape)
    assert_close(y, expected, dtype, "loss")
    if reduction == "none":
        np.testing.assert_array_equal(y.numpy()[~kept], 0.0)
    g = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    (y * tinylm.tensor(g)).sum().backward()
    (expected * torch.tensor(g)).sum().backward()
    assert_close(ours.grad, theirs.grad, dtype, "gradient of the logits")
    ignored_rows = np.moveaxis(ours.grad.numpy(), 1, -1)[~kept]
    np.testing.assert_array_equal(ignored_rows, 0.0)  # an ignored target passes back nothing


def test_cross_entropy_is_finite_at_huge_logits():
    logits = tinylm.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(logits, tinylm.tensor([1, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.isfinite(logits.grad.numpy()).all()
    np.testing.assert_allclose(loss.item(), (2e4 + 2e4 + math.log(2)) / 2, rtol=1e-6)


def test_cross_entropy_over_only_ignored_targets_is_nan_with_zero_gradient():
    logits = tinylm.randn(2, 3, requires_grad=True)
    loss = F.cross_entropy(logits, tinylm.tensor([-100, -100]))
    loss.backward()
    assert math.isnan(loss.item()) and np.all(logits.grad.numpy() == 0)


@pytest.mark.parametrize(
    "targets, pattern",
    [
        ([0, 3, 1], r"target 3 at position 1 is outside \[0, 3\)"),
        ([0, -1, 1], r"target -1 at position 1"),
    ],
)
def test_cross_entropy_rejects_a_target_out_of_range(targets, pattern):
    with pytest.raises(IndexError, match=pattern):
        F.cross_entropy(tinylm.zeros(3, 3), tinylm.tensor(targets))


def test_cross_entropy_rejects_mismatched_shapes_and_float_targets():
    with pytest.raises(ValueError, match=r"logits of shape \(4, 3\) need targets of shape \(4,\), got \(3,\)"):
        F.cross_entropy(tinylm.zeros(4, 3), tinylm.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="integer tensor"):
        F.cross_entropy(tinylm.zeros(2, 3), tinylm.tensor([0.0, 1.0]))


@settings(max_examples=10)
@given(st.integers(1, 3))
def test_float32_cross_entropy_agrees_with_float64(n):
    rng = np.random.default_rng(n)
    logits = rng.standard_normal((n, 65)) * 3
    targets = tinylm.tensor(rng.integers(0, 65, n))
    single = F.cross_entropy(tinylm.tensor(logits.astype(np.float32)), targets)
    double = F.cross_entropy(tinylm.tensor(logits), targets)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single.item(), double.item(), rtol=1e-6)
