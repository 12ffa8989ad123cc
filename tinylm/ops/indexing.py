"""Indexing and selection: ``x[index]``, gather, masked_fill, where."""

import numpy as np

from tinylm import backend
from tinylm.backend import array_module
from tinylm.ops.common import broadcast_error, can_broadcast, normalize_dim, operands, reduce_to
from tinylm.tensor import Function, Tensor

_BASIC = (int, np.integer, slice, type(None), type(Ellipsis))
_ACCEPTED_INDICES = (
    "integers, slices, None, Ellipsis, integer or boolean tensors, arrays or lists, or a tuple of these"
)


def as_index(index, device=None, op="getitem"):
    """Turn an index that may hold tensors or lists into one NumPy/CuPy understands.

    Raises ``IndexError`` (as PyTorch does) for an index of any other kind: a float,
    a string, a float tensor or list, ...; the message names ``op`` and the index given.
    """
    if isinstance(index, tuple):
        return tuple(as_index(part, device, op) for part in index)
    if isinstance(index, _BASIC) or isinstance(index, np.bool_):  # bool is an int
        return index
    if isinstance(index, Tensor):
        array = index.data
    elif isinstance(index, list):
        array = _list_index(index, op)
    elif isinstance(index, np.ndarray) or type(index).__module__.split(".")[0] == "cupy":
        array = index
    else:
        raise IndexError(
            f"{op}: index {index!r:.60} ({type(index).__name__}) is not valid; expected {_ACCEPTED_INDICES}"
        )
    if array.dtype.kind not in "biu":
        raise IndexError(
            f"{op}: index {_shown(index)} holds {array.dtype} values, which cannot index; "
            f"expected {_ACCEPTED_INDICES}"
        )
    if device is not None:
        array = backend.to_device(array, device)
    return array


def _list_index(index, op):
    """A list index as an array: ``[]`` selects nothing (int64, not NumPy's float64)."""
    if not index:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.asarray(index)
    except ValueError:  # ragged nested lists
        raise IndexError(f"{op}: index {index!r:.60} is a ragged list; expected {_ACCEPTED_INDICES}") from None


def _shown(index):
    """An array-like index for a message: a list as written, a tensor or array by its shape."""
    if isinstance(index, list):
        return f"{index!r:.60}"
    return f"({type(index).__name__} of shape {tuple(index.shape)})"


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(part, _BASIC) and not isinstance(part, bool) for part in parts)


class GetItem(Function):
    """``x[index]``. Basic indexing (ints, slices) picks each element at most once; advanced
    indexing (integer arrays) may pick one several times, so its backward adds the
    gradients of repeats together (a scatter-add)."""

    def forward(self, x, index):
        self.x_shape, self.x_dtype, self.index = x.shape, x.dtype, index
        try:
            return x[index]
        except IndexError as error:
            raise IndexError(f"getitem: {error} (tensor shape {tuple(x.shape)})") from None

    def backward(self, g):
        grad = array_module(g).zeros(self.x_shape, dtype=self.x_dtype)
        if _is_basic(self.index):
            grad[self.index] = g
        else:
            backend.scatter_add(grad, self.index, g)
        return grad


class Gather(Function):
    """``out[i][j] = x[i][index[i][j]]`` along one axis (``torch.gather``)."""

    def forward(self, x, index, dim):
        self.x_shape, self.x_dtype, self.index, self.axis = x.shape, x.dtype, index, dim
        return array_module(x).take_along_axis(x, index, axis=dim)

    def backward(self, g, _index_grad=None):
        xp = array_module(g)
        grad = xp.zeros(self.x_shape, dtype=self.x_dtype)
        positions = list(xp.indices(self.index.shape, sparse=True))
        positions[self.axis] = self.index
        backend.scatter_add(grad, tuple(positions), g)
        return grad, None


class MaskedFill(Function):
    def forward(self, x, mask, value):
        self.mask = mask
        return array_module(x).where(mask, x.dtype.type(value), x)

    def backward(self, g, _mask_grad=None):
        return array_module(g).where(self.mask, g.dtype.type(0), g), None


class Where(Function):
    def forward(self, condition, a, b):
        self.condition = condition
        self.a_shape, self.a_dtype = a.shape, a.dtype
        self.b_shape, self.b_dtype = b.shape, b.dtype
        return array_module(a).where(condition, a, b)

    def backward(self, g):
        xp = array_module(g)
        zero = g.dtype.type(0)
        need_a, need_b = self.needs_input_grad[1:]
        ga = reduce_to(xp.where(self.condition, g, zero), self.a_shape, self.a_dtype) if need_a else None
        gb = reduce_to(xp.where(self.condition, zero, g), self.b_shape, self.b_dtype) if need_b else None
        return None, ga, gb


class Triangle(Function):
    """The upper (``triu``) or lower (``tril``) triangle of the last two dimensions, the rest zero.

    y = x * M for a fixed 0/1 mask M, so dx = g * M: the backward keeps the same
    triangle of the gradient, with no saved values.
    """

    def forward(self, x, diagonal, upper):
        self.diagonal, self.upper = diagonal, upper
        return self.keep(x)

    def keep(self, a):
        xp = array_module(a)
        return xp.triu(a, self.diagonal) if self.upper else xp.tril(a, self.diagonal)

    def backward(self, g):
        return self.keep(g)


class IndexSelect(Function):
    """``out = x.take(index, axis=dim)``: whole slices of ``x`` picked by a 1-d ``index``.

    A slice picked several times receives the sum of those gradients (a scatter-add).
    """

    def forward(self, x, index, axis):
        self.x_shape, self.x_dtype, self.index, self.axis = x.shape, x.dtype, index, axis
        return array_module(x).take(x, index, axis=axis)

    def backward(self, g, _index_grad=None):
        grad = array_module(g).zeros(self.x_shape, dtype=self.x_dtype)
        backend.scatter_add(grad, (slice(None),) * self.axis + (self.index,), g)
        return grad, None


# ----- public functions ------------------------------------------------------


def _triangle(x, diagonal, upper):
    op = "triu" if upper else "tril"
    if x.ndim < 2:
        raise ValueError(f"{op}: expected a tensor with at least 2 dimensions, got shape {tuple(x.shape)}")
    if not isinstance(diagonal, (int, np.integer)) or isinstance(diagonal, bool):
        raise TypeError(f"{op}: diagonal must be an int, got {type(diagonal).__name__}")
    return Triangle.apply(x, diagonal=int(diagonal), upper=upper)


def triu(x, diagonal=0):
    """Elements on and above diagonal ``diagonal`` of the last two dimensions (0: the main one,
    positive: above it, negative: below it); the others are zero."""
    return _triangle(x, diagonal, upper=True)


def tril(x, diagonal=0):
    """Elements on and below diagonal ``diagonal`` of the last two dimensions; the others are zero."""
    return _triangle(x, diagonal, upper=False)


def index_select(x, dim, index):
    """The slices of ``x`` along ``dim`` at the positions in ``index`` (a 1-d integer tensor)."""
    axis = normalize_dim(dim, x.ndim, "index_select")
    if not isinstance(index, Tensor) or index.data.dtype.kind not in "iu":
        got = index.data.dtype if isinstance(index, Tensor) else type(index).__name__
        raise TypeError(f"index_select: index must be an integer tensor, got {got}")
    if index.ndim > 1:
        raise ValueError(f"index_select: index must have at most 1 dimension, got shape {tuple(index.shape)}")
    if x.ndim == 0:
        raise ValueError("index_select: expected a tensor with at least 1 dimension, got a 0-d tensor")
    picks = backend.to_device(index.data.reshape(-1), x.device)
    length = x.shape[axis]
    if picks.size and (int(picks.min()) < 0 or int(picks.max()) >= length):
        raise IndexError(
            f"index_select: index out of range for dimension {axis} of size {length} "
            f"(tensor shape {tuple(x.shape)}); indices must be in [0, {length})"
        )
    return IndexSelect.apply(x, Tensor(picks), axis=axis)


def getitem(x, index):
    """``x[index]`` with ints, slices, None, Ellipsis, integer arrays and boolean masks."""
    return GetItem.apply(x, index=as_index(index, x.device))


def gather(x, dim, index):
    """Pick values along ``dim`` by ``index`` (an integer tensor with as many dims as ``x``)."""
    axis = normalize_dim(dim, x.ndim, "gather")
    if not isinstance(index, Tensor) or index.data.dtype.kind not in "iu":
        raise TypeError("gather: index must be an integer tensor")
    if index.ndim != x.ndim:
        raise ValueError(
            f"gather: index has {index.ndim} dimensions but the input has {x.ndim} "
            f"(input shape {tuple(x.shape)}, index shape {tuple(index.shape)})"
        )
    for d, (n_index, n_x) in enumerate(zip(index.shape, x.shape)):
        if d != axis and n_index > n_x:
            raise ValueError(
                f"gather: index shape {tuple(index.shape)} is larger than input shape "
                f"{tuple(x.shape)} in dimension {d}"
            )
    if index.shape != x.shape:  # torch.gather reads only the part of x that index spans
        x = getitem(x, tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(index.shape)))
    return Gather.apply(x, index, dim=axis)


def _boolean(mask, op):
    if not isinstance(mask, Tensor) or mask.data.dtype.kind != "b":
        got = mask.data.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{op}: the mask must be a boolean tensor, got {got}")


def masked_fill(x, mask, value):
    """``x`` with ``value`` wherever the boolean ``mask`` (broadcast to ``x``'s shape) is True."""
    _boolean(mask, "masked_fill")
    if not (can_broadcast(mask.shape, x.shape) and np.broadcast_shapes(mask.shape, x.shape) == x.shape):
        raise ValueError(
            f"masked_fill: mask of shape {tuple(mask.shape)} does not broadcast to the input's "
            f"shape {tuple(x.shape)}"
        )
    if isinstance(value, Tensor):
        value = value.item()
    return MaskedFill.apply(x, mask, value=value)


def where(condition, a, b):
    """Elementwise ``a if condition else b``, with broadcasting; ``a`` or ``b`` may be a number."""
    _boolean(condition, "where")
    a, b = operands(a, b, "where")
    if not can_broadcast(condition.shape, a.shape, b.shape):
        raise broadcast_error("where", condition.shape, a.shape, b.shape)
    return Where.apply(condition, a, b)
