"""What every tokenizer shares: ids as list[int], id range checks, save/load
round trips and the errors of loading a missing, corrupt or wrong file."""

import json

import numpy as np
import pytest

from tinylm.data import BPETokenizer, CharTokenizer, WordTokenizer, load_tokenizer
from tinylm.data.tokenizers import TokenIdError, TokenizerFileError

TEXT = "Hello, world! Hello again; 床前明月光 😀 𠀀 e\u0301 <|endoftext|>\x00\r\n"

FACTORIES = {
    "char": lambda: CharTokenizer.train(TEXT),
    "word": lambda: WordTokenizer.train(
        TEXT, lowercase=True, special_tokens=("<pad>", "<unk>", "<eos>"), max_size=12
    ),
    "bpe": lambda: BPETokenizer.train(TEXT * 3, 256 + 20 + 1, special_tokens=["<|endoftext|>"]),
}


@pytest.fixture(params=sorted(FACTORIES))
def tokenizer(request):
    return FACTORIES[request.param]()


def test_encode_gives_a_list_of_python_ints_in_range(tokenizer):
    ids = tokenizer.encode(TEXT)
    assert isinstance(ids, list) and ids
    assert all(type(i) is int and 0 <= i < tokenizer.vocab_size for i in ids)
    assert len(tokenizer) == tokenizer.vocab_size


def test_decode_accepts_numpy_arrays(tokenizer):
    ids = tokenizer.encode(TEXT)
    assert tokenizer.decode(np.array(ids, dtype=np.int64)) == tokenizer.decode(ids)


@pytest.mark.parametrize("offset", [0, 7])
def test_decode_rejects_ids_at_or_past_vocab_size(tokenizer, offset):
    bad = tokenizer.vocab_size + offset
    with pytest.raises(TokenIdError, match=rf"token id {bad} at position 1 .*0 <= id < {tokenizer.vocab_size}"):
        tokenizer.decode([0, bad])


def test_decode_rejects_negative_ids_as_index_and_value_errors(tokenizer):
    with pytest.raises(IndexError, match="token id -1"):
        tokenizer.decode([-1])
    with pytest.raises(ValueError, match="token id -1"):
        tokenizer.decode([-1])


def test_decode_rejects_non_integer_ids(tokenizer):
    with pytest.raises(TypeError, match=r"integers, got 1\.0 \(float\) at position 1"):
        tokenizer.decode([0, 1.0])


def test_save_load_round_trip(tokenizer, tmp_path):
    path = tmp_path / "tok.json"
    tokenizer.save(path)
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed into place
    for loaded in (load_tokenizer(path), type(tokenizer).load(str(path))):
        assert type(loaded) is type(tokenizer)
        assert loaded.to_dict() == tokenizer.to_dict()
        assert loaded.encode(TEXT) == tokenizer.encode(TEXT)
    assert json.loads(path.read_text())["type"] == tokenizer.type_name


def test_load_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_tokenizer(path)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        BPETokenizer.load(path)


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"type": "bpe", "merges": [', "invalid JSON"),
        ("[1, 2]", 'expected a JSON object with a string "type"'),
        ('{"merges": []}', 'expected a JSON object with a string "type"'),
        ('{"type": "sentencepiece", "version": 1}', "unknown tokenizer type 'sentencepiece'"),
        ('{"type": "bpe", "version": 2}', "format version 2, expected version 1"),
        ('{"type": "bpe", "version": 1, "split": "gpt2"}', "missing field 'merges'"),
        (
            '{"type": "bpe", "version": 1, "split": "gpt2", "merges": [[1, 300]], "special_tokens": {}}',
            r"merge 0 \[1, 300\] uses a token id outside \[0, 256\)",
        ),
        (
            '{"type": "bpe", "version": 1, "split": "gpt2", "merges": [], "special_tokens": {"<s>": 5}}',
            r"expected \[256\]",
        ),
        ('{"type": "bpe", "version": 1, "pattern": "(", "merges": [], "special_tokens": {}}', "runs no regular"),
        ('{"type": "char", "version": 1, "chars": "abc"}', "field 'chars' must be a list"),
        ('{"type": "word", "version": 1, "words": [], "special_tokens": ["<pad>"], '
         '"unk_token": "<unk>", "lowercase": false}', "unk_token '<unk>'"),
    ],
)
def test_load_corrupt_file_names_file_and_expectation(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TokenizerFileError, match=match) as info:
        load_tokenizer(path)
    assert "bad.json" in str(info.value)


def test_load_binary_file_is_a_clear_error(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x81\xff\x00")
    with pytest.raises(TokenizerFileError, match="model.bin.*not UTF-8"):
        load_tokenizer(path)


def test_load_with_the_wrong_class_names_both_types(tmp_path):
    path = tmp_path / "char.json"
    CharTokenizer.train("abc").save(path)
    with pytest.raises(TokenizerFileError, match="holds a 'char' tokenizer, expected 'bpe'"):
        BPETokenizer.load(path)
