"""The gradient of a table lookup: each row gradient added into the table row its id picked.

    embedding_backward(g_rows (N, D), ids (N,), num_embeddings) -> grad (num_embeddings, D)
    grad[v] = the sum of g_rows[n] over every n with ids[n] == v (zeros where no id is v)

Two ops use it: ``EmbeddingFunction``'s backward, and the recurrent layers when
their first layer's input projection is computed once per table row
(``tinylm.ops.fused.recurrent``): there the rows are every token's gate
gradients, (3200, 1024) for the LSTM language model of
``benchmarks/compare.py``. At that shape the Numba loop here is many times as
fast as NumPy's fastest way, sorting the ids and summing each run with
``np.add.reduceat``. It makes one pass over the rows and adds each into its
table row, which stays in cache (65 x 1024 floats). A second thread, each
taking half of the columns, did not make it faster: the pass is bound by
reading the rows, 13 MB (measured: docs/performance.md, "Embedding
backward"). The NumPy reference is ``np.add.at``; the CUDA version adds every
element atomically (so the order of the additions, and the last bits of a
sum, may differ from run to run, as with PyTorch's).
"""

import numpy as np
from numba import cuda

from tinylm.backend import array_module

from ._common import check_float, elementwise_launch, jit


def _check(g_rows, ids, num_embeddings):
    check_float("embedding_backward", "g_rows", g_rows, ndim=2)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise TypeError(f"embedding_backward: ids must be a 1-d integer array, got {ids.dtype} of shape {ids.shape}")
    if ids.shape[0] != g_rows.shape[0]:
        raise ValueError(
            f"embedding_backward: ids has {ids.shape[0]} entries but g_rows has {g_rows.shape[0]} rows; expected one per row"
        )
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= num_embeddings):
        bad = ids[(ids < 0) | (ids >= num_embeddings)][0]
        raise IndexError(
            f"embedding_backward: id {int(bad)} is out of range for a table of {num_embeddings} rows "
            f"(expected 0 to {num_embeddings - 1})"
        )


def embedding_backward_reference(g_rows, ids, num_embeddings):
    """grad (num_embeddings, D) with ``grad[ids[n]] += g_rows[n]`` for every n."""
    _check(g_rows, ids, num_embeddings)
    grad = np.zeros((num_embeddings, g_rows.shape[1]), g_rows.dtype)
    np.add.at(grad, ids, g_rows)
    return grad


@jit
def _add_rows_at(grad, ids, g_rows):
    for n in range(ids.shape[0]):
        target, source = grad[ids[n]], g_rows[n]
        for j in range(source.shape[0]):
            target[j] += source[j]


def embedding_backward_numba(g_rows, ids, num_embeddings):
    """Numba version of :func:`embedding_backward_reference`: the rows added in order, serially."""
    _check(g_rows, ids, num_embeddings)
    grad = np.zeros((num_embeddings, g_rows.shape[1]), g_rows.dtype)
    if g_rows.size:
        _add_rows_at(grad, np.ascontiguousarray(ids), np.ascontiguousarray(g_rows))
    return grad


@cuda.jit
def _backward_cuda_kernel(g_rows, ids, grad):
    k = cuda.grid(1)
    width = g_rows.shape[1]
    if k < g_rows.shape[0] * width:
        n, j = k // width, k % width
        cuda.atomic.add(grad, (ids[n], j), g_rows[n, j])


def embedding_backward_cuda(g_rows, ids, num_embeddings):
    """CUDA version of :func:`embedding_backward_reference`: one thread per element, atomic adds."""
    _check(g_rows, ids, num_embeddings)
    xp = array_module(g_rows)
    grad = xp.zeros((num_embeddings, g_rows.shape[1]), g_rows.dtype)
    if g_rows.size:
        blocks, threads = elementwise_launch(g_rows.size)
        _backward_cuda_kernel[blocks, threads](xp.ascontiguousarray(g_rows), xp.ascontiguousarray(ids), grad)
    return grad
