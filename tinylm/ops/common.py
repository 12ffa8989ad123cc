"""Helpers shared by the ops: broadcasting, dimensions, scalars."""

import numpy as np

from tinylm import backend
from tinylm.tensor import Tensor, wrap


def reduce_to(grad, shape, dtype):
    """Sum ``grad`` over the axes broadcasting added or stretched, giving ``shape`` and ``dtype``.

    An input of shape ``shape`` broadcast to ``grad.shape`` contributed to every
    element along those axes, so its gradient is the sum over them.
    """
    if grad.shape == shape and grad.dtype == dtype:
        return grad
    if grad.shape != shape:
        lead = grad.ndim - len(shape)
        stretched = tuple(lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1)
        grad = grad.sum(axis=tuple(range(lead)) + stretched, keepdims=True).reshape(shape)
    if grad.dtype != dtype:
        grad = grad.astype(dtype)
    return grad


def can_broadcast(*shapes):
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        return False
    return True


def broadcast_error(op, *shapes):
    listed = " and ".join(str(tuple(s)) for s in shapes)
    return ValueError(f"{op}: shapes {listed} cannot be broadcast together")


def normalize_dim(dim, ndim, op):
    """A dimension index in ``[0, ndim)``; negative ones count from the end."""
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    low, high = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not low <= dim <= high:
        raise IndexError(
            f"{op}: dim {dim} is out of range for a tensor with {ndim} dimensions "
            f"(expected {low} to {high})"
        )
    return 0 if ndim == 0 else int(dim) % ndim


def normalize_dims(dim, ndim, op):
    """A tuple of dimension indices; ``None`` means all of them."""
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    axes = tuple(normalize_dim(d, ndim, op) for d in dims)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: dim {dim} names a dimension twice")
    return axes if ndim else ()


def normalize_shape(shape, op):
    """Accept ``f(2, 3)`` and ``f((2, 3))`` alike."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(n) for n in shape)


_NUMBER = (bool, int, float, np.bool_, np.integer, np.floating)


def constant_like(value, like, op):
    """A constant tensor of ``value`` (a number or a NumPy array) on ``like``'s device.

    As in PyTorch, a Python number does not change a tensor's dtype, except that
    a float mixed with an integer tensor gives the default float dtype.
    """
    if isinstance(value, np.ndarray) and not isinstance(value, np.generic):
        return wrap(backend.to_device(value, like.device))  # an array keeps its own dtype
    if not isinstance(value, _NUMBER):
        raise TypeError(f"{op}: expected a Tensor, an array or a number, got {type(value).__name__}")
    kind = like.data.dtype.kind
    if kind in "fc":
        dtype = like.data.dtype
    elif isinstance(value, (float, np.floating)):
        dtype = backend.DEFAULT_FLOAT
    elif isinstance(value, (bool, np.bool_)):
        dtype = like.data.dtype
    else:
        dtype = like.data.dtype if kind in "iu" else np.dtype(np.int64)
    return wrap(backend.array_module(like.data).asarray(value, dtype=dtype))


def promote_types(a, b):
    """PyTorch's ``promote_types``: the dtype two tensors of dtypes ``a`` and ``b`` compute in.

    The same as NumPy's except that an integer or boolean dtype meeting a
    floating one gives that floating dtype: int64 with float32 is float32 (NumPy
    says float64, to hold every int64 exactly; PyTorch keeps the float's width).
    """
    if a == b:
        return a
    float_a, float_b = a.kind in "fc", b.kind in "fc"
    if float_a != float_b:
        return a if float_a else b
    return np.promote_types(a, b)


def _combine(higher, lower):
    """A dtype of higher priority (a tensor with dimensions) meeting one of lower priority
    (a 0-d tensor): the lower one counts only if it is of a higher category
    (bool < integer < floating), as in PyTorch's ``result_type``."""
    if higher.kind in "fc" and not (lower.kind == "c" and higher.kind == "f"):
        return higher
    if higher.kind == "b" or lower.kind in "fc":
        return promote_types(higher, lower)
    return higher


def result_dtype(a, b):
    """The dtype PyTorch gives a binary op of tensors ``a`` and ``b``.

    Tensors with dimensions outrank 0-d tensors: ``float32[3] * float64[]`` is
    float32, and ``int32[3] + int64[]`` is int32, but ``int64[3] * float64[]``
    is float64, since a floating 0-d tensor still outranks an integer one.
    (Python numbers rank lowest of all; ``constant_like`` gives them their dtype.)
    """
    da, db = a.data.dtype, b.data.dtype
    if da == db:
        return da
    if (a.data.ndim == 0) == (b.data.ndim == 0):
        return promote_types(da, db)
    return _combine(db, da) if a.data.ndim == 0 else _combine(da, db)


def operands(a, b, op):
    """Two tensors of one dtype from two operands of which at least one is a tensor.

    The dtype is PyTorch's (``result_dtype``); an input converted to it gets its
    gradient back in its own dtype through the conversion.
    """
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            if a.data.dtype is b.data.dtype:
                return a, b
            dtype = result_dtype(a, b)
            return (a if a.data.dtype == dtype else a.to(dtype)), (b if b.data.dtype == dtype else b.to(dtype))
        if isinstance(b, np.ndarray) and not isinstance(b, np.generic):
            return operands(a, constant_like(b, a, op), op)  # an array counts as a tensor
        b = constant_like(b, a, op)
        if a.data.dtype != b.data.dtype:
            if a.data.dtype.kind not in "fc":
                a = a.to(b.data.dtype)  # int tensor with a float number: compute in float
        return a, b
    if not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected at least one Tensor, got {type(a).__name__} and {type(b).__name__}")
    b2, a = operands(b, a, op)
    return a, b2


def check_floating(tensor, op):
    if tensor.data.dtype.kind not in "fc":
        raise TypeError(f"{op}: expected a floating-point tensor, got {tensor.data.dtype}")
