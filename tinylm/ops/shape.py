"""Shape ops: reshape and its relatives, permute/transpose, expand, cat, stack, split.

None of these change values, so each backward only moves the gradient back
into the input's layout.
"""

import math

from tinylm.backend import array_module
from tinylm.ops.common import normalize_dim, normalize_shape, promote_types, reduce_to
from tinylm.tensor import Function


class Reshape(Function):
    def forward(self, x, shape):
        self.x_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.x_shape)


class Permute(Function):
    def forward(self, x, dims):
        self.dims = dims
        return x.transpose(dims)

    def backward(self, g):
        inverse = [0] * len(self.dims)
        for position, dim in enumerate(self.dims):
            inverse[dim] = position
        return g.transpose(inverse)


class Expand(Function):
    def forward(self, x, shape):
        self.x_shape, self.x_dtype = x.shape, x.dtype
        return array_module(x).broadcast_to(x, shape)

    def backward(self, g):
        return reduce_to(g, self.x_shape, self.x_dtype)


class Cat(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        self.dtypes = [a.dtype for a in arrays]
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, g):
        pieces, start = [], 0
        for size, dtype in zip(self.sizes, self.dtypes):
            index = (slice(None),) * self.axis + (slice(start, start + size),)
            pieces.append(g[index].astype(dtype, copy=False))
            start += size
        return tuple(pieces)


class Stack(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.dtypes = [a.dtype for a in arrays]
        return array_module(arrays[0]).stack(arrays, axis=axis)

    def backward(self, g):
        lead = (slice(None),) * self.axis
        return tuple(g[lead + (i,)].astype(dtype, copy=False) for i, dtype in enumerate(self.dtypes))


class Split(Function):
    """Several outputs: consecutive pieces of the input along one axis."""

    def forward(self, x, sizes, axis):
        self.sizes, self.axis, self.x_shape, self.x_dtype = sizes, axis, x.shape, x.dtype
        pieces, start = [], 0
        for size in sizes:
            pieces.append(x[(slice(None),) * axis + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    def backward(self, *grads):
        xp = array_module(next(g for g in grads if g is not None))
        filled = []
        for g, size in zip(grads, self.sizes):
            if g is None:
                shape = self.x_shape[: self.axis] + (size,) + self.x_shape[self.axis + 1 :]
                g = xp.zeros(shape, dtype=self.x_dtype)
            filled.append(g)
        return xp.concatenate(filled, axis=self.axis)


class Repeat(Function):
    """``x`` tiled ``repeats[i]`` times along dimension i (``numpy.tile``).

    Output element (r_0, j_0, r_1, j_1, ...) -- copy r_i, position j_i -- is
    x[j_0, j_1, ...], so dx is g viewed as (r_0, n_0, r_1, n_1, ...) summed
    over every copy axis r_i.
    """

    def forward(self, x, repeats):
        self.x_shape = x.shape
        self.padded = (1,) * (len(repeats) - x.ndim) + x.shape  # x with the new leading axes
        self.repeats = repeats
        return array_module(x).tile(x, repeats)

    def backward(self, g):
        interleaved = []
        for r, n in zip(self.repeats, self.padded):
            interleaved += [r, n]
        copies = tuple(range(0, 2 * len(self.repeats), 2))
        return g.reshape(interleaved).sum(axis=copies).reshape(self.x_shape)


# ----- public functions ------------------------------------------------------


def reshape(x, *shape):
    """The same elements in a new shape; one dimension may be -1 (inferred)."""
    shape = normalize_shape(shape, "reshape")
    known = math.prod(n for n in shape if n != -1)
    if shape.count(-1) > 1 or (
        x.data.size != known if -1 not in shape else (known == 0 or x.data.size % known)
    ):
        raise ValueError(
            f"reshape: cannot view a tensor of shape {tuple(x.shape)} ({x.data.size} elements) "
            f"as shape {shape}"
        )
    return Reshape.apply(x, shape=shape)


view = reshape


def permute(x, *dims):
    """Reorder the dimensions: output dimension i is input dimension ``dims[i]``."""
    dims = normalize_shape(dims, "permute")
    axes = tuple(normalize_dim(d, x.ndim, "permute") for d in dims)
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(
            f"permute: dims {dims} are not a permutation of the {x.ndim} dimensions of a tensor "
            f"of shape {tuple(x.shape)}"
        )
    return Permute.apply(x, dims=axes)


def transpose(x, dim0, dim1):
    """Swap two dimensions."""
    dims = list(range(x.ndim))
    a, b = normalize_dim(dim0, x.ndim, "transpose"), normalize_dim(dim1, x.ndim, "transpose")
    if x.ndim == 0:
        return x
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, dims=tuple(dims))


def expand(x, *sizes):
    """Broadcast to ``sizes`` without copying; -1 keeps a dimension's size."""
    sizes = normalize_shape(sizes, "expand")
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand a tensor of shape {tuple(x.shape)} to fewer dimensions {sizes}")
    shape = []
    for i, size in enumerate(sizes):
        current = x.shape[i - lead] if i >= lead else None
        if size == -1:
            if current is None:
                raise ValueError(f"expand: -1 is not allowed for the new leading dimension {i} in {sizes}")
            size = current
        elif current is not None and current != 1 and current != size:
            raise ValueError(
                f"expand: cannot expand dimension {i - lead} of size {current} to {size} "
                f"(tensor shape {tuple(x.shape)}, requested {sizes})"
            )
        shape.append(size)
    return Expand.apply(x, shape=tuple(shape))


def squeeze(x, dim=None):
    """Remove dimensions of size 1 (all of them, or only ``dim`` if it has size 1)."""
    if dim is None:
        shape = tuple(n for n in x.shape if n != 1)
    else:
        axes = dim if isinstance(dim, (tuple, list)) else (dim,)
        axes = {normalize_dim(d, x.ndim, "squeeze") for d in axes}
        shape = tuple(n for i, n in enumerate(x.shape) if not (i in axes and n == 1))
    return x if shape == x.shape else Reshape.apply(x, shape=shape)


def unsqueeze(x, dim):
    """Insert a dimension of size 1 at ``dim`` (in ``[-ndim-1, ndim]``)."""
    axis = normalize_dim(dim, x.ndim + 1, "unsqueeze")
    return Reshape.apply(x, shape=x.shape[:axis] + (1,) + x.shape[axis:])


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dimensions ``start_dim`` to ``end_dim`` (inclusive) into one."""
    if x.ndim == 0:
        return Reshape.apply(x, shape=(1,))
    start = normalize_dim(start_dim, x.ndim, "flatten")
    end = normalize_dim(end_dim, x.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    merged = math.prod(x.shape[start : end + 1])
    return Reshape.apply(x, shape=x.shape[:start] + (merged,) + x.shape[end + 1 :])


def _check_same_shapes(tensors, axis, op):
    if not tensors:
        raise ValueError(f"{op}: expected a non-empty sequence of tensors")
    first = tensors[0]
    for i, t in enumerate(tensors):
        same = t.ndim == first.ndim and all(
            a == b for d, (a, b) in enumerate(zip(t.shape, first.shape)) if d != axis
        )
        if not same:
            rule = "the same shape" if axis is None else f"the same shape except in dimension {axis}"
            raise ValueError(
                f"{op}: expected tensors of {rule}, but tensor 0 has shape {tuple(first.shape)} "
                f"and tensor {i} has shape {tuple(t.shape)}"
            )


def _promoted(tensors):
    """The tensors converted to the dtype they promote to together, as PyTorch's cat and stack do."""
    dtype = tensors[0].data.dtype
    for t in tensors:
        if t.data.dtype != dtype:
            dtype = promote_types(dtype, t.data.dtype)
    return [t if t.data.dtype == dtype else t.to(dtype) for t in tensors]


def cat(tensors, dim=0):
    """Join tensors along an existing dimension."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    if tensors[0].ndim == 0:
        raise ValueError("cat: zero-dimensional tensors cannot be concatenated; use stack")
    axis = normalize_dim(dim, tensors[0].ndim, "cat")
    _check_same_shapes(tensors, axis, "cat")
    return Cat.apply(*_promoted(tensors), axis=axis)


def stack(tensors, dim=0):
    """Join tensors of one shape along a new dimension."""
    tensors = list(tensors)
    _check_same_shapes(tensors, None, "stack")
    axis = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return Stack.apply(*_promoted(tensors), axis=axis)


def split(x, split_size_or_sections, dim=0):
    """Cut into pieces of ``split_size`` (the last may be smaller) or of the given section sizes."""
    axis = normalize_dim(dim, x.ndim, "split")
    length = x.shape[axis]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, length - start) for start in range(0, length, size)] or [0]
    else:
        sizes = [int(n) for n in split_size_or_sections]
        if sum(sizes) != length or any(n < 0 for n in sizes):
            raise ValueError(
                f"split: sections {sizes} must be non-negative and sum to {length}, the size of "
                f"dimension {axis} of a tensor of shape {tuple(x.shape)}"
            )
    return Split.apply(x, sizes=sizes, axis=axis)


def chunk(x, chunks, dim=0):
    """Cut into ``chunks`` pieces of equal size (the last may be smaller; there may be fewer)."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    axis = normalize_dim(dim, x.ndim, "chunk")
    return split(x, max(1, -(-x.shape[axis] // chunks)), axis)


def t(x):
    """The transpose of a matrix; a 0-d or 1-d tensor is returned as it is (``torch.t``)."""
    if x.ndim > 2:
        raise ValueError(f"t: expected a tensor with at most 2 dimensions, got shape {tuple(x.shape)}; use transpose")
    return x if x.ndim < 2 else Permute.apply(x, dims=(1, 0))


def repeat(x, *sizes):
    """Tile ``x``: ``sizes[i]`` copies along dimension i; extra leading sizes add new dimensions."""
    sizes = normalize_shape(sizes, "repeat")
    if len(sizes) < x.ndim:
        raise ValueError(
            f"repeat: {len(sizes)} repeat counts {sizes} given for a tensor with {x.ndim} dimensions; "
            "expected at least one per dimension"
        )
    if any(n < 0 for n in sizes):
        raise ValueError(f"repeat: repeat counts must be non-negative, got {sizes}")
    return Repeat.apply(x, repeats=sizes)
