"""Batches of token windows: nanoGPT's random windows, sliding windows, and a DataLoader.

A window of ``block_size + 1`` consecutive tokens gives one training example:
the first ``block_size`` tokens are the input, the last ``block_size`` the
targets (each target is the token after its input position).
"""

import numpy as np

from tinylm import random
from tinylm.creation import tensor
from tinylm.errors import DataError


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


class DataLoader:
    """Batches of a dataset's items, each field stacked into a tensor.

    ``dataset`` is anything with ``len`` and integer indexing whose items are
    tuples of arrays or numbers (such as ``SlidingWindows``). With ``shuffle``,
    each pass draws a new order from a generator seeded by ``seed`` (or, with no
    seed, by tinylm's generator); ``drop_last`` drops a final short batch.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, device="cpu"):
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.device = device
        self._order_rng = np.random.default_rng(seed) if seed is not None else None

    def __len__(self):
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self):
        order = np.arange(len(self.dataset))
        if self.shuffle:
            rng = self._order_rng if self._order_rng is not None else random.generator()
            order = rng.permutation(order)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            if self.drop_last and len(chosen) < self.batch_size:
                return
            items = [self.dataset[int(i)] for i in chosen]
            fields = items[0] if isinstance(items[0], tuple) else None
            if fields is None:
                yield tensor(np.stack([np.asarray(item) for item in items]), device=self.device)
            else:
                yield tuple(
                    tensor(np.stack([np.asarray(item[k]) for item in items]), device=self.device)
                    for k in range(len(fields))
                )
