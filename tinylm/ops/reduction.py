"""Reductions: sum, mean, max, min, and the index-returning argmax/argmin."""

import builtins
from typing import NamedTuple

import numpy as np

from tinylm.backend import array_module
from tinylm.ops.common import check_floating, normalize_dim, normalize_dims
from tinylm.ops.elementwise import abs as absolute
from tinylm.ops.elementwise import sqrt
from tinylm.ops.indexing import Gather
from tinylm.ops.shape import permute, reshape, squeeze
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


class MaxMin(Function):
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


class Var(Function):
    """Variance over ``axes`` with ``correction`` (1: the unbiased estimate, 0: the population's).

    With d = x - mean(x) over the N reduced elements, y = sum(d^2) / (N - c).
    dy/dx_k = 2 d_k / (N - c): the mean's own dependence on x_k drops out, since
    sum(d) = 0. So dx = g * 2 d / (N - c), g broadcast back over the reduced axes.
    """

    def forward(self, x, axes, correction, keepdim):
        self.x_shape, self.axes, self.keepdim = x.shape, axes, keepdim
        count = 1
        for axis in axes:
            count *= x.shape[axis]
        denominator = x.dtype.type(builtins.max(0, count - correction))  # PyTorch's max(0, N - c)
        with np.errstate(invalid="ignore", divide="ignore"):  # N <= c gives inf or NaN, as in PyTorch
            self.d = x - x.sum(axis=axes, keepdims=True) / x.dtype.type(count)
            self.scale = x.dtype.type(2) / denominator
            return (self.d * self.d).sum(axis=axes, keepdims=keepdim) / denominator

    def backward(self, g):
        if not self.keepdim:
            g = g.reshape(_kept_shape(self.x_shape, self.axes))
        return g * self.scale * self.d


class Norm(Function):
    """The vector p-norm over ``axes``: y = (sum |x|^p)^(1/p), with p = inf giving max |x|.

    p = 2:   dx = g x / y (0 where y = 0, as PyTorch gives);
    p = 1:   dx = g sign(x);
    p = inf: dx = g sign(x) on the elements whose |x| equals y, shared equally among ties;
    other p: dx = g sign(x) |x|^(p-1) / y^(p-1).
    """

    def forward(self, x, p, axes, keepdim):
        xp = array_module(x)
        self.x, self.p, self.x_shape, self.axes, self.keepdim = x, p, x.shape, axes, keepdim
        magnitude = xp.abs(x)
        if p == 2:
            out = xp.sqrt((x * x).sum(axis=axes, keepdims=True))
        elif p == 1:
            out = magnitude.sum(axis=axes, keepdims=True)
        elif p == np.inf:
            kept = _kept_shape(x.shape, axes)
            out = magnitude.max(axis=axes, keepdims=True) if x.size else xp.zeros(kept, dtype=x.dtype)
        else:
            out = (magnitude**p).sum(axis=axes, keepdims=True) ** (1.0 / p)
        self.out = out  # kept with the reduced axes, for broadcasting in backward
        return out if keepdim else out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in axes))

    def backward(self, g):
        xp = array_module(g)
        if not self.keepdim:
            g = g.reshape(_kept_shape(self.x_shape, self.axes))
        x, y, p = self.x, self.out, self.p
        if p == 2:
            with np.errstate(invalid="ignore", divide="ignore"):
                return xp.where(y == 0, x.dtype.type(0), g * x / y)
        sign = xp.sign(x)
        if p == 1:
            return g * sign
        if p == np.inf:
            ties = xp.abs(x) == y
            count = ties.sum(axis=self.axes, keepdims=True)
            return g * sign * ties / xp.maximum(count, 1).astype(x.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            return xp.where(y == 0, x.dtype.type(0), g * sign * xp.abs(x) ** (p - 1) / y ** (p - 1))


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
        return MaxMin.apply(x, largest=largest)
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


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` (an int, a tuple, or None for all), with Bessel's correction by default.

    PyTorch's two spellings both work: ``unbiased=False`` (or True), and
    ``correction=0`` (or 1, or any number); a bool given as ``dim`` is ``unbiased``.
    """
    check_floating(x, "var")
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    elif unbiased is not None:
        raise ValueError("var: give unbiased or correction, not both")
    axes = normalize_dims(dim, x.ndim, "var")
    return Var.apply(x, axes=axes, correction=correction, keepdim=keepdim)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Standard deviation: the square root of ``var`` with the same arguments."""
    check_floating(x, "std")
    return sqrt(var(x, dim, unbiased, keepdim, correction=correction))


def norm(x, p="fro", dim=None, keepdim=False, dtype=None):
    """The vector p-norm over ``dim`` (all elements when None): p = 2 or "fro" (the default),
    1, inf, -inf, 0 (the count of non-zeros), or any other positive number."""
    check_floating(x, "norm")
    if dtype is not None:
        x = x.to(dtype)
    if p == "fro":
        p = 2
    if isinstance(p, str) or isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"norm: p={p!r} is not supported; expected 'fro' or a number (nuclear norms are not in tinylm)"
        )
    axes = normalize_dims(dim, x.ndim, "norm")
    p = float(p)
    if p == -np.inf:
        return _min_over(absolute(x), axes, keepdim)
    if p == 0:
        xp = array_module(x.data)
        count = (x.data != 0).sum(axis=axes, keepdims=keepdim).astype(x.dtype)
        return wrap(xp.asarray(count))
    if p < 0:
        raise ValueError(f"norm: p={p} is not supported; expected p > 0, inf or -inf")
    return Norm.apply(x, p=p, axes=axes, keepdim=keepdim)


def _min_over(x, axes, keepdim):
    """The smallest element over several axes (or all), as one tensor."""
    rest = [i for i in range(x.ndim) if i not in axes]
    moved = permute(x, *rest, *axes) if x.ndim else x
    flat = reshape(moved, *[x.shape[i] for i in rest], -1)
    values = min(flat, -1).values
    if keepdim:
        values = reshape(values, *[1 if i in axes else n for i, n in enumerate(x.shape)])
    return values
