"""Batches of token windows: nanoGPT's random windows, sliding windows, and a DataLoader over them.

A window of ``block_size + 1`` consecutive tokens gives one training example:
the first ``block_size`` tokens are the input, the last ``block_size`` the
targets (each target is the token after its input position).
"""

import numpy as np

from tinylm import random
from tinylm.creation import tensor
from tinylm.errors import DataError
from tinylm.random import Generator
from tinylm.tensor import Tensor
from tinylm.utils.data import DataLoader as _TorchDataLoader


def _check_long_enough(data, block_size, what="the data"):
    if block_size < 1:
        raise DataError(f"block_size must be at least 1, got {block_size}")
    if len(data) <= block_size:
        raise DataError(
            f"block_size {block_size} needs at least {block_size + 1} tokens, but {what} has {len(data)}"
        )


def random_windows(data, batch_size, block_size, device="cpu"):
    """``(x, y)``, two int64 tensors of shape (batch_size, block_size), from random places in ``data``.

    The starts come from tinylm's generator (``tinylm.manual_seed``), so a
    seeded run draws the same batches, and a resumed one continues them.
    """
    _check_long_enough(data, block_size)
    starts = random.generator().integers(0, len(data) - block_size, size=batch_size)
    windows = np.asarray(data[starts[:, None] + np.arange(block_size + 1)], dtype=np.int64)
    return tensor(windows[:, :-1], device=device), tensor(windows[:, 1:], device=device)


class SlidingWindows:
    """Every window of ``block_size + 1`` tokens, starting every ``stride`` tokens: item i is
    ``(ids[s : s + block_size], ids[s + 1 : s + block_size + 1])`` with ``s = i * stride``."""

    def __init__(self, ids, block_size, stride=1):
        self.ids = np.asarray(ids)
        _check_long_enough(self.ids, block_size)
        if stride < 1:
            raise DataError(f"stride must be at least 1, got {stride}")
        self.block_size, self.stride = block_size, stride

    def __len__(self):
        return (len(self.ids) - self.block_size - 1) // self.stride + 1

    def __getitem__(self, index):
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} of {len(self)}")
        start = (index % len(self)) * self.stride
        window = self.ids[start : start + self.block_size + 1].astype(np.int64)
        return window[:-1], window[1:]


class DataLoader(_TorchDataLoader):
    """``tinylm.utils.data.DataLoader`` (PyTorch's) with two conveniences for token windows.

    ``seed`` gives the loader a generator of its own for ``shuffle`` (without
    one, the order comes from tinylm's generator, or from ``generator=``);
    ``device`` is where the batches go. Over ``SlidingWindows`` a batch is
    ``[x, y]``, two int64 tensors of shape (batch_size, block_size).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, device="cpu", **options):
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        if seed is not None:
            options.setdefault("generator", Generator().manual_seed(seed))
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **options)
        self.device = device

    def __iter__(self):
        for batch in super().__iter__():
            yield batch.to(self.device) if isinstance(batch, Tensor) else [field.to(self.device) for field in batch]
