"""Positional encodings: fixed sinusoids ("Attention Is All You Need") or a learned table.

Both add a vector per position to a sequence of embeddings, ``x + P[offset :
offset + T]``, so attention, which is blind to order, can tell positions apart.
``offset`` is the position of the first element of ``x``: 0 for a whole
sequence, the number of positions already decoded (``KVCache.length``) when
decoding one token at a time. ``encodings(length, offset)`` gives the (length,
d_model) vectors themselves.

Layouts follow the transformer layers: ``x`` is (T, N, d_model), (N, T,
d_model) with ``batch_first=True``, or (T, d_model) for one sequence.
"""

import math

import numpy as np

from tinylm import backend
from tinylm.nn import functional as F
from tinylm.nn import init
from tinylm.nn.layers.linear import new_parameter
from tinylm.nn.module import Module
from tinylm.tensor import Tensor, wrap


def sinusoidal_table(max_len, d_model):
    """(max_len, d_model) float64: column 2i is sin(pos / 10000^(2i/d)), column 2i+1 its cos."""
    position = np.arange(max_len, dtype=np.float64)[:, None]
    frequency = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    angles = position * frequency  # (max_len, ceil(d/2))
    table = np.empty((max_len, d_model))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return table


class _Positional(Module):
    """What both encodings share: argument checks, layouts, dropout."""

    def __init__(self, d_model, max_len, dropout, batch_first):
        super().__init__()
        if d_model < 1 or max_len < 1:
            raise ValueError(
                f"{type(self).__name__}: d_model and max_len must be positive, got {d_model} and {max_len}"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{type(self).__name__}: dropout must be between 0 and 1, got {dropout}")
        self.d_model, self.max_len, self.dropout, self.batch_first = d_model, max_len, dropout, batch_first

    def _check_range(self, length, offset):
        if offset < 0 or offset + length > self.max_len:
            raise ValueError(
                f"{type(self).__name__}: positions {offset} to {offset + length - 1} are outside the "
                f"max_len={self.max_len} positions it encodes"
            )

    def encodings(self, length, offset=0):
        raise NotImplementedError

    def forward(self, x, offset=0):
        """``x + encodings`` (then dropout when training), for x shaped as the module's layout."""
        name = type(self).__name__
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(x).__name__}")
        if x.ndim not in (2, 3) or x.shape[-1] != self.d_model:
            layout = "(N, T, d_model)" if self.batch_first else "(T, N, d_model)"
            raise ValueError(
                f"{name}: expected input of shape {layout} or (T, d_model) with d_model={self.d_model}, "
                f"got {tuple(x.shape)}"
            )
        length = x.shape[1] if x.ndim == 3 and self.batch_first else x.shape[0]
        table = self.encodings(length, offset)
        if table.dtype != x.dtype:
            table = table.to(x.dtype)
        if x.ndim == 3 and not self.batch_first:
            table = table.unsqueeze(1)  # (T, 1, d): the same vector for every sequence of the batch
        return F.dropout(x + table, self.dropout, self.training)

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}, dropout={self.dropout}, batch_first={self.batch_first}"


class SinusoidalPositionalEncoding(_Positional):
    """Fixed encodings: ``P[pos, 2i] = sin(pos / 10000^(2i/d_model))``, ``P[pos, 2i+1] = cos(...)``.

    The (max_len, d_model) table is a non-persistent buffer ``pe``: it follows
    ``.to()`` but is not saved in the state dict (it is computed from the two
    sizes). Nothing here is learned.
    """

    def __init__(self, d_model, max_len=5000, dropout=0.0, batch_first=False, dtype=None, device=None):
        super().__init__(d_model, max_len, dropout, batch_first)
        dtype = backend.DEFAULT_FLOAT if dtype is None else np.dtype(dtype)
        device = backend.normalize_device(device)
        table = backend.to_device(sinusoidal_table(max_len, d_model).astype(dtype), device)
        self.register_buffer("pe", Tensor(table), persistent=False)

    def encodings(self, length, offset=0):
        """Positions ``offset .. offset + length - 1``: a (length, d_model) tensor (no gradient)."""
        self._check_range(length, offset)
        return wrap(self.pe.data[offset : offset + length])


class LearnedPositionalEmbedding(_Positional):
    """A learned vector per position: an embedding table ``weight`` (max_len, d_model), initialised
    from N(0, 1) as ``Embedding``, looked up at positions ``offset .. offset + T - 1``."""

    def __init__(self, d_model, max_len, dropout=0.0, batch_first=False, dtype=None, device=None):
        super().__init__(d_model, max_len, dropout, batch_first)
        self.weight = new_parameter(max_len, d_model, dtype=dtype, device=device)
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)

    def encodings(self, length, offset=0):
        """Positions ``offset .. offset + length - 1``: a (length, d_model) tensor; gradients reach ``weight``."""
        self._check_range(length, offset)
        xp = backend.array_module(self.weight.data)
        return F.embedding(wrap(xp.arange(offset, offset + length)), self.weight)
