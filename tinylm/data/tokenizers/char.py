"""Character-level tokenizer: one token per Unicode code point.

As in nanoGPT's shakespeare_char: the vocabulary is the sorted set of the
characters of a training text, and a character's id is its rank in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tinylm.data.tokenizers.base import Tokenizer, UnknownCharacterError, check_token_ids, get_field


class CharTokenizer(Tokenizer):
    """Maps each character of a fixed vocabulary to its index.

    Build one from a text with ``CharTokenizer.train(text)``; the constructor
    takes the vocabulary itself, character ``i`` getting id ``i``.

    Example::

        tok = CharTokenizer.train("hello world")
        tok.encode("hold")          # [3, 5, 4, 1]
        tok.decode([3, 5, 4, 1])    # 'hold'
    """

    type_name = "char"

    def __init__(self, chars: Sequence[str]):
        """``chars``: distinct single characters, in id order."""
        self._itos = tuple(chars)
        for char in self._itos:
            if not isinstance(char, str) or len(char) != 1:
                raise ValueError(f"a character vocabulary holds single characters, got {char!r}")
        self._stoi = {char: i for i, char in enumerate(self._itos)}
        if len(self._stoi) != len(self._itos):
            repeated = next(c for i, c in enumerate(self._itos) if self._stoi[c] != i)
            raise ValueError(
                f"a character vocabulary holds each character once, but {repeated!r} repeats "
                f"(to build a vocabulary from a text, use CharTokenizer.train(text))"
            )

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted set of ``text``'s characters."""
        if not text:
            raise ValueError("cannot build a character vocabulary from an empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def chars(self) -> tuple[str, ...]:
        """The vocabulary: ``chars[i]`` is the character of id ``i``."""
        return self._itos

    def token_to_id(self, char: str) -> int:
        """The id of ``char``; ``KeyError`` naming it if it is not in the vocabulary."""
        try:
            return self._stoi[char]
        except KeyError:
            raise KeyError(f"{char!r} is not in the vocabulary of {self.vocab_size} characters") from None

    def id_to_token(self, token_id: int) -> str:
        """The character of id ``token_id``."""
        return self._itos[check_token_ids([token_id], self.vocab_size)[0]]

    def encode(self, text: str) -> list[int]:
        """One id per character of ``text``.

        Raises:
            UnknownCharacterError (a ``ValueError``): a character of ``text`` is
                not in the vocabulary; the message names each such character
                and its first position.
        """
        stoi = self._stoi
        try:
            return [stoi[char] for char in text]
        except KeyError:
            unknown: dict[str, int] = {}
            for position, char in enumerate(text):
                if char not in stoi and char not in unknown:
                    unknown[char] = position
            raise UnknownCharacterError(unknown, self.vocab_size) from None

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``, concatenated; ``TokenIdError`` for an id out of range."""
        itos = self._itos
        return "".join([itos[i] for i in check_token_ids(ids, self.vocab_size)])

    def to_dict(self) -> dict[str, Any]:
        return {"chars": list(self._itos)}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> CharTokenizer:
        return cls(get_field(fields, "chars", list, "a list of characters"))
