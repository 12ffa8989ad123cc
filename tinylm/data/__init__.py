"""Data: tokenizers (and, later, datasets and loaders)."""

from tinylm.data.tokenizers import BPETokenizer, CharTokenizer, WordTokenizer, load_tokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "WordTokenizer", "load_tokenizer"]
