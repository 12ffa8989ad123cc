"""Datasets and the loader that batches them, as ``torch.utils.data``.

A dataset is anything with ``len(dataset)`` and ``dataset[i]`` (a map-style
dataset, such as ``TensorDataset`` or a ``Dataset`` subclass), or an
``IterableDataset`` that yields its items. ``DataLoader`` draws the indices
(in order, or shuffled by a ``Generator``), fetches the items and puts each
batch together with ``collate_fn``: ``default_collate`` stacks tensors and
arrays along a new first dimension, makes numbers into a tensor, and goes
into tuples, lists and dicts field by field, as PyTorch's does.

What differs from PyTorch: items are loaded in the calling process
(``num_workers`` is accepted and ignored, so the batches are the same as
with workers); there are no samplers; a seeded shuffle is reproducible but
draws another order than PyTorch's for the same seed.
"""

import bisect
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from tinylm import ops, random
from tinylm.creation import tensor
from tinylm.tensor import Tensor

__all__ = [
    "Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset",
    "DataLoader", "default_collate", "default_convert", "random_split",
]  # fmt: skip


class Dataset:
    """A map-style dataset: a subclass gives ``__getitem__(index)`` (an item) and ``__len__``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A dataset of items that come one after another from ``__iter__`` (a stream): no indexing, no shuffling."""

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__()")


class TensorDataset(Dataset):
    """Item ``i`` is ``(tensors[0][i], tensors[1][i], ...)``: the tensors' rows, which must be as many in each."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: expected at least one tensor")
        sizes = [len(t) for t in tensors]
        if any(size != sizes[0] for size in sizes):
            raise ValueError(f"TensorDataset: the tensors' first dimensions differ ({sizes}); expected the same "
                             f"number of rows in each")  # fmt: skip
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return len(self.tensors[0])


class Subset(Dataset):
    """The items of ``dataset`` at ``indices``, in that order: item ``i`` is ``dataset[indices[i]]``."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, indices

    def __getitem__(self, index):
        if isinstance(index, (list, tuple)):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self):
        return len(self.indices)


class ConcatDataset(Dataset):
    """The items of several datasets one after the other."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: expected at least one dataset")
        if any(isinstance(d, IterableDataset) for d in self.datasets):
            raise TypeError("ConcatDataset: an IterableDataset has no indices to concatenate")
        self.cumulative_sizes = list(np.cumsum([len(d) for d in self.datasets]))

    def __len__(self):
        return int(self.cumulative_sizes[-1])

    def __getitem__(self, index):
        if index < 0:
            if -index > len(self):
                raise IndexError(f"ConcatDataset: index {index} is out of range for {len(self)} items")
            index += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        if which == len(self.datasets):
            raise IndexError(f"ConcatDataset: index {index} is out of range for {len(self)} items")
        start = 0 if which == 0 else int(self.cumulative_sizes[which - 1])
        return self.datasets[which][index - start]


def random_split(dataset, lengths, generator=None):
    """``Subset``s of ``dataset`` that share out its items at random, without overlap.

    ``lengths`` are the subsets' sizes, adding up to ``len(dataset)``, or
    fractions adding up to 1: each subset then gets ``floor(fraction * len)``
    items and the items left over go one each to the first subsets, as PyTorch
    does. The order is drawn from ``generator`` (a ``tinylm.Generator``), or from
    the generator that ``tinylm.manual_seed`` seeds.
    """
    lengths = list(lengths)
    total = len(dataset)
    if lengths and all(isinstance(n, float) or isinstance(n, np.floating) for n in lengths) and math.isclose(
        sum(lengths), 1
    ):
        if any(not 0 <= n <= 1 for n in lengths):
            raise ValueError(f"random_split: fractions must lie between 0 and 1, got {lengths}")
        counts = [int(math.floor(total * fraction)) for fraction in lengths]
        for i in range(total - sum(counts)):
            counts[i % len(counts)] += 1
        for i, count in enumerate(counts):
            if count == 0:
                warnings.warn(f"random_split: subset {i} has no items", stacklevel=2)
        lengths = counts
    if any(not isinstance(n, (int, np.integer)) or n < 0 for n in lengths) or sum(lengths) != total:
        raise ValueError(f"random_split: lengths {lengths} must be non-negative ints adding up to the dataset's "
                         f"{total} items, or fractions adding up to 1")  # fmt: skip
    order = random.generator(generator).permutation(total).tolist()
    ends = np.cumsum(lengths).tolist()
    return [Subset(dataset, order[end - length : end]) for end, length in zip(ends, lengths)]


def default_collate(batch):
    """One batch from a list of items, field by field, as PyTorch's ``default_collate``.

    - tensors: stacked along a new first dimension (``stack``; the shapes must agree);
    - NumPy arrays and NumPy numbers: stacked into a tensor of their dtype;
    - Python floats: a float64 tensor; ints: int64; bools: bool (as PyTorch);
    - strings and bytes: left as they are (the list of them);
    - dicts: a dict of the collated values of each key;
    - tuples and lists: collated position by position (the items must all be of one
      length), a list of the results (a named tuple stays one).

    ``batch`` of shape (batch, ...) in words: element ``i`` is item ``i``. TypeError for
    anything else (None, an object, an array of strings).
    """
    first = batch[0]
    if isinstance(first, Tensor):
        return ops.stack(list(batch))
    if isinstance(first, np.ndarray):
        if first.dtype.kind not in "biuf":
            raise TypeError(f"default_collate: got a NumPy array of dtype {first.dtype}; expected numbers or bools")
        return tensor(np.stack(batch))
    if isinstance(first, np.generic):
        return tensor(np.array(batch))
    if isinstance(first, float):
        return tensor(batch, dtype=np.float64)
    if isinstance(first, numbers.Integral):  # bool as well: a list of bools gives a bool tensor
        return tensor(batch)
    if isinstance(first, (str, bytes)):
        return batch
    if isinstance(first, Mapping):
        return {key: default_collate([item[key] for item in batch]) for key in first}
    if isinstance(first, tuple) and hasattr(first, "_fields"):  # a named tuple keeps its type
        return type(first)(*(default_collate(field) for field in zip(*batch)))
    if isinstance(first, Sequence):
        if any(len(item) != len(first) for item in batch):
            raise RuntimeError("default_collate: each item of the batch must hold as many elements as the first, "
                               f"got lengths {[len(item) for item in batch]}")  # fmt: skip
        return [default_collate(field) for field in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found "
                    f"{type(first).__name__}")  # fmt: skip


def default_convert(item):
    """One item as ``DataLoader(batch_size=None)`` gives it: NumPy arrays and numbers made tensors,
    tuples and lists gone into (a tuple becomes a list, as PyTorch's ``default_convert``), the rest
    as it is."""
    if isinstance(item, np.ndarray) and item.dtype.kind in "biuf":
        return tensor(item)
    if isinstance(item, np.generic) and item.dtype.kind in "biuf":
        return tensor(item)
    if isinstance(item, Mapping):
        return {key: default_convert(value) for key, value in item.items()}
    if isinstance(item, tuple) and hasattr(item, "_fields"):
        return type(item)(*(default_convert(value) for value in item))
    if isinstance(item, (tuple, list)):
        return [default_convert(value) for value in item]
    return item


class DataLoader:
    """Batches of a dataset's items, as ``torch.utils.data.DataLoader``.

    ``batch_size`` items per batch (``None``: the items one by one, each
    given to ``collate_fn`` alone, by default ``default_convert``); ``shuffle`` draws a new order each pass from
    ``generator`` (a ``tinylm.Generator``) or, without one, from the generator
    that ``tinylm.manual_seed`` seeds; ``drop_last`` drops a last, short batch;
    ``collate_fn`` puts a list of items together (``default_collate``).

    Accepted and ignored, as they change nothing here: ``num_workers`` (items
    load in this process), ``pin_memory``, ``persistent_workers``,
    ``prefetch_factor``, ``timeout``. Refused: ``sampler`` and
    ``batch_sampler`` (``NotInTinylmError``).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None,
                 persistent_workers=False, pin_memory_device=""):  # fmt: skip
        from tinylm import refuse

        for name, value in (("sampler", sampler), ("batch_sampler", batch_sampler)):
            if value is not None:
                raise refuse(f"torch.utils.data.DataLoader({name}=...)",
                             "there are no samplers; use shuffle=, a Subset, or a collate_fn")  # fmt: skip
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise ValueError(f"DataLoader: batch_size must be a positive int or None, got {batch_size!r}")
        if isinstance(dataset, IterableDataset) and shuffle:
            raise ValueError("DataLoader: an IterableDataset cannot be shuffled (it has no indices); "
                             "shuffle its stream itself")  # fmt: skip
        if batch_size is None and drop_last:
            raise ValueError("DataLoader: drop_last needs a batch_size")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        if collate_fn is None:
            collate_fn = default_collate if batch_size is not None else default_convert
        self.collate_fn = collate_fn
        self.generator, self.num_workers, self.worker_init_fn = generator, num_workers, worker_init_fn
        if generator is not None:
            random.generator(generator)  # a TypeError now for something that is not a Generator

    def __len__(self):
        """The number of batches in a pass (of items, with ``batch_size=None``)."""
        if isinstance(self.dataset, IterableDataset):
            raise TypeError("DataLoader: an IterableDataset has no length")
        if self.batch_size is None:
            return len(self.dataset)
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or not rest else full + 1

    def _order(self):
        """The dataset's indices for one pass: in order, or a new random order."""
        count = len(self.dataset)
        if not self.shuffle:
            return np.arange(count)
        return random.generator(self.generator).permutation(count)

    def _batch(self, indices):
        """The collated batch of the items at ``indices`` (an int array)."""
        if self.collate_fn is default_collate and type(self.dataset) is TensorDataset:
            # the rows at once, one indexing op per tensor: the same values as stacking row by row
            return [t[indices] for t in self.dataset.tensors]
        return self.collate_fn([self.dataset[int(i)] for i in indices])

    def __iter__(self):
        if isinstance(self.dataset, IterableDataset):
            yield from self._iterate_stream()
            return
        order = self._order()
        if self.batch_size is None:
            for i in order:
                yield self.collate_fn(self.dataset[int(i)])
            return
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            if self.drop_last and len(chosen) < self.batch_size:
                return
            yield self._batch(chosen)

    def _iterate_stream(self):
        """Batches of an ``IterableDataset``'s items, as they come."""
        if self.batch_size is None:
            yield from map(self.collate_fn, self.dataset)
            return
        items = []
        for item in self.dataset:
            items.append(item)
            if len(items) == self.batch_size:
                yield self.collate_fn(items)
                items = []
        if items and not self.drop_last:
            yield self.collate_fn(items)


# Well-known torch.utils.data names that tinylm does not have.
_NOT_HERE = {
    name: "there are no samplers; use DataLoader(shuffle=...), a Subset, or a collate_fn"
    for name in ("Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
                 "BatchSampler", "DistributedSampler")  # fmt: skip
}
_NOT_HERE.update(
    get_worker_info="items load in the calling process; there are no workers",
    ChainDataset="chain the streams in an IterableDataset of your own",
    StackDataset="zip the datasets in a Dataset of your own",
)


def __getattr__(name):
    """A well-known ``torch.utils.data`` name that tinylm has not: refused by name."""
    from tinylm import refuse

    if name in _NOT_HERE:
        raise refuse(f"torch.utils.data.{name}", _NOT_HERE[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
