"""Embedding lookup: rows of a weight table picked by integer ids."""

from tinylm.kernels.registry import kernel_for
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
        rows, width = self.weight_shape
        grad = kernel_for("embedding_backward", g)(g.reshape(-1, width), self.ids.reshape(-1), rows)
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0
        return grad, None
