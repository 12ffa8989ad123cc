"""Layers as functions (``tinylm.nn.functional``, imported as ``F``), with PyTorch's signatures.

These check their arguments, so a wrong shape fails here with a message
naming the function and both shapes, then call one fused op from
``tinylm.ops.fused`` (or a primitive from ``tinylm.ops``).
"""

from tinylm import ops
from tinylm.ops.fused.dropout import DropoutFunction
from tinylm.ops.fused.embedding import EmbeddingFunction
from tinylm.ops.fused.linear import LinearFunction
from tinylm.tensor import Tensor

__all__ = [
    "linear", "embedding", "dropout",
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
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        got = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"embedding: ids must be an integer tensor, got {got}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-d (num_embeddings, dim), got shape {_shape(weight)}")
    size = weight.shape[0]
    ids = input.data
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= size):
        bad = ids[(ids < 0) | (ids >= size)].reshape(-1)[0]
        raise IndexError(f"embedding: id {int(bad)} is out of range for an embedding of size {size} (expected 0 to {size - 1})")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += size
    return EmbeddingFunction.apply(weight, input, padding_idx=padding_idx)


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

