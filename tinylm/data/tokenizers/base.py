"""What every tokenizer shares: the interface, the errors, the JSON file format.

A tokenizer maps a ``str`` to a ``list[int]`` of token ids in
``[0, vocab_size)`` and back. Each one saves itself as one JSON object::

    {"type": "<char|word|bpe>", "version": 1, ...fields of that type...}

``load_tokenizer(path)`` reads the ``"type"`` field and builds the right class;
``SomeTokenizer.load(path)`` insists on its own type.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tinylm.files import write_atomically

PathLike = str | os.PathLike
T = TypeVar("T", bound="Tokenizer")


class TokenIdError(ValueError, IndexError):
    """A token id outside ``[0, vocab_size)`` was given to ``decode``.

    It is both a ``ValueError`` and an ``IndexError`` so that either ``except``
    clause a caller might reach for catches it.
    """


class UnknownCharacterError(ValueError):
    """A text holds characters a character-level vocabulary has no id for.

    Attributes:
        unknown: each unknown character mapped to the position of its first
            occurrence in the text, in order of appearance.
        vocab_size: the size of the vocabulary that lacked them.
    """

    MAX_LISTED = 5  # characters named in the message; the count covers the rest

    def __init__(self, unknown: dict[str, int], vocab_size: int):
        self.unknown = unknown
        self.vocab_size = vocab_size
        listed = ", ".join(
            f"{char!r} at position {pos}" for char, pos in list(unknown.items())[: self.MAX_LISTED]
        )
        more = len(unknown) - self.MAX_LISTED
        if more > 0:
            listed += f" and {more} more"
        noun = "character" if len(unknown) == 1 else "distinct characters"
        super().__init__(
            f"text contains {len(unknown)} {noun} outside the vocabulary "
            f"of {vocab_size} characters: {listed}"
        )


class TokenizerFileError(ValueError):
    """A tokenizer file exists but does not hold what was expected."""


class Tokenizer(ABC):
    """Base class: ``encode``/``decode``, ``vocab_size``, JSON ``save``/``load``.

    A subclass sets ``type_name`` (the ``"type"`` written to its files), which
    registers it with ``load_tokenizer``, and implements ``to_dict`` /
    ``from_dict`` for the fields specific to it.
    """

    type_name: ClassVar[str]
    format_version: ClassVar[int] = 1
    _registry: ClassVar[dict[str, type[Tokenizer]]] = {}

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__:
            Tokenizer._registry[cls.type_name] = cls

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct token ids; every id lies in ``[0, vocab_size)``."""

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Text -> token ids, a ``list[int]`` of length ``n_tokens``."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Token ids (any iterable of integers, e.g. a 1-D NumPy array) -> text."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready fields that rebuild this tokenizer (no type/version)."""

    @classmethod
    @abstractmethod
    def from_dict(cls: type[T], fields: dict[str, Any]) -> T:
        """Rebuild from ``to_dict()``'s output; raise ``ValueError`` on bad fields."""

    def save(self, path: PathLike) -> None:
        """Write this tokenizer to ``path`` as JSON.

        The file is written under a temporary name and renamed into place, so an
        interrupted save never leaves a half-written tokenizer behind.
        """
        # ensure_ascii keeps any character (even a lone surrogate) writable.
        text = json.dumps(self.to_payload(), ensure_ascii=True) + "\n"
        write_atomically(path, lambda temporary: temporary.write_text(text, encoding="ascii"))

    def to_payload(self) -> dict[str, Any]:
        """Everything a tokenizer file holds (type, version and fields), as a JSON-ready dict."""
        return {"type": self.type_name, "version": self.format_version, **self.to_dict()}

    @classmethod
    def load(cls: type[T], path: PathLike) -> T:
        """Read a tokenizer of this class from a JSON file written by ``save``.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            TokenizerFileError: the file is not JSON, holds another tokenizer
                type or version, or has malformed fields.
        """
        payload = _read_payload(path)
        if payload["type"] != cls.type_name:
            raise TokenizerFileError(
                f"{path} holds a {payload['type']!r} tokenizer, expected {cls.type_name!r} "
                f"(load_tokenizer() loads any type)"
            )
        return cls._from_payload(payload, path)

    @classmethod
    def _from_payload(cls: type[T], payload: dict[str, Any], path: PathLike) -> T:
        if payload["version"] != cls.format_version:
            raise TokenizerFileError(
                f"{path} is a {cls.type_name!r} tokenizer file of format version "
                f"{payload['version']!r}, expected version {cls.format_version}"
            )
        fields = {k: v for k, v in payload.items() if k not in ("type", "version")}
        try:
            return cls.from_dict(fields)
        except (ValueError, TypeError, KeyError) as err:
            raise TokenizerFileError(f"{path} is not a valid {cls.type_name!r} tokenizer: {err}") from err


def load_tokenizer(path: PathLike) -> Tokenizer:
    """Load any tokenizer saved with ``save``, choosing the class by its ``"type"``."""
    return tokenizer_from_payload(_read_payload(path), path)


def tokenizer_from_payload(payload: dict[str, Any], source: PathLike) -> Tokenizer:
    """Rebuild any tokenizer from ``to_payload()``'s dict (as kept in a checkpoint);
    ``source`` names where it came from in error messages."""
    if not isinstance(payload, dict) or "type" not in payload or "version" not in payload:
        raise TokenizerFileError(f"{source} holds no tokenizer (expected a dict with 'type' and 'version')")
    cls = Tokenizer._registry.get(payload["type"])
    if cls is None:
        raise TokenizerFileError(
            f"{source} holds an unknown tokenizer type {payload['type']!r}, "
            f"expected one of {sorted(Tokenizer._registry)}"
        )
    return cls._from_payload(payload, source)


def _read_payload(path: PathLike) -> dict[str, Any]:
    """The parsed JSON object of a tokenizer file, with its "type" and "version" checked present."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer file {path} does not exist")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise TokenizerFileError(f"{path} is not a tokenizer file: it is not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise TokenizerFileError(f"{path} is not a tokenizer file: invalid JSON ({err})") from err
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str) or "version" not in payload:
        raise TokenizerFileError(
            f"{path} is not a tokenizer file: expected a JSON object with a string \"type\" "
            f"(one of {sorted(Tokenizer._registry)}) and a \"version\""
        )
    return payload


def check_token_ids(ids: Iterable[int], vocab_size: int) -> list[int]:
    """``ids`` as a list of Python ints, each checked to lie in ``[0, vocab_size)``.

    Accepts any iterable of integers (NumPy integer scalars included); a float
    or other non-integer raises ``TypeError``, an id out of range ``TokenIdError``.
    """
    ids = list(ids)
    try:
        checked = [operator.index(i) for i in ids]
    except TypeError:
        position, bad = next((p, i) for p, i in enumerate(ids) if not _is_integer(i))
        raise TypeError(
            f"token ids must be integers, got {bad!r} ({type(bad).__name__}) at position {position}"
        ) from None
    if checked and (min(checked) < 0 or max(checked) >= vocab_size):
        position, bad = next((p, i) for p, i in enumerate(checked) if not 0 <= i < vocab_size)
        raise TokenIdError(
            f"token id {bad} at position {position} is outside the vocabulary: "
            f"expected 0 <= id < {vocab_size}"
        )
    return checked


def _is_integer(value: object) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


# ---- special tokens embedded in text ------------------------------------------------


def resolve_allowed_special(
    allowed_special: str | Collection[str], special_tokens: Collection[str]
) -> frozenset[str]:
    """The special tokens that ``encode`` should recognise in the text.

    ``allowed_special`` is ``"none"`` (the default everywhere: special-token
    strings in the text are ordinary text), ``"all"``, or a collection of
    declared special tokens.
    """
    if isinstance(allowed_special, str):
        if allowed_special == "none":
            return frozenset()
        if allowed_special == "all":
            return frozenset(special_tokens)
        raise ValueError(
            f"allowed_special must be 'all', 'none' or a collection of special tokens, "
            f"got the string {allowed_special!r} (wrap a single token in a set: {{{allowed_special!r}}})"
        )
    allowed = frozenset(allowed_special)
    undeclared = allowed - set(special_tokens)
    if undeclared:
        raise ValueError(
            f"allowed_special names {sorted(undeclared)}, which are not special tokens of this "
            f"tokenizer; expected a subset of {sorted(special_tokens)}"
        )
    return allowed


def split_on_special(text: str, specials: frozenset[str]) -> list[str]:
    """Split ``text`` around occurrences of ``specials``.

    Returns ``[text_0, special_1, text_1, special_2, ...]``: odd positions hold
    special tokens, even positions the (possibly empty) text between them.
    Where two specials overlap, the longer wins.
    """
    if not specials:
        return [text]
    return _special_regex(tuple(sorted(specials))).split(text)


@functools.lru_cache(maxsize=64)
def _special_regex(specials: tuple[str, ...]) -> re.Pattern[str]:
    longest_first = sorted(specials, key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, longest_first)) + ")")


def check_special_tokens(special_tokens: Iterable[str]) -> tuple[str, ...]:
    """``special_tokens`` as a tuple, checked to be distinct non-empty strings."""
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a sequence of strings, got the string {special_tokens!r}")
    tokens = tuple(special_tokens)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise ValueError(f"special tokens must be non-empty strings, got {token!r}")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"special tokens must be distinct, got {list(tokens)}")
    return tokens


def get_field(fields: dict[str, Any], name: str, expected_type: type | tuple[type, ...], description: str) -> Any:
    """``fields[name]``, checked present and of ``expected_type``; ``description`` says what is expected."""
    if name not in fields:
        raise ValueError(f"missing field {name!r} ({description})")
    value = fields[name]
    if not isinstance(value, expected_type):
        raise ValueError(f"field {name!r} must be {description}, got {type(value).__name__} {value!r:.60}")
    return value
