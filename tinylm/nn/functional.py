"""Layers as functions (``tinylm.nn.functional``, imported as ``F``), with PyTorch's signatures.

These check their arguments, so a wrong shape fails here with a message
naming the function and both shapes, then call one fused op from
``tinylm.ops.fused`` (or a primitive from ``tinylm.ops``).
"""

from tinylm import ops
from tinylm.ops.fused.attention import scaled_dot_product_attention
from tinylm.ops.fused.cross_entropy import CrossEntropyFunction
from tinylm.ops.fused.dropout import DropoutFunction
from tinylm.ops.fused.embedding import EmbeddingFunction
from tinylm.ops.fused.gelu import GeluFunction
from tinylm.ops.fused.layer_norm import LayerNormFunction
from tinylm.ops.fused.linear import LinearFunction
from tinylm.tensor import Tensor

__all__ = [
    "linear", "embedding", "dropout", "layer_norm", "gelu", "cross_entropy", "scaled_dot_product_attention",
    "relu", "tanh", "sigmoid", "softmax", "log_softmax",
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


def cross_entropy(input, target, ignore_index=-100, reduction="mean", label_smoothing=0.0):  # noqa: A002
    """Softmax cross-entropy of logits and integer class targets, as ``torch.nn.functional.cross_entropy``.

    Shapes: logits (N, C) with targets (N,); (N, C, d1, ...) with (N, d1, ...);
    or (C,) with (). ``reduction`` is "mean" (over targets that are not
    ``ignore_index``), "sum" or "none" (the per-target losses, shaped like the
    targets). A target outside [0, C) that is not ``ignore_index`` raises.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(f"cross_entropy: targets must be an integer tensor of class indices, got {got}")
    ops.common.check_floating(input, "cross_entropy")
    logits = input
    if logits.ndim == 1:  # one unbatched example
        logits = logits.reshape(1, -1)
    expected = (logits.shape[0],) + logits.shape[2:]
    if input.ndim == 0 or (target.shape != expected if input.ndim > 1 else target.shape != ()):
        raise ValueError(
            f"cross_entropy: logits of shape {_shape(input)} need targets of shape "
            f"{expected if input.ndim > 1 else ()}, got {_shape(target)}"
        )
    classes = logits.shape[1]
    if logits.ndim > 2:  # (N, C, d1, ...) -> (N * d1 * ..., C)
        logits = logits.permute(0, *range(2, logits.ndim), 1).reshape(-1, classes)
    flat_targets = target.reshape(-1)
    ids = flat_targets.data
    bad = (ids != ignore_index) & ((ids < 0) | (ids >= classes))
    if bad.any():
        position = int(bad.nonzero()[0][0])
        raise IndexError(
            f"cross_entropy: target {int(ids[position])} at position {position} is outside [0, {classes}) "
            f"and is not ignore_index ({ignore_index})"
        )
    loss = CrossEntropyFunction.apply(
        logits, flat_targets, ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction
    )
    return loss.reshape(target.shape) if reduction == "none" else loss
