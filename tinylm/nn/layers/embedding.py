"""``Embedding``: a table of learnable vectors looked up by integer id."""

import numpy as np

from tinylm import backend
from tinylm.errors import refuse
from tinylm.nn import functional as F
from tinylm.nn import init
from tinylm.nn.layers.linear import new_parameter
from tinylm.nn.module import Module, Parameter
from tinylm.tensor import Tensor, _mark_changed


class Embedding(Module):
    """ids (any shape) -> (*ids.shape, embedding_dim); weight from N(0, 1) as PyTorch.

    With ``padding_idx``, that row starts at zero and never receives a gradient.
    With ``max_norm``, each row looked up whose ``norm_type``-norm exceeds
    ``max_norm`` is first scaled in place (outside the graph) to norm
    ``max_norm / (norm + 1e-7) * norm``, as PyTorch does: the table changes
    during the forward pass. ``scale_grad_by_freq`` and ``sparse`` gradients are
    refused (``NotInTinylmError``).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, sparse=False, _weight=None, _freeze=False, dtype=None, device=None):
        super().__init__()
        if padding_idx is not None and not -num_embeddings <= padding_idx < num_embeddings:
            raise ValueError(f"Embedding: padding_idx {padding_idx} is outside a table of {num_embeddings} rows")
        for name, value, why in (
            ("scale_grad_by_freq", scale_grad_by_freq, "gradients are not scaled by the ids' frequency"),
            ("sparse", sparse, "gradients are dense arrays"),
        ):
            if value:
                raise refuse(f"torch.nn.Embedding({name}=True)", f"{why}; leave {name} False")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = None if padding_idx is None else padding_idx % num_embeddings
        self.max_norm, self.norm_type = max_norm, norm_type
        if _weight is None:
            self.weight = new_parameter(num_embeddings, embedding_dim, dtype=dtype, device=device)
            self.weight.requires_grad = not _freeze
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(
                    f"Embedding: _weight has shape {tuple(_weight.shape)}, expected "
                    f"({num_embeddings}, {embedding_dim})"
                )
            self.weight = Parameter(_weight, requires_grad=not _freeze)  # shares the given tensor's memory

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, max_norm=None, norm_type=2.0,
                        scale_grad_by_freq=False, sparse=False):
        """An Embedding whose table is ``embeddings`` (a 2-d tensor or array, memory shared), trained
        only with ``freeze=False``. The ``padding_idx`` row is kept as given (not zeroed), as PyTorch."""
        if not isinstance(embeddings, Tensor):
            embeddings = Tensor(backend.array_module(embeddings).asarray(embeddings))
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-d, got shape {tuple(embeddings.shape)}")
        if embeddings.dtype.kind != "f":
            raise ValueError(f"Embedding.from_pretrained: embeddings must be floating-point, got {embeddings.dtype}")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx=padding_idx, max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse, _weight=embeddings, _freeze=freeze)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def _renorm(self, ids):
        """Scale the rows ``ids`` picks whose norm exceeds ``max_norm`` down to it, in place (PyTorch's
        ``embedding_renorm_``: factor ``max_norm / (norm + 1e-7)``), outside the graph."""
        F.check_embedding_ids(ids, self.weight)
        table = self.weight.data
        xp = backend.array_module(table)
        rows = xp.unique(ids.data.reshape(-1))
        picked = table[rows]
        if self.norm_type == np.inf:
            norms = xp.abs(picked).max(axis=1)
        else:
            norms = (xp.abs(picked) ** self.norm_type).sum(axis=1) ** (1.0 / self.norm_type)
        over = norms > self.max_norm
        if bool(over.any()):
            scale = (self.max_norm / (norms[over] + 1e-7)).astype(table.dtype)
            table[rows[over]] = picked[over] * scale[:, None]
            _mark_changed(table)

    def forward(self, ids):
        if self.max_norm is not None:
            self._renorm(ids)
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self):
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            text += f", max_norm={self.max_norm}"
            if self.norm_type != 2:
                text += f", norm_type={self.norm_type}"
        return text
