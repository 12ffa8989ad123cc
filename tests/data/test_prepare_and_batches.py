"""Encoding a text into token files, reading them back, and making batches of windows."""

import importlib
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinylm
from tinylm.data import (
    BPETokenizer,
    BUNDLED_CORPUS,
    CharTokenizer,
    DataLoader,
    SlidingWindows,
    WordTokenizer,
    load_prepared,
    prepare,
    random_windows,
)
from tinylm.errors import DataError

# the module, which tinylm.data's function of the same name hides
prepare_module = importlib.import_module("tinylm.data.prepare")

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


@pytest.fixture
def prepared_dir(text_file, tmp_path):
    """A directory prepared with the character tokenizer (vocabulary of 27, uint16 ids)."""
    prepare(text_file, tmp_path / "out")
    return tmp_path / "out"


def _edit_meta(directory, **changes):
    meta = json.loads((directory / "meta.json").read_text())
    meta.update(changes)
    (directory / "meta.json").write_text(json.dumps(meta))


def test_a_tokenizer_that_does_not_match_the_token_files_is_refused(prepared_dir):
    CharTokenizer.train("abc").save(prepared_dir / "tokenizer.json")
    with pytest.raises(DataError, match=r"tokenizer.json has a vocabulary of 3 tokens but .*meta.json says 27"):
        load_prepared(prepared_dir)
    (prepared_dir / "tokenizer.json").unlink()
    with pytest.raises(DataError, match=r"tokenizer.json is missing"):
        load_prepared(prepared_dir)


@pytest.mark.parametrize(
    "changes, pattern",
    [
        ({"vocab_size": 70_000}, r"dtype uint16, which cannot hold the ids of a vocabulary of 70000 .*expected uint32"),
        ({"dtype": "float32"}, r"token dtype float32: expected one of uint16, uint32"),
        ({"vocab_size": "27"}, r"vocab_size '27': expected a positive whole number"),
        ({"vocab_size": None}, r"vocab_size None"),
        ({"dtype": "uint32"}, r"train.bin holds 549 tokens but meta.json says 1098"),
    ],
)
def test_metadata_that_does_not_match_the_token_files_is_refused(prepared_dir, changes, pattern):
    _edit_meta(prepared_dir, **changes)
    with pytest.raises(DataError, match=pattern):
        load_prepared(prepared_dir)


def test_a_token_file_of_an_odd_byte_length_is_refused(prepared_dir):
    val = prepared_dir / "val.bin"
    val.write_bytes(val.read_bytes() + b"\x00")
    with pytest.raises(DataError, match=r"val.bin is \d+ bytes, not a whole number of uint16 ids \(2 bytes each\)"):
        load_prepared(prepared_dir)


@pytest.mark.parametrize("name, position, bad_id", [("train", 0, 27), ("train", 1000, 65535), ("val", 7, 28)])
def test_an_id_beyond_the_vocabulary_is_refused_naming_file_id_and_position(prepared_dir, name, position, bad_id):
    path = prepared_dir / f"{name}.bin"
    ids = np.fromfile(path, dtype=np.uint16)
    ids[position] = bad_id
    ids[position + 3] = bad_id + 1 if bad_id < 65535 else 30  # a later bad id is not the one named
    ids.tofile(path)
    with pytest.raises(DataError, match=rf"{name}.bin holds token id {bad_id} at position {position}, .*0 <= id < 27"):
        load_prepared(prepared_dir)


def test_ids_are_checked_chunk_by_chunk(prepared_dir, monkeypatch):
    monkeypatch.setattr(prepare_module, "_CHECK_CHUNK", 100)
    load_prepared(prepared_dir)  # every chunk in range
    path = prepared_dir / "train.bin"
    ids = np.fromfile(path, dtype=np.uint16)
    ids[250] = 40
    ids.tofile(path)
    with pytest.raises(DataError, match=r"token id 40 at position 250,"):
        load_prepared(prepared_dir)


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
