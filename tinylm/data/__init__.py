"""Data: tokenizers, encoding a text into token files, and batches of token windows."""

from tinylm.data.batches import DataLoader, SlidingWindows, random_windows
from tinylm.data.prepare import BUNDLED_CORPUS, Prepared, load_prepared, prepare, read_text, train_tokenizer
from tinylm.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, load_tokenizer

__all__ = [
    "BPETokenizer", "CharTokenizer", "WordTokenizer", "load_tokenizer",
    "prepare", "load_prepared", "Prepared", "read_text", "train_tokenizer", "BUNDLED_CORPUS",
    "random_windows", "SlidingWindows", "DataLoader",
]  # fmt: skip
