"""Matrix products, with NumPy's ``matmul`` rules for 1-d operands and batch dimensions."""

import math

import numpy as np

from tinylm.backend import array_module
from tinylm.ops.common import broadcast_error, can_broadcast, operands, promote_types, reduce_to
from tinylm.tensor import Function


class MatMul(Function):
    """``a @ b``: (..., M, K) @ (..., K, N) -> (..., M, N); a 1-d operand is a row or a column.

    The backward lifts 1-d operands to matrices, applies dA = dC @ B^T and
    dB = A^T @ dC, sums over broadcast batch dimensions, and drops the lifted axes.
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).matmul(a, b)

    def backward(self, g):
        a, b = self.a, self.b
        need_a, need_b = self.needs_input_grad
        if a.ndim == 1 and b.ndim == 1:  # a dot product: g is a scalar
            return (g * b if need_a else None), (g * a if need_b else None)
        a2 = a[None, :] if a.ndim == 1 else a  # (1, K): a row
        b2 = b[:, None] if b.ndim == 1 else b  # (K, 1): a column
        g2 = g
        if a.ndim == 1:
            g2 = g2[..., None, :]
        if b.ndim == 1:
            g2 = g2[..., None]
        ga = gb = None
        if need_a:
            ga = _grad_left(g2, a2, b2)
            ga = reduce_to(ga, a2.shape, a.dtype).reshape(a.shape)
        if need_b:
            gb = _grad_right(a2, b2, g2)
            gb = reduce_to(gb, b2.shape, b.dtype).reshape(b.shape)
        return ga, gb


def _grad_left(g, a, b):
    """dA = dC @ B^T, summed over the batch dimensions that ``a`` does not have."""
    xp = array_module(g)
    if a.ndim == 2 and b.ndim > 2:
        # A plain matrix against a batch: sum over the batch inside one product,
        # (M, batch*N) @ (batch*N, K), rather than a batch of products added up.
        m, k = a.shape
        rows = g.size // m if m else math.prod(b.shape[:-2]) * b.shape[-1]  # batch * N
        return xp.moveaxis(g, -2, 0).reshape(m, rows) @ xp.swapaxes(b, -1, -2).reshape(rows, k)
    return g @ xp.swapaxes(b, -1, -2)


def _grad_right(a, b, g):
    """dB = A^T @ dC, summed over the batch dimensions that ``b`` does not have."""
    if b.ndim == 2 and a.ndim > 2:
        # A batch of rows times a weight matrix (a linear layer): one (K, rows) @ (rows, N).
        k, n = b.shape
        rows = math.prod(a.shape[:-1])  # batch * M
        return a.reshape(rows, k).T @ g.reshape(rows, n)
    return array_module(g).swapaxes(a, -1, -2) @ g


def matmul(a, b):
    """Matrix product with broadcasting over leading (batch) dimensions."""
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands need at least one dimension, got shapes {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise ValueError(
            f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
            f"({inner_a} columns in the first, {inner_b} rows in the second)"
        )
    if not can_broadcast(a.shape[:-2], b.shape[:-2]):
        raise broadcast_error("matmul (batch dimensions)", a.shape[:-2], b.shape[:-2])
    if a.data.dtype is not b.data.dtype:
        a, b = operands(a, b, "matmul")  # PyTorch's promotion: int64 @ float32 is float32
    return MatMul.apply(a, b)


def bmm(a, b):
    """Batched matrix product: (B, M, K) @ (B, K, N) -> (B, M, N), with no broadcasting."""
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"bmm: expected two 3-d tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(
            f"bmm: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied "
            "(expected (B, M, K) and (B, K, N))"
        )
    return MatMul.apply(*operands(a, b, "bmm"))


# ----- einsum ----------------------------------------------------------------


class Einsum(Function):
    """y = einsum("s_1,...,s_n->s_out", x_1, ..., x_n): a sum of products over the letters not in s_out.

    y[s_out] = sum over the other letters of prod_k x_k[s_k], so, for operand i,

        dL/dx_i[s_i] = sum over the letters not in s_i of g[s_out] * prod_{k != i} x_k[s_k],

    which is itself an einsum: "s_out,s_1,..(without s_i)..,s_n->s_i" of g and the
    other operands. Two cases need more than that one einsum:

    - a letter of s_i found neither in s_out nor in another operand was summed by
      x_i alone: y does not depend on where along it an element sits, so the
      gradient is the same for each position (computed without that letter, then
      broadcast along it);
    - a letter repeated within s_i (a diagonal, as in "ii->i") reads only the
      elements where those indices agree: they get the einsum over the distinct
      letters, and every other element of x_i gets 0.

    An operand of size 1 along a letter that the others have longer (broadcast)
    gets its gradient summed over that axis.
    """

    def forward(self, *arrays, subscripts, output):
        self.arrays, self.subscripts, self.output = arrays, subscripts, output
        equation = ",".join(subscripts) + "->" + output
        return _einsum(equation, *arrays)

    def backward(self, g):
        return tuple(
            self._grad(i, g) if need else None for i, need in enumerate(self.needs_input_grad)
        )

    def _grad(self, i, g):
        xp = array_module(g)
        x, letters = self.arrays[i], self.subscripts[i]
        others = [k for k in range(len(self.arrays)) if k != i]
        present = set(self.output).union(*(self.subscripts[k] for k in others))
        distinct = "".join(dict.fromkeys(letters))  # letters of x_i, first appearance order
        reached = "".join(c for c in distinct if c in present)
        equation = ",".join([self.output] + [self.subscripts[k] for k in others]) + "->" + reached
        partial = _einsum(equation, g, *(self.arrays[k] for k in others))
        # sizes of x_i's own letters; then broadcast along the letters only x_i has
        size = {c: x.shape[d] for d, c in enumerate(letters)}
        partial = partial.reshape([partial.shape[reached.index(c)] if c in reached else 1 for c in distinct])
        for axis, c in enumerate(distinct):
            if partial.shape[axis] != size[c]:  # x_i was broadcast (size 1) along this letter
                partial = partial.sum(axis=axis, keepdims=True)
        partial = xp.broadcast_to(partial, [size[c] for c in distinct])
        if len(distinct) == len(letters):
            return partial.transpose([distinct.index(c) for c in letters]).astype(x.dtype, copy=False)
        # repeated letters: write partial onto the diagonal positions, zeros elsewhere
        grad = xp.zeros(x.shape, dtype=x.dtype)
        positions = []
        for c in letters:
            axis = distinct.index(c)
            shape = [1] * len(distinct)
            shape[axis] = size[c]
            positions.append(xp.arange(size[c]).reshape(shape))
        grad[tuple(positions)] = partial
        return grad


def _einsum(equation, *arrays):
    """NumPy's einsum, letting it pick the order of a product of three or more operands."""
    xp = array_module(arrays[0])
    if xp is np and len(arrays) > 2:
        return xp.einsum(equation, *arrays, optimize=True)
    return xp.einsum(equation, *arrays)


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _parse_einsum(equation, shapes):
    """Explicit subscripts for each operand and the output, with "..." spelled out as letters.

    Without "->" the output is, as in NumPy and PyTorch, the broadcast "..."
    dimensions followed by the letters used exactly once, in alphabetical order.
    """
    equation = equation.replace(" ", "")
    left, arrow, right = equation.partition("->")
    terms = left.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: equation {equation!r} has {len(terms)} operands, but {len(shapes)} were given")
    used = set(equation) - set(".,->")
    if not used <= set(_LETTERS):
        raise ValueError(f"einsum: equation {equation!r} holds characters other than letters, ',', '->' and '...'")
    spare = [c for c in _LETTERS if c not in used]
    ellipsis_dims = 0
    for term, shape in zip(terms, shapes):
        if "..." in term:
            ellipsis_dims = max(ellipsis_dims, len(shape) - (len(term) - 3))
    broadcast = "".join(spare[:ellipsis_dims])
    explicit = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            n = len(shape) - (len(term) - 3)
            term = term.replace("...", broadcast[ellipsis_dims - n :] if n else "")
        if len(term) != len(shape) or "." in term:
            raise ValueError(
                f"einsum: subscripts {term!r} do not fit an operand of shape {tuple(shape)} in {equation!r}"
            )
        explicit.append(term)
    if arrow:
        output = right.replace("...", broadcast)
        if "." in output:
            raise ValueError(f"einsum: the output of {equation!r} is not valid")
    else:
        counts = {}
        for c in "".join(explicit):
            counts[c] = counts.get(c, 0) + 1
        output = broadcast + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in broadcast))
    inputs_letters = set("".join(explicit))
    for c in output:
        if c not in inputs_letters or output.count(c) > 1:
            raise ValueError(f"einsum: output letter {c!r} of {equation!r} appears in no operand, or twice")
    return explicit, output


def einsum(equation, *operands_):
    """Einstein summation, as ``torch.einsum``: ``einsum("bij,bjk->bik", a, b)``.

    The operands may also be given as one list. Letters, "," and "->" as in
    NumPy; "..." stands for broadcast dimensions.
    """
    if len(operands_) == 1 and isinstance(operands_[0], (list, tuple)):
        operands_ = tuple(operands_[0])
    if not operands_:
        raise ValueError("einsum: expected at least one operand")
    tensors = list(operands_)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = promote_types(dtype, t.dtype)
    tensors = [t if t.dtype == dtype else t.to(dtype) for t in tensors]
    inputs, output = _parse_einsum(equation, [t.shape for t in tensors])
    return Einsum.apply(*tensors, subscripts=tuple(inputs), output=output)
