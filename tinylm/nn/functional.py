"""Layers as functions (``tinylm.nn.functional``, imported as ``F``), with PyTorch's signatures.

These check their arguments, so a wrong shape fails here with a message
naming the function and both shapes, then call one fused op from
``tinylm.ops.fused`` (or a primitive from ``tinylm.ops``).
"""

import numpy as np

from tinylm import ops
from tinylm.backend import array_module
from tinylm.ops.fused.attention import scaled_dot_product_attention
from tinylm.ops.fused.cross_entropy import CrossEntropyFunction
from tinylm.ops.fused.dropout import DropoutFunction
from tinylm.ops.fused.embedding import EmbeddingFunction
from tinylm.ops.fused.gelu import GeluFunction
from tinylm.ops.fused.layer_norm import LayerNormFunction
from tinylm.ops.fused.linear import LinearFunction
from tinylm.ops.fused.losses import BCEWithLogitsFunction, NLLLossFunction
from tinylm.ops.fused.pad import PadFunction
from tinylm.tensor import Tensor, wrap

__all__ = [
    "linear", "embedding", "dropout", "layer_norm", "gelu", "cross_entropy", "scaled_dot_product_attention",
    "relu", "tanh", "sigmoid", "softmax", "log_softmax",
    "nll_loss", "mse_loss", "binary_cross_entropy_with_logits", "one_hot", "pad",
]  # fmt: skip


def _shape(tensor):
    return tuple(tensor.shape)


def linear(input, weight, bias=None):  # noqa: A002 (PyTorch's argument name)
    """``input @ weight.T + bias``: input (..., in), weight (out, in), bias (out,) -> (..., out)."""
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-d (out_features, in_features), got shape {_shape(weight)}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {_shape(input)} does not end in in_features={weight.shape[1]} "
            f"(weight shape {_shape(weight)})"
        )
    if bias is None:
        return LinearFunction.apply(input, weight)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {_shape(bias)}")
    return LinearFunction.apply(input, weight, bias)


def embedding(input, weight, padding_idx=None):  # noqa: A002
    """Rows of ``weight`` (num_embeddings, dim) picked by the integer ids in ``input`` -> (*input.shape, dim).

    An id outside ``[0, num_embeddings)`` raises an IndexError naming it.
    """
    check_embedding_ids(input, weight)
    if padding_idx is not None and padding_idx < 0:
        padding_idx += weight.shape[0]
    return EmbeddingFunction.apply(weight, input, padding_idx=padding_idx)


def check_embedding_ids(input, weight, caller="embedding"):  # noqa: A002
    """Raise unless ``input`` is an integer tensor of ids within the rows of the 2-d ``weight``."""
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        got = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"{caller}: ids must be an integer tensor, got {got}")
    if weight.ndim != 2:
        raise ValueError(f"{caller}: weight must be 2-d (num_embeddings, dim), got shape {_shape(weight)}")
    size = weight.shape[0]
    ids = input.data
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= size):
        bad = ids[(ids < 0) | (ids >= size)].reshape(-1)[0]
        raise IndexError(f"{caller}: id {int(bad)} is out of range for an embedding of size {size} (expected 0 to {size - 1})")


def dropout(input, p=0.5, training=True):  # noqa: A002
    """Zero each element with probability ``p`` and scale the others by 1/(1-p), when training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be between 0 and 1, got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    return DropoutFunction.apply(input, p=p)


def relu(input):  # noqa: A002
    return ops.relu(input)


def tanh(input):  # noqa: A002
    return ops.tanh(input)


def sigmoid(input):  # noqa: A002
    return ops.sigmoid(input)


def softmax(input, dim):  # noqa: A002
    return ops.softmax(input, dim)


def log_softmax(input, dim):  # noqa: A002
    return ops.log_softmax(input, dim)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """Normalise over the last ``len(normalized_shape)`` dimensions, then scale by ``weight``
    and shift by ``bias`` (each of shape ``normalized_shape``, or None)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if input.shape[input.ndim - len(shape) :] != shape or input.ndim < len(shape):
        raise ValueError(
            f"layer_norm: input of shape {_shape(input)} does not end in normalized_shape {shape}"
        )
    for name, parameter in (("weight", weight), ("bias", bias)):
        if parameter is not None and parameter.shape != shape:
            raise ValueError(f"layer_norm: {name} must have shape {shape}, got {_shape(parameter)}")
    affine = [p for p in (weight, bias) if p is not None]
    return LayerNormFunction.apply(
        input, *affine, normalized_ndim=len(shape), has_weight=weight is not None,
        has_bias=bias is not None, eps=eps,
    )  # fmt: skip


def gelu(input, approximate="none"):  # noqa: A002
    """``x * Phi(x)`` (Phi the standard normal CDF); ``approximate="tanh"`` for the tanh form."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    ops.common.check_floating(input, "gelu")
    return GeluFunction.apply(input, approximate=approximate)


# ----- losses ------------------------------------------------------------------------


def _check_reduction(caller, reduction, size_average=None, reduce=None):
    if size_average is not None or reduce is not None:
        raise TypeError(
            f"{caller}: size_average and reduce are PyTorch's deprecated arguments and are not in tinylm; "
            "use reduction='mean', 'sum' or 'none'"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{caller}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(losses, reduction):
    if reduction == "sum":
        return losses.sum()
    return losses.mean() if reduction == "mean" else losses


def _class_rows(caller, input, target, ignore_index):  # noqa: A002
    """Scores (N, C, d1, ...) with targets (N, d1, ...), (N, C) with (N,), or (C,) with ():
    the scores as rows (M, C) with the classes last, and the targets flat (M,).

    Raises naming ``caller`` for targets that are not integers, of the wrong shape,
    or outside [0, C) without being ``ignore_index``.
    """
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(f"{caller}: targets must be an integer tensor of class indices, got {got} "
                        "(class-probability targets, which PyTorch also takes, are not in tinylm)")
    ops.common.check_floating(input, caller)
    rows = input
    if rows.ndim == 1:  # one unbatched example
        rows = rows.reshape(1, -1)
    expected = (rows.shape[0],) + rows.shape[2:]
    if input.ndim == 0 or (target.shape != expected if input.ndim > 1 else target.shape != ()):
        scores = "logits" if caller == "cross_entropy" else "input"
        raise ValueError(
            f"{caller}: {scores} of shape {_shape(input)} need targets of shape "
            f"{expected if input.ndim > 1 else ()}, got {_shape(target)}"
        )
    classes = rows.shape[1]
    if rows.ndim > 2:  # (N, C, d1, ...) -> (N * d1 * ..., C)
        rows = rows.permute(0, *range(2, rows.ndim), 1).reshape(-1, classes)
    flat_targets = target.reshape(-1)
    ids = flat_targets.data
    bad = (ids != ignore_index) & ((ids < 0) | (ids >= classes))
    if bad.any():
        position = int(bad.nonzero()[0][0])
        raise IndexError(
            f"{caller}: target {int(ids[position])} at position {position} is outside [0, {classes}) "
            f"and is not ignore_index ({ignore_index})"
        )
    return rows, flat_targets


def _class_weight(caller, weight, classes, like):
    """The per-class weights as an array of ``like``'s dtype, or None."""
    if weight is None:
        return None
    if not isinstance(weight, Tensor) or weight.shape != (classes,):
        got = _shape(weight) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{caller}: weight must be a tensor of shape ({classes},), one per class, got {got}")
    ops.common.check_floating(weight, caller)
    return weight.data.astype(like.dtype, copy=False)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
                  reduction="mean", label_smoothing=0.0):  # fmt: skip
    """Softmax cross-entropy of logits and integer class targets, as ``torch.nn.functional.cross_entropy``.

    Shapes: logits (N, C) with targets (N,); (N, C, d1, ...) with (N, d1, ...);
    or (C,) with (). ``reduction`` is "mean" (over targets that are not
    ``ignore_index``), "sum" or "none" (the per-target losses, shaped like the
    targets). A target outside [0, C) that is not ``ignore_index`` raises.

    With class weights w (C,), as PyTorch: with logp = log_softmax(logits) and
    eps = ``label_smoothing``, row i loses
    ``(1 - eps) (-w[t_i] logp[i, t_i]) + eps / C (-sum_c w_c logp[i, c])``, and the
    mean divides by sum_i w[t_i] over the kept rows. Without weights it is one
    fused op; with them, ``nll_loss`` of ``log_softmax`` plus the smoothing term.
    """
    _check_reduction("cross_entropy", reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    logits, flat_targets = _class_rows("cross_entropy", input, target, ignore_index)
    classes = logits.shape[1]
    weights = _class_weight("cross_entropy", weight, classes, logits)
    if weights is None:
        loss = CrossEntropyFunction.apply(
            logits, flat_targets, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
        )
    else:
        log_p = ops.log_softmax(logits, 1)
        loss = NLLLossFunction.apply(log_p, flat_targets, weight=weights, ignore_index=ignore_index,
                                     reduction=reduction)  # fmt: skip
        if label_smoothing:
            kept = flat_targets != ignore_index
            smooth = ops.where(kept, -(log_p * wrap(weights)).sum(dim=1), 0.0)  # -sum_c w_c logp[i, c]
            if reduction == "mean":
                ids, keep = flat_targets.data, kept.data
                smooth = smooth.sum() / (weights[array_module(ids).where(keep, ids, 0)] * keep).sum()
            else:
                smooth = _reduce(smooth, reduction)
            loss = loss * (1.0 - label_smoothing) + smooth * (label_smoothing / classes)
    return loss.reshape(target.shape) if reduction == "none" else loss


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,  # noqa: A002
             reduction="mean"):  # fmt: skip
    """Negative log-likelihood of log-probabilities (as from ``log_softmax``) and integer class
    targets, with the shapes, weights and reductions of ``cross_entropy``:
    row i loses ``-w[t_i] input[i, t_i]``; "mean" divides by sum_i w[t_i] over the kept rows."""
    _check_reduction("nll_loss", reduction, size_average, reduce)
    log_p, flat_targets = _class_rows("nll_loss", input, target, ignore_index)
    weights = _class_weight("nll_loss", weight, log_p.shape[1], log_p)
    loss = NLLLossFunction.apply(log_p, flat_targets, weight=weights, ignore_index=ignore_index, reduction=reduction)
    return loss.reshape(target.shape) if reduction == "none" else loss


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    """``(input - target)^2`` (the two broadcast together), reduced by mean, sum or not at all;
    composed from primitive ops, whose gradients are 2 (input - target) g and its negative."""
    _check_reduction("mse_loss", reduction, size_average, reduce)
    for name, tensor in (("input", input), ("target", target)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"mse_loss: {name} must be a tensor, got {type(tensor).__name__}")
        ops.common.check_floating(tensor, "mse_loss")
    if not ops.common.can_broadcast(input.shape, target.shape):
        raise ValueError(f"mse_loss: input of shape {_shape(input)} and target of shape {_shape(target)} "
                         "cannot be broadcast together")  # fmt: skip
    difference = input - target
    return _reduce(difference * difference, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,  # noqa: A002
                                     reduction="mean", pos_weight=None):  # fmt: skip
    """Binary cross-entropy of logits and targets in [0, 1] of the same shape, computed stably
    (``max(x, 0) - x y + log1p(exp(-|x|))``; see ``BCEWithLogitsFunction``). ``weight``
    broadcasts to the input and scales each element; ``pos_weight`` (one per class, along
    the last axis) scales the positive term."""
    caller = "binary_cross_entropy_with_logits"
    _check_reduction(caller, reduction, size_average, reduce)
    if not isinstance(target, Tensor) or target.shape != input.shape:
        got = _shape(target) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"{caller}: target size {got} must be the same as input size {_shape(input)}")
    ops.common.check_floating(input, caller)
    ops.common.check_floating(target, caller)
    constants = {}
    for name, tensor in (("weight", weight), ("pos_weight", pos_weight)):
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{caller}: {name} must be a tensor, got {type(tensor).__name__}")
        if not ops.common.can_broadcast(tensor.shape, input.shape) or \
                np.broadcast_shapes(tensor.shape, input.shape) != input.shape:
            raise ValueError(f"{caller}: {name} of shape {_shape(tensor)} does not broadcast to the input's "
                             f"shape {_shape(input)}")  # fmt: skip
        constants[name] = tensor.data.astype(input.dtype, copy=False)
    target = target if target.dtype == input.dtype else target.to(input.dtype)
    return _reduce(BCEWithLogitsFunction.apply(input, target, **constants), reduction)


# ----- one-hot and padding -----------------------------------------------------------


def one_hot(tensor, num_classes=-1):
    """Integer class ids (any shape) -> int64 (*shape, num_classes) with a 1 at each id; no gradient.

    ``num_classes=-1`` takes the largest id plus one.
    """
    if not isinstance(tensor, Tensor) or tensor.dtype.kind not in "iu":
        got = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
        raise TypeError(f"one_hot: expected an integer tensor of class ids, got {got}")
    ids = tensor.data
    xp = array_module(ids)
    if num_classes == -1:
        if ids.size == 0:
            raise ValueError("one_hot: cannot infer the number of classes from an empty tensor; pass num_classes")
        num_classes = int(ids.max()) + 1
    if ids.size and int(ids.min()) < 0:
        raise ValueError(f"one_hot: class ids must be non-negative, got {int(ids.min())}")
    if ids.size and int(ids.max()) >= num_classes:
        raise ValueError(f"one_hot: class id {int(ids.max())} is not smaller than num_classes={num_classes}")
    return wrap((ids[..., None] == xp.arange(num_classes)).astype(np.int64))


def pad(input, pad, mode="constant", value=None):  # noqa: A002
    """Pad ``input`` with ``value`` (0 if None): ``pad`` lists (before, after) widths from the
    LAST dimension backwards, as PyTorch's ``(left, right, top, bottom, ...)``; a negative
    width crops. Only ``mode="constant"``."""
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r} is PyTorch's, not in tinylm (only mode='constant')")
    widths = list(pad)
    if len(widths) % 2 or len(widths) // 2 > input.ndim or not all(isinstance(w, (int, np.integer)) for w in widths):
        raise ValueError(f"pad: expected an even number of integer widths, at most 2 per dimension of the "
                         f"{input.ndim}-d input, got {tuple(widths)}")  # fmt: skip
    per_axis = [(0, 0)] * input.ndim
    for i in range(len(widths) // 2):
        per_axis[input.ndim - 1 - i] = (int(widths[2 * i]), int(widths[2 * i + 1]))
    for axis, (n, (before, after)) in enumerate(zip(input.shape, per_axis)):
        if n + before + after < 0:
            raise ValueError(f"pad: widths {(before, after)} leave dimension {axis} of size {n} with a negative size")
    return PadFunction.apply(input, widths=tuple(per_axis), value=0 if value is None else value)
