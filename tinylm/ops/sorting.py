"""Sorting: sort, argsort and topk along one dimension.

The order is found on the arrays (it has no gradient); the values are then
picked with ``Gather``, whose backward sends each output's gradient back to the
element it came from. So ``sort`` and ``topk`` need no Function of their own.
"""

import numpy as np

from tinylm.backend import array_module
from tinylm.ops.common import normalize_dim
from tinylm.ops.indexing import Gather
from tinylm.ops.reduction import ValuesIndices
from tinylm.tensor import wrap


def _order(data, axis, descending):
    """Indices that sort ``data`` along ``axis``; stable, so equal elements keep their order.

    Descending: sort the reversed array ascending, map positions back, and
    reverse the result; equal elements then still come in their original order,
    and NaN (which NumPy sorts last) comes first, as PyTorch puts it.
    """
    xp = array_module(data)
    stable = {"kind": "stable"} if xp is np else {}  # CuPy's sort is always stable and takes no kind
    if not descending:
        return xp.argsort(data, axis=axis, **stable)
    n = data.shape[axis]
    flipped = xp.flip(data, axis=axis)
    return xp.flip(n - 1 - xp.argsort(flipped, axis=axis, **stable), axis=axis)


def sort(x, dim=-1, descending=False, stable=False):
    """``(values, indices)``: ``x`` sorted along ``dim``, and where each value came from.

    Always stable (``stable`` is accepted for PyTorch's signature).
    """
    if x.ndim == 0:
        return ValuesIndices(x, wrap(array_module(x.data).zeros((), dtype="int64")))
    axis = normalize_dim(dim, x.ndim, "sort")
    index = wrap(_order(x.data, axis, descending))
    return ValuesIndices(Gather.apply(x, index, dim=axis), index)


def argsort(x, dim=-1, descending=False, stable=False):
    """The indices that sort ``x`` along ``dim`` (``sort(...).indices``)."""
    if x.ndim == 0:
        return wrap(array_module(x.data).zeros((), dtype="int64"))
    return wrap(_order(x.data, normalize_dim(dim, x.ndim, "argsort"), descending))


def topk(x, k, dim=-1, largest=True, sorted=True):  # noqa: A002 (PyTorch's argument name)
    """``(values, indices)`` of the ``k`` largest (or smallest) elements along ``dim``.

    They come in order, largest first (smallest first when ``largest=False``),
    whatever ``sorted`` says; ties keep their original order.
    """
    axis = normalize_dim(dim, x.ndim, "topk")
    length = x.shape[axis] if x.ndim else 1
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= length:
        raise ValueError(
            f"topk: k={k!r} is out of range for dimension {axis} of size {length} "
            f"(tensor shape {tuple(x.shape)}); expected 0 <= k <= {length}"
        )
    if x.ndim == 0:
        return ValuesIndices(x, wrap(array_module(x.data).zeros((), dtype="int64")))
    order = _order(x.data, axis, descending=largest)
    index = wrap(order[(slice(None),) * axis + (slice(0, k),)])
    return ValuesIndices(Gather.apply(x, index, dim=axis), index)
