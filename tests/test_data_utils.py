"""tinylm.utils.data against torch.utils.data: the same batches (shapes, dtypes, values, order
without shuffling, counts with drop_last), collation of every kind of item, random_split's
lengths, and a seeded shuffle that tinylm's own seed reproduces."""

from collections import namedtuple

import numpy as np
import pytest

import tinylm
from tinylm.utils.data import (
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    default_collate,
    random_split,
)

Pair = namedtuple("Pair", "a b")


def _plain(value):
    """A batch as nested Python containers of NumPy arrays, whichever library made it (types named)."""
    if hasattr(value, "numpy"):
        array = value.detach().numpy() if hasattr(value, "detach") else value.numpy()
        return ("tensor", array.dtype.str, array.shape, array.tolist())
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return ("namedtuple", tuple(_plain(item) for item in value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_plain(item) for item in value])
    return value


ITEMS = {
    "arrays": lambda i: np.arange(3, dtype=np.float64) + i,
    "float32 arrays": lambda i: np.full((2, 2), i, dtype=np.float32),
    "ints": lambda i: i,
    "floats": lambda i: i / 2,
    "bools": lambda i: i % 2 == 0,
    "numpy numbers": lambda i: np.float32(i),
    "strings": lambda i: f"s{i}",
    "tuples": lambda i: (np.array([i, i + 1]), i, f"w{i}"),
    "lists": lambda i: [i, float(i)],
    "dicts": lambda i: {"x": np.array([i]), "y": i, "nested": {"z": [i, i]}},
    "named tuples": lambda i: Pair(i, np.float32(i)),
}


@pytest.mark.parity
@pytest.mark.parametrize("kind", ITEMS)
def test_default_collate_matches_torch(torch, kind):
    from torch.utils.data import default_collate as torch_collate

    items = [ITEMS[kind](i) for i in range(4)]
    assert _plain(default_collate(items)) == _plain(torch_collate(items))


@pytest.mark.parity
def test_default_collate_stacks_tensors_as_torch_does(torch):
    from torch.utils.data import default_collate as torch_collate

    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    ours = default_collate([(tinylm.tensor(r), tinylm.tensor(int(r[0]))) for r in rows])
    theirs = torch_collate([(torch.tensor(r), torch.tensor(int(r[0]))) for r in rows])
    assert _plain(ours) == _plain(theirs)


def test_default_collate_refuses_what_it_cannot_batch():
    with pytest.raises(TypeError, match="NoneType"):
        default_collate([None, None])
    with pytest.raises(TypeError, match="dtype"):
        default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(RuntimeError, match="as many elements"):
        default_collate([[1, 2], [3]])


def _tensor_datasets(torch, rows=10):
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    y = np.arange(rows, dtype=np.int64)
    return (TensorDataset(tinylm.tensor(x), tinylm.tensor(y)),
            torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)))  # fmt: skip


@pytest.mark.parity
@pytest.mark.parametrize("batch_size, drop_last", [(1, False), (3, False), (3, True), (5, True), (10, False),
                                                   (12, False), (12, True), (None, False)])  # fmt: skip
def test_data_loader_batches_match_torch_in_order(torch, batch_size, drop_last):
    ours, theirs = _tensor_datasets(torch)
    ours = DataLoader(ours, batch_size=batch_size, drop_last=drop_last)
    theirs = torch.utils.data.DataLoader(theirs, batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]


class Squares(Dataset):
    """A map-style dataset of dicts, as users write them."""

    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": np.array([i, i * i], dtype=np.float32), "label": i % 3}


@pytest.mark.parity
def test_a_dataset_of_ones_own_with_a_collate_fn_matches_torch(torch):
    theirs_dataset = type("TorchSquares", (torch.utils.data.Dataset,), dict(Squares.__dict__))()
    for collate_fn in (None, lambda items: [item["label"] for item in items]):
        ours = list(DataLoader(Squares(), batch_size=3, collate_fn=collate_fn))
        theirs = list(torch.utils.data.DataLoader(theirs_dataset, batch_size=3, collate_fn=collate_fn))
        assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]


def test_a_shuffle_covers_every_item_once_and_tinylms_seed_reproduces_it():
    dataset = TensorDataset(tinylm.arange(20))

    def one_pass(loader):
        return [int(v) for (batch,) in loader for v in batch.numpy()]

    tinylm.manual_seed(5)
    first = one_pass(DataLoader(dataset, batch_size=6, shuffle=True))
    tinylm.manual_seed(5)
    loader = DataLoader(dataset, batch_size=6, shuffle=True)
    again = one_pass(loader)
    assert sorted(first) == list(range(20)) and first == again != list(range(20))
    assert one_pass(loader) != first  # each pass draws a new order
    by_generator = [one_pass(DataLoader(dataset, 6, shuffle=True, generator=tinylm.Generator().manual_seed(2)))
                    for _ in range(2)]  # fmt: skip
    assert by_generator[0] == by_generator[1] and sorted(by_generator[0]) == list(range(20))


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore::UserWarning")  # both warn of empty subsets (checked at the end)
def test_random_split_lengths_match_torch(torch):
    for lengths in ([3, 7], [0.3, 0.3, 0.4], [0.5, 0.5], [0.33, 0.33, 0.34], [10], [0.1] * 10):
        for size in (10, 11, 3):
            if all(isinstance(n, int) for n in lengths) and sum(lengths) != size:
                continue
            ours, theirs = random_split(range(size), lengths), torch.utils.data.random_split(range(size), lengths)
            assert [len(s) for s in ours] == [len(s) for s in theirs], (lengths, size)
            assert sorted(x for subset in ours for x in subset) == list(range(size))
    with pytest.warns(UserWarning, match="subset 2 has no items"):  # 2 items in 4 parts: PyTorch warns too
        assert [len(s) for s in random_split(range(2), [0.25] * 4)] == [1, 1, 0, 0]


def test_random_split_is_reproducible_and_refuses_wrong_lengths():
    generator = tinylm.Generator().manual_seed(1)
    first = [list(s) for s in random_split(range(9), [4, 5], generator=generator)]
    assert first == [list(s) for s in random_split(range(9), [4, 5], generator=tinylm.Generator().manual_seed(1))]
    with pytest.raises(ValueError, match="adding up"):
        random_split(range(10), [3, 3])


def test_subset_concat_and_iterable_datasets():
    subset = Subset(list("abcdef"), [4, 0, 2])
    assert len(subset) == 3 and [subset[i] for i in range(3)] == ["e", "a", "c"]
    both = ConcatDataset([list("ab"), list("cde")])
    assert len(both) == 5 and [both[i] for i in range(5)] == list("abcde") and both[-1] == "e"
    with pytest.raises(IndexError):
        both[5]

    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(), shuffle=True)


def test_refused_options_and_names_say_they_are_not_in_tinylm():
    with pytest.raises(NotImplementedError, match="not in tinylm"):
        DataLoader([1, 2], sampler=[0, 1])
    with pytest.raises(AttributeError, match=r"torch\.utils\.data\.WeightedRandomSampler is not in tinylm"):
        tinylm.utils.data.WeightedRandomSampler
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        tinylm.utils.data.NoSuchThing
    assert list(DataLoader([1, 2, 3], batch_size=2, num_workers=2, pin_memory=True))[0].tolist() == [1, 2]


def test_the_token_window_loader_is_the_same_loader_with_a_device():
    from tinylm.data import DataLoader as WindowLoader
    from tinylm.data import SlidingWindows

    windows = SlidingWindows(np.arange(20), 4, stride=4)
    loader = WindowLoader(windows, batch_size=2, device=tinylm.device("cpu"))
    assert isinstance(loader, DataLoader)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (2, 4) and x.dtype == np.int64
    np.testing.assert_array_equal(y.numpy(), x.numpy() + 1)
