"""Encoding a text into token files, reading them back, and making batches of windows."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinylm
from tinylm.data import (
    BPETokenizer,
    BUNDLED_CORPUS,
    DataLoader,
    SlidingWindows,
    WordTokenizer,
    load_prepared,
    prepare,
    random_windows,
)
from tinylm.errors import DataError

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    return path


@pytest.mark.parametrize("kind, vocab_size", [("char", None), ("word", 50), ("bpe", 300)])
def test_prepare_writes_the_splits_and_reads_them_back(text_file, tmp_path, kind, vocab_size):
    prepared = prepare(text_file, tmp_path / "out", tokenizer=kind, vocab_size=vocab_size, val_fraction=0.1)
    split = int(len(TEXT) * 0.9)
    if kind != "word":  # word tokenization drops the spacing, so it cannot round-trip
        assert prepared.tokenizer.decode(list(prepared.train)) == TEXT[:split]
    assert list(prepared.train) == prepared.tokenizer.encode(TEXT[:split])
    assert list(prepared.val) == prepared.tokenizer.encode(TEXT[split:])
    assert isinstance(prepared.train, np.memmap) and prepared.train.dtype == np.uint16
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["vocab_size"] == prepared.tokenizer.vocab_size and meta["train_tokens"] == len(prepared.train)
    again = load_prepared(tmp_path / "out")
    np.testing.assert_array_equal(again.val, prepared.val)


def test_the_bundled_corpus_splits_as_nanogpt_does(tmp_path):
    prepared = prepare(BUNDLED_CORPUS, tmp_path)
    assert prepared.tokenizer.vocab_size == 65
    assert (len(prepared.train), len(prepared.val)) == (1_003_854, 111_540)


@pytest.mark.parametrize(
    "content, pattern",
    [(None, "does not exist"), ("", "is empty"), (b"\xff\xfe bad", "not UTF-8"), ("a", "too short")],
)
def test_prepare_rejects_bad_data_files(tmp_path, content, pattern):
    path = tmp_path / "data.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=pattern):
        prepare(path, tmp_path / "out")


@pytest.mark.parametrize(
    "kind, vocab_size, pattern",
    [
        ("word", 2, r"--vocab-size 2 is too small for the word tokenizer: expected at least 3 \(the special tokens"),
        ("word", 0, r"--vocab-size 0 is too small for the word tokenizer: expected at least 3"),
        ("bpe", 255, r"--vocab-size 255 is too small for the bpe tokenizer: expected at least 256 \(one token for each"),
        ("bpe", -1, r"--vocab-size -1 is too small .*at least 256"),
        ("bpe", 300.0, r"--vocab-size must be a whole number, got float 300\.0"),
    ],
)
def test_a_vocab_size_too_small_for_the_special_tokens_is_refused(text_file, tmp_path, kind, vocab_size, pattern):
    with pytest.raises(DataError, match=pattern):
        prepare(text_file, tmp_path / "out", tokenizer=kind, vocab_size=vocab_size)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_tokenizer_training_refuses_a_vocabulary_without_room_for_its_special_tokens():
    with pytest.raises(DataError, match=r"max_size 2 is too small .*expected at least 3 \(the 2 special tokens <pad>, <unk>"):
        WordTokenizer.train("a b", max_size=2)
    with pytest.raises(DataError, match=r"vocab_size 257 is too small .*at least 258 \(256 byte tokens \+ 2 special"):
        BPETokenizer.train("a b", 257, special_tokens=["<s>", "</s>"])
    assert WordTokenizer.train("a b a", max_size=3).tokens == ("<pad>", "<unk>", "a")
    assert BPETokenizer.train("a b", 258, special_tokens=["<s>", "</s>"]).vocab_size == 258


def test_a_truncated_token_file_is_detected(text_file, tmp_path):
    prepare(text_file, tmp_path / "out")
    train = tmp_path / "out" / "train.bin"
    train.write_bytes(train.read_bytes()[:-2])
    with pytest.raises(DataError, match="truncated or stale"):
        load_prepared(tmp_path / "out")
    with pytest.raises(DataError, match="prepare it first"):
        load_prepared(tmp_path / "nowhere")


def test_random_windows_are_input_and_next_token_target():
    data = np.arange(100, dtype=np.uint16)
    tinylm.manual_seed(0)
    x, y = random_windows(data, batch_size=5, block_size=8)
    assert x.shape == y.shape == (5, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(y.numpy(), x.numpy() + 1)
    assert (x.numpy()[:, 1:] == x.numpy()[:, :-1] + 1).all()


def test_random_windows_follow_the_seed():
    data = np.arange(1000, dtype=np.uint16)
    tinylm.manual_seed(4)
    first = random_windows(data, 3, 5)[0].numpy()
    tinylm.manual_seed(4)
    np.testing.assert_array_equal(random_windows(data, 3, 5)[0].numpy(), first)


def test_a_block_longer_than_the_data_is_an_error():
    with pytest.raises(DataError, match="block_size 10 needs at least 11 tokens, but the data has 10"):
        random_windows(np.arange(10), 2, 10)


@given(length=st.integers(2, 40), block=st.integers(1, 8), stride=st.integers(1, 5))
def test_sliding_windows_cover_the_ids_in_order(length, block, stride):
    ids = np.arange(length)
    if length <= block:
        with pytest.raises(DataError):
            SlidingWindows(ids, block, stride)
        return
    windows = SlidingWindows(ids, block, stride)
    starts = list(range(0, length - block, stride))
    assert len(windows) == len(starts)
    for i, start in enumerate(starts):
        x, y = windows[i]
        np.testing.assert_array_equal(x, ids[start : start + block])
        np.testing.assert_array_equal(y, ids[start + 1 : start + block + 1])


@given(count=st.integers(1, 30), batch=st.integers(1, 7), drop_last=st.booleans(), shuffle=st.booleans())
def test_data_loader_yields_every_item_once_per_pass(count, batch, drop_last, shuffle):
    windows = SlidingWindows(np.arange(count + 3), 3)
    loader = DataLoader(windows, batch_size=batch, shuffle=shuffle, drop_last=drop_last, seed=1)
    batches = list(loader)
    assert len(batches) == len(loader)
    firsts = [int(v) for x, _ in batches for v in x.numpy()[:, 0]]
    if drop_last:
        assert all(x.shape[0] == batch for x, _ in batches) and len(firsts) == (len(windows) // batch) * batch
    else:
        assert sorted(firsts) == list(range(len(windows)))
    if not shuffle:
        assert firsts == sorted(firsts)


def test_a_seeded_shuffle_is_reproducible_and_changes_each_pass():
    windows = SlidingWindows(np.arange(50), 2)
    first = DataLoader(windows, batch_size=50, shuffle=True, seed=3)
    second = DataLoader(windows, batch_size=50, shuffle=True, seed=3)
    a, b = next(iter(first))[0].numpy(), next(iter(second))[0].numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(next(iter(first))[0].numpy(), a)
