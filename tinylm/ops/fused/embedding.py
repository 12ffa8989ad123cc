"""Embedding lookup: rows of a weight table picked by integer ids."""

from tinylm import backend
from tinylm.backend import array_module
from tinylm.tensor import Function


class EmbeddingFunction(Function):
    """ids (any shape, integers in [0, num_embeddings)) with weight (num_embeddings, dim)
    -> (*ids.shape, dim).

    Backward: the row gradients are added into the rows they came from; an id
    that appears several times collects the sum. The row ``padding_idx`` (if
    any) gets no gradient, as in PyTorch.
    """

    def forward(self, weight, ids, padding_idx):
        self.ids, self.weight_shape, self.padding_idx = ids, weight.shape, padding_idx
        return weight[ids]

    def backward(self, g, _ids_grad=None):
        xp = array_module(g)
        grad = xp.zeros(self.weight_shape, dtype=g.dtype)
        backend.scatter_add_rows(grad, self.ids.reshape(-1), g.reshape(-1, self.weight_shape[1]))
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0
        return grad, None
