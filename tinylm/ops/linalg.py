"""Matrix products, with NumPy's ``matmul`` rules for 1-d operands and batch dimensions."""

import math

from tinylm.backend import array_module
from tinylm.ops.common import broadcast_error, can_broadcast, reduce_to
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
    return MatMul.apply(a, b)
