"""Losses (``nll_loss``, weighted ``cross_entropy``, ``mse_loss``, ``binary_cross_entropy_with_logits``),
``one_hot`` and ``pad``, and their layers: finite differences in float64 and PyTorch parity."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinylm
from tinylm import nn
from tinylm.nn import functional as F
from tinylm.ops.fused.losses import BCEWithLogitsFunction, NLLLossFunction
from tinylm.ops.fused.pad import PadFunction
from tests import strategies as S
from tests.coverage import covers
from tests.parity import assert_close


def _leaf(array):
    return tinylm.tensor(array, requires_grad=True)


# ----- negative log-likelihood and weighted cross-entropy ------------------------------------------


@st.composite
def class_inputs(draw):
    """Scores (N, C), (N, C, d) or (C,), targets with some ignored, options, and class weights or None."""
    classes = draw(st.integers(1, 4))
    layout = draw(st.sampled_from(["rows", "spatial", "single"]))
    if layout == "single":
        shape, target_shape = (classes,), ()
    else:
        n = draw(st.integers(1, 3))
        extra = (draw(st.integers(1, 3)),) if layout == "spatial" else ()
        shape, target_shape = (n, classes) + extra, (n,) + extra
    scores = draw(S.arrays(shape))
    targets = draw(S.index_arrays(target_shape, classes))
    ignored = draw(hnp.arrays(np.bool_, target_shape))
    targets = np.where(ignored, -100, targets)
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    if reduction == "mean" and np.all(targets == -100):
        targets = np.zeros_like(targets)  # a mean over no targets is NaN
    weight = draw(st.none() | S.arrays((classes,), low=0.5, high=2.0))
    return scores, targets, reduction, weight


@covers(NLLLossFunction, ops=["F.nll_loss"])
@given(inputs=class_inputs())
def test_nll_loss_gradients_match_finite_differences(inputs):
    scores, targets, reduction, weight = inputs
    w = None if weight is None else tinylm.tensor(weight)
    fn = lambda t: F.nll_loss(t, tinylm.tensor(targets), weight=w, reduction=reduction)  # noqa: E731
    assert tinylm.gradcheck(fn, [_leaf(scores)])


@given(inputs=class_inputs(), label_smoothing=st.sampled_from([0.0, 0.1, 0.5]))
def test_weighted_cross_entropy_gradients_match_finite_differences(inputs, label_smoothing):
    scores, targets, reduction, weight = inputs
    w = tinylm.tensor(np.ones(scores.shape[0 if scores.ndim == 1 else 1]) if weight is None else weight)
    fn = lambda t: F.cross_entropy(t, tinylm.tensor(targets), weight=w, reduction=reduction,  # noqa: E731
                                   label_smoothing=label_smoothing)  # fmt: skip
    assert tinylm.gradcheck(fn, [_leaf(scores)])


def test_nll_loss_picks_minus_the_target_log_probability():
    log_p = tinylm.tensor(np.log([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    loss = F.nll_loss(log_p, tinylm.tensor([1, 2]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [-math.log(0.25), -math.log(0.8)])
    weighted = F.nll_loss(log_p, tinylm.tensor([1, 2]), weight=tinylm.tensor([1.0, 2.0, 3.0]))
    assert weighted.item() == pytest.approx((2 * -math.log(0.25) + 3 * -math.log(0.8)) / 5)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 1])
@pytest.mark.parametrize("shape", [(7, 4), (3, 4, 5)])
def test_cross_entropy_and_nll_layers_match_pytorch(torch, dtype, reduction, label_smoothing, weighted,
                                                    ignore_index, shape):  # fmt: skip
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    targets = rng.integers(0, 4, shape[:1] + shape[2:])
    targets.flat[[0, 2]] = ignore_index
    weight = rng.uniform(0.5, 2.0, 4).astype(dtype) if weighted else None
    options = dict(ignore_index=ignore_index, reduction=reduction)
    ours_weight = None if weight is None else tinylm.tensor(weight)
    theirs_weight = None if weight is None else torch.tensor(weight)
    layers = [
        (nn.CrossEntropyLoss(ours_weight, label_smoothing=label_smoothing, **options),
         torch.nn.CrossEntropyLoss(theirs_weight, label_smoothing=label_smoothing, **options), None),
        (nn.NLLLoss(ours_weight, **options), torch.nn.NLLLoss(theirs_weight, **options), 1),
    ]  # fmt: skip
    g = rng.standard_normal(targets.shape).astype(dtype)
    for ours_layer, theirs_layer, log_softmax_dim in layers:
        ours, theirs = _leaf(logits), torch.tensor(logits, requires_grad=True)
        ours_in = ours if log_softmax_dim is None else nn.LogSoftmax(log_softmax_dim)(ours)
        theirs_in = theirs if log_softmax_dim is None else torch.nn.LogSoftmax(log_softmax_dim)(theirs)
        y, expected = ours_layer(ours_in, tinylm.tensor(targets)), theirs_layer(theirs_in, torch.tensor(targets))
        name = type(ours_layer).__name__
        assert y.dtype == dtype and y.shape == tuple(expected.shape), name
        assert_close(y, expected, dtype, f"{name} loss")
        direction = g if reduction == "none" else np.asarray(1.5, dtype=dtype)
        (y * tinylm.tensor(direction)).sum().backward()
        (expected * torch.tensor(direction)).sum().backward()
        assert_close(ours.grad, theirs.grad, dtype, f"{name} gradient")


def test_loss_layers_keep_their_weight_as_a_buffer():
    layer = nn.CrossEntropyLoss(weight=tinylm.tensor([1.0, 2.0]))
    assert list(layer.state_dict()) == ["weight"] and list(layer.parameters()) == []
    assert list(nn.NLLLoss().state_dict()) == []


def test_losses_refuse_bad_arguments():
    with pytest.raises(ValueError, match=r"nll_loss: weight must be a tensor of shape \(3,\)"):
        F.nll_loss(tinylm.zeros(2, 3), tinylm.tensor([0, 1]), weight=tinylm.ones(2))
    with pytest.raises(IndexError, match=r"nll_loss: target 3 at position 1 is outside \[0, 3\)"):
        F.nll_loss(tinylm.zeros(2, 3), tinylm.tensor([0, 3]))
    with pytest.raises(TypeError, match="size_average and reduce are PyTorch's deprecated arguments"):
        nn.MSELoss(size_average=False)
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        nn.CrossEntropyLoss(reduction="avg")


# ----- mean squared error ---------------------------------------------------------------------------


@covers(ops=["F.mse_loss"])
@given(shapes=S.broadcast_shapes(), reduction=st.sampled_from(["mean", "sum", "none"]), data=st.data())
def test_mse_loss_gradients_match_finite_differences(shapes, reduction, data):
    a, b = (data.draw(S.arrays(shape)) for shape in shapes)
    if reduction == "mean" and 0 in np.broadcast_shapes(*shapes):
        return  # the mean of nothing is NaN
    fn = lambda x, y: F.mse_loss(x, y, reduction=reduction)  # noqa: E731
    assert tinylm.gradcheck(fn, [_leaf(a), _leaf(b)])


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_pytorch(torch, dtype, reduction):
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 3, 4)).astype(dtype)
    ours, theirs = _leaf(a), torch.tensor(a, requires_grad=True)
    y = nn.MSELoss(reduction=reduction)(ours, tinylm.tensor(b))
    expected = torch.nn.MSELoss(reduction=reduction)(theirs, torch.tensor(b))
    assert_close(y, expected, dtype, "loss")
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    assert_close(ours.grad, theirs.grad, dtype, "gradient")


# ----- binary cross-entropy on logits -------------------------------------------------------------


@st.composite
def bce_inputs(draw):
    shape = draw(S.shapes(min_dims=1, max_dims=3, min_side=1))
    x = draw(S.arrays(shape, low=-6, high=6))
    y = draw(S.arrays(shape, low=0, high=1))
    weight = draw(st.none() | S.arrays(shape[-1:], low=0.1, high=2))
    pos_weight = draw(st.none() | S.arrays(shape[-1:], low=0.1, high=3))
    return x, y, weight, pos_weight, draw(st.sampled_from(["mean", "sum", "none"]))


@covers(BCEWithLogitsFunction, ops=["F.binary_cross_entropy_with_logits"])
@given(inputs=bce_inputs())
def test_bce_with_logits_gradients_match_finite_differences(inputs):
    x, y, weight, pos_weight, reduction = inputs
    constants = {k: tinylm.tensor(v) for k, v in (("weight", weight), ("pos_weight", pos_weight)) if v is not None}
    fn = lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction, **constants)  # noqa: E731
    assert tinylm.gradcheck(fn, [_leaf(x), _leaf(y)])  # the targets' gradient too


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weights", ["none", "weight", "pos_weight", "both"])
def test_bce_with_logits_matches_pytorch(torch, dtype, reduction, weights):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((5, 3)) * 20).astype(dtype)  # large logits: the stable form matters
    y = rng.uniform(0, 1, (5, 3)).astype(dtype)
    weight = rng.uniform(0.5, 2, (1, 3)).astype(dtype) if weights in ("weight", "both") else None
    pos_weight = rng.uniform(0.5, 3, 3).astype(dtype) if weights in ("pos_weight", "both") else None
    to_ours = lambda a: None if a is None else tinylm.tensor(a)  # noqa: E731
    to_theirs = lambda a: None if a is None else torch.tensor(a)  # noqa: E731
    ours_x, ours_y = _leaf(x), _leaf(y)
    theirs_x, theirs_y = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    loss = nn.BCEWithLogitsLoss(to_ours(weight), reduction=reduction, pos_weight=to_ours(pos_weight))(ours_x, ours_y)
    expected = torch.nn.BCEWithLogitsLoss(to_theirs(weight), reduction=reduction,
                                          pos_weight=to_theirs(pos_weight))(theirs_x, theirs_y)  # fmt: skip
    assert loss.dtype == dtype
    assert_close(loss, expected, dtype, "loss")
    (loss * loss).sum().backward()
    (expected * expected).sum().backward()
    assert_close(ours_x.grad, theirs_x.grad, dtype, "gradient of the logits")
    assert_close(ours_y.grad, theirs_y.grad, dtype, "gradient of the targets")


def test_bce_with_logits_is_finite_at_huge_logits():
    x = _leaf(np.array([1e4, -1e4, 800.0, -800.0]))
    loss = F.binary_cross_entropy_with_logits(x, tinylm.tensor([0.0, 1.0, 1.0, 0.0]), reduction="none")
    loss.sum().backward()
    np.testing.assert_allclose(loss.numpy(), [1e4, 1e4, 0.0, 0.0])
    np.testing.assert_allclose(x.grad.numpy(), [1.0, -1.0, 0.0, 0.0])


# ----- one_hot and pad -----------------------------------------------------------------------------


@covers(ops=["F.one_hot"])  # integer-valued: it has no gradient, which this checks
def test_one_hot_gives_int64_rows_without_a_gradient():
    ids = tinylm.tensor([[0, 2], [1, 1]])
    out = F.one_hot(ids)
    assert out.dtype == np.int64 and out.shape == (2, 2, 3) and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), np.eye(3, dtype=np.int64)[ids.numpy()])
    assert F.one_hot(ids, num_classes=5).shape == (2, 2, 5)
    with pytest.raises(ValueError, match="class id 2 is not smaller than num_classes=2"):
        F.one_hot(ids, 2)
    with pytest.raises(TypeError, match="expected an integer tensor"):
        F.one_hot(tinylm.tensor([0.0]))


@pytest.mark.parity
def test_one_hot_matches_pytorch(torch):
    ids = np.array([3, 0, 1, 3])
    assert_close(F.one_hot(tinylm.tensor(ids)), torch.nn.functional.one_hot(torch.tensor(ids)), np.float64)


@st.composite
def pad_inputs(draw):
    shape = draw(S.shapes(min_dims=1, max_dims=3, min_side=1))
    pairs = draw(st.integers(1, len(shape)))
    widths = []
    for axis in range(pairs):
        n = shape[len(shape) - 1 - axis]
        before = draw(st.integers(-n, 2))
        widths += [before, draw(st.integers(-(n + min(before, 0)), 2))]  # never a negative size
    return draw(S.arrays(shape)), tuple(widths), draw(st.sampled_from([0.0, -1.5]))


@covers(PadFunction, ops=["F.pad"])
@given(inputs=pad_inputs())
def test_pad_gradients_match_finite_differences(inputs):
    x, widths, value = inputs
    assert tinylm.gradcheck(lambda t: F.pad(t, widths, value=value), [_leaf(x)])


@pytest.mark.parity
@pytest.mark.parametrize("widths", [(1, 2), (0, 0, 2, 1), (-1, 1, 1, -2), (1, 1, 0, 0, 1, 0)])
def test_pad_matches_pytorch(torch, widths):
    x = np.random.default_rng(9).standard_normal((2, 3, 4))
    ours, theirs = _leaf(x), torch.tensor(x, requires_grad=True)
    y, expected = F.pad(ours, widths, value=0.5), torch.nn.functional.pad(theirs, widths, value=0.5)
    assert_close(y, expected, np.float64)
    g = np.random.default_rng(10).standard_normal(y.shape)
    (y * tinylm.tensor(g)).sum().backward()
    (expected * torch.tensor(g)).sum().backward()
    assert_close(ours.grad, theirs.grad, np.float64)


def test_pad_refuses_other_modes_and_bad_widths():
    with pytest.raises(NotImplementedError, match="pad: mode 'reflect' is PyTorch's, not in tinylm"):
        F.pad(tinylm.zeros(2, 3), (1, 1), mode="reflect")
    with pytest.raises(ValueError, match="even number of integer widths"):
        F.pad(tinylm.zeros(2, 3), (1, 1, 1))


# ----- activation layers ---------------------------------------------------------------------------


@pytest.mark.parity
@pytest.mark.parametrize("dim", [None, 0, -1])
def test_softmax_and_log_softmax_layers_match_pytorch(torch, dim):
    x = np.random.default_rng(11).standard_normal((2, 3, 4))
    for ours, theirs in ((nn.Softmax(dim), torch.nn.Softmax(dim)), (nn.LogSoftmax(dim), torch.nn.LogSoftmax(dim))):
        assert_close(ours(tinylm.tensor(x)), theirs(torch.tensor(x)), np.float64, type(ours).__name__)
