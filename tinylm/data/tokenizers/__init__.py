"""Tokenizers: text <-> lists of token ids.

- ``CharTokenizer``: one token per character (nanoGPT's shakespeare_char).
- ``WordTokenizer``: words and punctuation (Chinese and Japanese: characters),
  frequency-ranked, with ``<unk>``.
- ``BPETokenizer``: byte-level byte-pair encoding, as GPT-2, pre-splitting text by a
  named rule of ``SPLIT_RULES``.

Each has ``encode(text) -> list[int]``, ``decode(ids) -> str``, ``vocab_size``,
``save(path)`` and the classmethod ``load(path)``; ``load_tokenizer(path)``
loads any of them by the ``"type"`` recorded in the file.
"""

from tinylm.data.tokenizers.base import (
    TokenIdError,
    Tokenizer,
    TokenizerFileError,
    UnknownCharacterError,
    load_tokenizer,
    tokenizer_from_payload,
)
from tinylm.data.tokenizers.bpe import GPT2_SPLIT_PATTERN, SPLIT_RULES, BPETokenizer
from tinylm.data.tokenizers.char import CharTokenizer
from tinylm.data.tokenizers.word import CJK_CHARACTERS, WORD_PATTERN, WordTokenizer, join_tokens, join_words

__all__ = [
    "BPETokenizer",
    "CJK_CHARACTERS",
    "CharTokenizer",
    "GPT2_SPLIT_PATTERN",
    "SPLIT_RULES",
    "TokenIdError",
    "Tokenizer",
    "TokenizerFileError",
    "UnknownCharacterError",
    "WORD_PATTERN",
    "WordTokenizer",
    "join_tokens",
    "join_words",
    "load_tokenizer",
    "tokenizer_from_payload",
]
