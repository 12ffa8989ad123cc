"""Encode a text once into token files: ``train.bin``, ``val.bin``, ``tokenizer.json``, ``meta.json``.

As nanoGPT's ``prepare.py``: the first 90% of the text (by characters) is for
training, the last 10% for validation, each encoded separately and written as
raw little-endian unsigned integers (uint16 when the vocabulary fits, uint32
otherwise), read back memory-mapped, so a corpus larger than memory still works.
"""

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinylm.data.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, WordTokenizer, load_tokenizer
from tinylm.errors import DataError
from tinylm.files import write_atomically

TOKENIZERS = ("char", "word", "bpe")
DEFAULT_VOCAB_SIZE = {"word": 10_000, "bpe": 1_000}
BUNDLED_CORPUS = Path(__file__).resolve().parent / "corpora" / "tinyshakespeare.txt"


def read_text(path):
    """The UTF-8 text of ``path``; a missing, unreadable or empty file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"data file {path} is not UTF-8 text ({error})") from None
    if not text:
        raise DataError(f"data file {path} is empty")
    return text


def train_tokenizer(text, kind, vocab_size=None):
    """A tokenizer of ``kind`` ("char", "word" or "bpe") trained on ``text``.

    ``vocab_size`` (word and bpe; None for ``DEFAULT_VOCAB_SIZE``) is checked
    before any training: below the smallest vocabulary of ``kind`` (the special
    tokens and one word; the 256 bytes) it is a DataError naming both sizes.
    """
    if kind not in TOKENIZERS:
        raise DataError(f"unknown tokenizer {kind!r}: expected one of {', '.join(TOKENIZERS)}")
    if kind == "char":
        return CharTokenizer.train(text)
    size = DEFAULT_VOCAB_SIZE[kind] if vocab_size is None else vocab_size
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise DataError(f"--vocab-size must be a whole number, got {type(size).__name__} {size!r}")
    if kind == "word":
        smallest, what = WordTokenizer.min_vocab_size(), "the special tokens <pad>, <unk> and one word"
    else:
        smallest, what = BPETokenizer.min_vocab_size(), "one token for each of the 256 byte values"
    if size < smallest:
        raise DataError(
            f"--vocab-size {size} is too small for the {kind} tokenizer: expected at least {smallest} ({what})"
        )
    if kind == "word":
        return WordTokenizer.train(text, max_size=size)
    return BPETokenizer.train(text, size)


ID_DTYPES = (np.dtype(np.uint16), np.dtype(np.uint32))  # what token files may hold
_CHECK_CHUNK = 1 << 22  # ids read at a time when checking a token file against its vocabulary


def id_dtype(vocab_size):
    """The smallest of ``ID_DTYPES`` that holds every id of a vocabulary of ``vocab_size`` tokens."""
    return ID_DTYPES[0] if vocab_size <= 1 << 16 else ID_DTYPES[1]


@dataclass
class Prepared:
    """Token ids for training and validation (memory-mapped 1-d arrays) and their tokenizer."""

    train: np.ndarray
    val: np.ndarray
    tokenizer: Tokenizer
    meta: dict


def prepare(data, out_dir, tokenizer="char", vocab_size=None, val_fraction=0.1):
    """Encode the text file ``data`` into ``out_dir``; return the ``Prepared`` result."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    text = read_text(data)
    split = int(len(text) * (1 - val_fraction))
    train_text, val_text = text[:split], text[split:]
    if not train_text or not val_text:
        raise DataError(f"data file {data} ({len(text)} characters) is too short to split for validation")
    # a character vocabulary is read off the whole text (as nanoGPT), so the validation
    # part never holds an unknown character; learned vocabularies see the training part only
    tok = train_tokenizer(text if tokenizer == "char" else train_text, tokenizer, vocab_size)
    dtype = id_dtype(tok.vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, part in (("train", train_text), ("val", val_text)):
        ids = np.asarray(tok.encode(part), dtype=dtype)
        counts[name] = int(ids.size)
        write_atomically(out / f"{name}.bin", ids.tofile)
    tok.save(out / "tokenizer.json")
    meta = {
        "format": "tinylm-tokens",
        "version": 1,
        "source": str(Path(data).resolve()),
        "tokenizer": tokenizer,
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        "train_tokens": counts["train"],
        "val_tokens": counts["val"],
    }
    write_atomically(out / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
    return load_prepared(out)


def load_prepared(directory):
    """Open what ``prepare`` wrote: the token files memory-mapped, the tokenizer, the metadata.

    Everything is checked to belong together before training can start: the
    vocabulary size in ``meta.json`` is the tokenizer's, the id dtype can hold
    every id of it, each ``.bin`` file is a whole number of ids (as many as
    ``meta.json`` counts), and every id lies in ``[0, vocab_size)``. Any
    mismatch is a DataError naming the file (and the first bad id and its position).
    """
    directory = Path(directory)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{directory} holds no meta.json: prepare it first (tinylm prepare --data FILE --out DIR)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{meta_path} is not a tinylm token metadata file ({error})") from None
    vocab_size = meta.get("vocab_size")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise DataError(f"{meta_path} gives vocab_size {vocab_size!r}: expected a positive whole number")
    if dtype not in ID_DTYPES:
        raise DataError(
            f"{meta_path} gives the token dtype {dtype.name}: expected one of {', '.join(d.name for d in ID_DTYPES)}"
        )
    if vocab_size - 1 > np.iinfo(dtype).max:
        raise DataError(
            f"{meta_path} gives the token dtype {dtype.name}, which cannot hold the ids of a vocabulary of "
            f"{vocab_size} tokens: expected {id_dtype(vocab_size).name}"
        )
    tokenizer_path = directory / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise DataError(f"{tokenizer_path} is missing: prepare {directory} again")
    tokenizer = load_tokenizer(tokenizer_path)
    if tokenizer.vocab_size != vocab_size:
        raise DataError(
            f"{tokenizer_path} has a vocabulary of {tokenizer.vocab_size} tokens but {meta_path} says {vocab_size}: "
            f"the tokenizer is not the one these token files were encoded with"
        )
    parts = {}
    for name in ("train", "val"):
        path = directory / f"{name}.bin"
        if not path.is_file():
            raise DataError(f"{path} is missing")
        n_bytes = path.stat().st_size
        if n_bytes % dtype.itemsize:
            raise DataError(
                f"{path} is {n_bytes} bytes, not a whole number of {dtype.name} ids ({dtype.itemsize} bytes each): "
                f"the file is truncated or not a token file of this dtype"
            )
        size = n_bytes // dtype.itemsize
        expected = meta.get(f"{name}_tokens")
        if expected is not None and size != expected:
            raise DataError(f"{path} holds {size} tokens but meta.json says {expected}: the file is truncated or stale")
        parts[name] = np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)
        check_ids_in_vocabulary(parts[name], vocab_size, path)
    return Prepared(parts["train"], parts["val"], tokenizer, meta)


def check_ids_in_vocabulary(ids, vocab_size, source):
    """Raise a DataError naming ``source``, the first id of ``ids`` (a 1-d unsigned
    integer array, memory-mapped or not) that is ``>= vocab_size``, and its position."""
    # Every id is read, a chunk at a time: max() is one fast pass (a tenth of a millisecond
    # for a million uint16 ids) that makes no temporary array, where `ids >= vocab_size`
    # would make a boolean array as long as the file. Only a chunk whose maximum is out
    # of range is searched again to find the position, so a good file costs one pass.
    for start in range(0, len(ids), _CHECK_CHUNK):
        chunk = ids[start : start + _CHECK_CHUNK]
        if int(chunk.max()) >= vocab_size:
            offset = int(np.argmax(chunk >= vocab_size))
            raise DataError(
                f"{source} holds token id {int(chunk[offset])} at position {start + offset}, outside the "
                f"vocabulary of the tokenizer (expected 0 <= id < {vocab_size}): the token files were not "
                f"encoded with this tokenizer"
            )
