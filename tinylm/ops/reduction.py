"""Reductions: sum, mean, max, min, and the index-returning argmax/argmin."""

from typing import NamedTuple

import numpy as np

from tinylm.backend import array_module
from tinylm.ops.common import check_floating, normalize_dim, normalize_dims
from tinylm.ops.indexing import Gather
from tinylm.ops.shape import squeeze
from tinylm.tensor import Function, Tensor, wrap


class ValuesIndices(NamedTuple):
    """What ``max(dim)`` and ``min(dim)`` return, as PyTorch's ``(values, indices)``."""

    values: Tensor
    indices: Tensor


def _kept_shape(shape, axes):
    """``shape`` with each reduced axis kept as size 1, as ``keepdims=True`` gives."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    def forward(self, x, axes, keepdim):
        self.x_shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, g):
        if not self.keepdim:
            g = g.reshape(_kept_shape(self.x_shape, self.axes))
        return array_module(g).broadcast_to(g, self.x_shape)


class Mean(Function):
    def forward(self, x, axes, keepdim):
        self.x_shape, self.axes, self.keepdim = x.shape, axes, keepdim
        self.count = 1
        for axis in axes:
            self.count *= x.shape[axis]
        with np.errstate(invalid="ignore"):  # the mean of nothing is NaN, as in PyTorch, silently
            return x.sum(axis=axes, keepdims=keepdim) / self.count

    def backward(self, g):
        xp = array_module(g)
        if self.count == 0:  # an empty input: nothing to pass a gradient to
            return xp.zeros(self.x_shape, dtype=g.dtype)
        if not self.keepdim:
            g = g.reshape(_kept_shape(self.x_shape, self.axes))
        return xp.broadcast_to(g / self.count, self.x_shape)


class Extreme(Function):
    """The largest (or smallest) element of the whole tensor.

    Where several elements tie for it, the gradient is shared equally among
    them, as PyTorch does for a full reduction.
    """

    def forward(self, x, largest):
        self.x = x
        self.out = x.max() if largest else x.min()
        return self.out

    def backward(self, g):
        ties = self.x == self.out
        return g * ties / int(ties.sum())


def _check_reducible(x, axes, op):
    for axis in axes or range(x.ndim):
        if x.shape[axis] == 0:
            raise ValueError(
                f"{op}: cannot reduce over dimension {axis} of size 0 (tensor shape {tuple(x.shape)})"
            )


def sum(x, dim=None, keepdim=False):  # noqa: A001 (the PyTorch name)
    """Sum over ``dim`` (an int, a tuple of ints, or None for all)."""
    return Sum.apply(x, axes=normalize_dims(dim, x.ndim, "sum"), keepdim=keepdim)


def mean(x, dim=None, keepdim=False):
    """Mean over ``dim`` (an int, a tuple of ints, or None for all) of a floating-point tensor."""
    check_floating(x, "mean")
    return Mean.apply(x, axes=normalize_dims(dim, x.ndim, "mean"), keepdim=keepdim)


def _extreme(x, dim, keepdim, largest):
    op = "max" if largest else "min"
    if dim is None:
        _check_reducible(x, None, op)
        return Extreme.apply(x, largest=largest)
    axis = normalize_dim(dim, x.ndim, op)
    if x.ndim == 0:
        return ValuesIndices(x, wrap(array_module(x.data).zeros((), dtype="int64")))
    _check_reducible(x, (axis,), op)
    find = x.data.argmax if largest else x.data.argmin
    index = wrap(find(axis=axis, keepdims=True))
    values = Gather.apply(x, index, dim=axis)
    if not keepdim:
        values, index = squeeze(values, axis), squeeze(index, axis)
    return ValuesIndices(values, index)


def max(x, dim=None, keepdim=False):  # noqa: A001 (the PyTorch name)
    """The largest element; with ``dim``, a ``(values, indices)`` pair along that dimension."""
    return _extreme(x, dim, keepdim, largest=True)


def min(x, dim=None, keepdim=False):  # noqa: A001 (the PyTorch name)
    """The smallest element; with ``dim``, a ``(values, indices)`` pair along that dimension."""
    return _extreme(x, dim, keepdim, largest=False)


def _arg_extreme(x, dim, keepdim, largest):
    op = "argmax" if largest else "argmin"
    find = x.data.argmax if largest else x.data.argmin
    if dim is None:
        _check_reducible(x, None, op)
        index = find()
        return wrap(index.reshape((1,) * x.ndim) if keepdim else array_module(x.data).asarray(index))
    axis = normalize_dim(dim, x.ndim, op)
    if x.ndim == 0:
        return wrap(array_module(x.data).zeros((), dtype="int64"))
    _check_reducible(x, (axis,), op)
    return wrap(find(axis=axis, keepdims=keepdim))


def argmax(x, dim=None, keepdim=False):
    """Index of the largest element (of the flattened tensor when ``dim`` is None)."""
    return _arg_extreme(x, dim, keepdim, largest=True)


def argmin(x, dim=None, keepdim=False):
    """Index of the smallest element (of the flattened tensor when ``dim`` is None)."""
    return _arg_extreme(x, dim, keepdim, largest=False)


def any(x):  # noqa: A001 (the PyTorch name)
    return wrap(array_module(x.data).asarray(x.data.any()))


def all(x):  # noqa: A001 (the PyTorch name)
    return wrap(array_module(x.data).asarray(x.data.all()))
