"""Byte-level byte-pair encoding, as GPT-2's tokenizer.

Text becomes UTF-8 bytes, so the 256 byte values are the base tokens and any
string can be encoded. Training learns merges: merge ``i`` joins the adjacent
tokens ``(a, b)`` into the new token ``256 + i``. Special tokens (such as
``<|endoftext|>``) take the ids after the merged tokens; they are never split
or merged.

Before any merge, text is pre-split into chunks by a named rule (``split``;
``SPLIT_RULES`` maps each name to its regular expression; ``"gpt2"``, the
default, approximates GPT-2's), and pairs are only ever formed inside a chunk,
so no token spans a word boundary. A tokenizer file stores the rule's name,
never a regular expression: a pattern read from a file could be written to
backtrack for minutes on a short text, so only the rules written here run.

Round trip: ``decode(encode(s)) == s`` for every ``str`` that is valid Unicode.
A string holding a lone surrogate (``"\\ud800"``) has no UTF-8 encoding and is
rejected by ``encode`` with a ``ValueError`` naming its position. ``decode``
accepts any id sequence: bytes that do not form valid UTF-8 (a character cut
in two) become U+FFFD, as GPT-2 does with ``errors="replace"``.
"""

from __future__ import annotations

import operator
import re
import types
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from tinylm.data.tokenizers.base import (
    Tokenizer,
    check_special_tokens,
    check_token_ids,
    get_field,
    resolve_allowed_special,
    split_on_special,
)
from tinylm.data.tokenizers.bpe_training import Pair, learn_merges, merge_pair
from tinylm.errors import DataError

# GPT-2's pattern is
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
# Python's `re` has no \p{..} classes, so they are approximated:
#   letters \p{L}  ~ [^\W\d_]  (word characters that are not decimal digits or "_";
#                               this also takes in non-decimal numerals such as
#                               "²", "½", "Ⅻ", which \p{N} would claim)
#   numbers \p{N}  ~ \d        (decimal digits of any script)
#   other          ~ [^\s\w]|_ (neither space, letter nor digit)
# Every character falls in one of the classes or in \s, so the chunks always
# cover the whole text.
GPT2_SPLIT_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)"
    r"| ?[^\W\d_]+"
    r"| ?\d+"
    r"| ?(?:[^\s\w]|_)+"
    r"|\s+(?!\S)"
    r"|\s+"
)

# The pre-split rules a tokenizer may name. Each is written here, not read from a
# file, and each must cover any text with its matches and hold no capturing group
# (tests/data/test_tokenizer_bpe.py checks both for every rule).
SPLIT_RULES = types.MappingProxyType({"gpt2": GPT2_SPLIT_PATTERN})
DEFAULT_SPLIT = "gpt2"
_SPLIT_REGEXES = {name: re.compile(pattern) for name, pattern in SPLIT_RULES.items()}

NUM_BYTES = 256
_CACHE_LIMIT = 1 << 17  # chunks remembered by encode; the cache is emptied when full
_NOT_A_MERGE = float("inf")  # rank of a pair that no merge joins
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class BPETokenizer(Tokenizer):
    """Byte-level BPE with optional special tokens.

    ``BPETokenizer()`` is the untrained tokenizer: 256 byte tokens, one per
    UTF-8 byte. ``BPETokenizer.train(text, vocab_size)`` learns merges.

    Ids: ``0..255`` bytes, ``256..256+len(merges)-1`` merged tokens, then the
    special tokens in the order given.
    """

    type_name = "bpe"

    def __init__(
        self,
        merges: Sequence[Pair] = (),
        *,
        special_tokens: Sequence[str] = (),
        split: str = DEFAULT_SPLIT,
    ):
        """
        Args:
            merges: ``merges[i] = (a, b)`` makes token ``256 + i``; ``a`` and
                ``b`` must be earlier tokens (``< 256 + i``).
            special_tokens: strings that each get one id, after the merges.
            split: the name of the pre-split rule, a key of ``SPLIT_RULES``.

        Raises:
            ValueError: bad merges or special tokens, or an unknown ``split``.
        """
        self._merges = _check_merges(merges)
        self._special_tokens = check_special_tokens(special_tokens)
        self._split = check_split(split)
        self._split_regex = _SPLIT_REGEXES[self._split]
        self._ranks = {pair: rank for rank, pair in enumerate(self._merges)}
        first_special = NUM_BYTES + len(self._merges)
        self._special_ids = {token: first_special + i for i, token in enumerate(self._special_tokens)}
        self._token_bytes = [bytes([b]) for b in range(NUM_BYTES)]
        for a, b in self._merges:
            self._token_bytes.append(self._token_bytes[a] + self._token_bytes[b])
        self._token_bytes.extend(token.encode("utf-8") for token in self._special_tokens)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        *,
        special_tokens: Sequence[str] = (),
        split: str = DEFAULT_SPLIT,
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Occurrences of the special tokens in ``text`` are cut out before
        counting, so they never take part in a merge. Equally frequent pairs
        are merged smallest pair of ids first, so training is reproducible. If
        the text runs out of pairs first, fewer merges are learned and
        ``vocab_size`` comes out smaller than asked.

        Raises:
            DataError (a ``ValueError``): ``vocab_size`` is below the smallest
                vocabulary, ``min_vocab_size(len(special_tokens))``.
        """
        special_tokens = check_special_tokens(special_tokens)
        smallest = cls.min_vocab_size(len(special_tokens))
        vocab_size = operator.index(vocab_size)
        if vocab_size < smallest:
            raise DataError(
                f"vocab_size {vocab_size} is too small for a byte-level BPE tokenizer: expected at least "
                f"{smallest} ({NUM_BYTES} byte tokens + {len(special_tokens)} special tokens)"
            )
        num_merges = vocab_size - smallest
        untrained = cls(special_tokens=special_tokens, split=split)
        chunk_counts: Counter[str] = Counter()
        for piece in split_on_special(text, frozenset(special_tokens))[::2]:
            chunk_counts.update(untrained._split_chunks(piece))
        byte_counts = {untrained._chunk_bytes(chunk, text): n for chunk, n in chunk_counts.items()}
        merges = learn_merges(byte_counts, num_merges, first_id=NUM_BYTES)
        return cls(merges, special_tokens=special_tokens, split=split)

    @staticmethod
    def min_vocab_size(n_special_tokens: int = 0) -> int:
        """The smallest vocabulary ``train`` accepts: every byte plus the special tokens."""
        return NUM_BYTES + n_special_tokens

    @property
    def vocab_size(self) -> int:
        return len(self._token_bytes)

    @property
    def merges(self) -> list[Pair]:
        """``merges[i] = (a, b)``: token ``256 + i`` is token ``a`` followed by token ``b``."""
        return list(self._merges)

    @property
    def special_tokens(self) -> dict[str, int]:
        """Each special token -> its id."""
        return dict(self._special_ids)

    @property
    def split(self) -> str:
        """The name of the pre-split rule (a key of ``SPLIT_RULES``)."""
        return self._split

    @property
    def pattern(self) -> str:
        """The regular expression of the pre-split rule (read-only; set ``split`` to choose one)."""
        return SPLIT_RULES[self._split]

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes token ``token_id`` stands for (a special token's in UTF-8).

        A byte-level token need not be valid UTF-8 on its own (it may hold part
        of a character), hence bytes, not str.
        """
        return self._token_bytes[check_token_ids([token_id], self.vocab_size)[0]]

    def encode(self, text: str, *, allowed_special: str | Collection[str] = "none") -> list[int]:
        """Token ids of ``text``.

        Args:
            allowed_special: which special tokens written in ``text`` become
                their special id: ``"none"`` (default: they are encoded as
                ordinary text, so untrusted text cannot inject them), ``"all"``,
                or a collection of them. Either way ``decode`` gives ``text`` back.

        Raises:
            ValueError: ``text`` holds a lone surrogate (it has no UTF-8 form).
        """
        allowed = resolve_allowed_special(allowed_special, self._special_tokens)
        cache, ids = self._cache, []
        pieces = split_on_special(text, allowed)
        for i, piece in enumerate(pieces):
            if i % 2:
                ids.append(self._special_ids[piece])
                continue
            for chunk in self._split_chunks(piece):
                chunk_ids = cache.get(chunk)
                if chunk_ids is None:
                    if len(cache) >= _CACHE_LIMIT:
                        cache.clear()
                    chunk_ids = cache[chunk] = self._apply_merges(self._chunk_bytes(chunk, text))
                ids.extend(chunk_ids)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; invalid UTF-8 (e.g. half a character) becomes U+FFFD.

        Raises:
            TokenIdError: an id is outside ``[0, vocab_size)``.
        """
        token_bytes = self._token_bytes
        data = b"".join([token_bytes[i] for i in check_token_ids(ids, self.vocab_size)])
        return data.decode("utf-8", errors="replace")

    def _split_chunks(self, text: str) -> list[str]:
        """The pre-split of ``text``: chunks that concatenate back to ``text`` (every rule
        in ``SPLIT_RULES`` covers any text; the tests check it)."""
        return self._split_regex.findall(text)

    @staticmethod
    def _chunk_bytes(chunk: str, text: str) -> bytes:
        """``chunk`` in UTF-8; a lone surrogate raises a ValueError naming its place in ``text``."""
        try:
            return chunk.encode("utf-8")
        except UnicodeEncodeError:
            surrogate = _SURROGATE.search(text)  # chunk is part of text, so text holds one
            raise ValueError(
                f"text holds a lone surrogate {surrogate.group()!r} at position {surrogate.start()}; "
                f"it is not valid Unicode and has no UTF-8 encoding"
            ) from None

    def _apply_merges(self, chunk: bytes) -> list[int]:
        """BPE on one chunk: repeatedly merge the adjacent pair of lowest rank (earliest merge)."""
        ids = list(chunk)
        ranks = self._ranks
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, _NOT_A_MERGE))
            rank = ranks.get(pair)
            if rank is None:
                break
            ids = merge_pair(ids, pair, NUM_BYTES + rank)
        return ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self._split,
            "merges": [list(pair) for pair in self._merges],
            "special_tokens": dict(self._special_ids),
        }

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> BPETokenizer:
        merges = get_field(fields, "merges", list, "a list of [a, b] token-id pairs")
        specials = get_field(fields, "special_tokens", dict, "an object mapping each special token to its id")
        first_special = NUM_BYTES + len(merges)
        expected_ids = list(range(first_special, first_special + len(specials)))
        if sorted(specials.values()) != expected_ids:
            raise ValueError(
                f"special token ids {sorted(specials.values())} do not follow the {len(merges)} merges; "
                f"expected {expected_ids}"
            )
        return cls(merges, special_tokens=sorted(specials, key=specials.__getitem__), split=_split_of(fields))


def check_split(split: str) -> str:
    """``split``, checked to name a pre-split rule of ``SPLIT_RULES``."""
    if not isinstance(split, str) or split not in SPLIT_RULES:
        shown = repr(split) if isinstance(split, str) else f"{type(split).__name__} {split!r:.60}"
        raise ValueError(f"unknown pre-split rule {shown}: expected one of {', '.join(map(repr, SPLIT_RULES))}")
    return split


def _split_of(fields: dict[str, Any]) -> str:
    """The pre-split rule named by a tokenizer file's fields.

    Files store ``"split": <name>``. Files written before the rules were named
    store the regular expression itself as ``"pattern"``; such a file loads
    only if its pattern is exactly one of ``SPLIT_RULES`` (as every file tinylm
    wrote is), since running an arbitrary expression from a file could hang.
    """
    if "split" in fields:
        if "pattern" in fields:
            raise ValueError("fields 'split' and 'pattern' are both present; expected only 'split', a rule's name")
        return check_split(get_field(fields, "split", str, f"the name of a pre-split rule ({', '.join(SPLIT_RULES)})"))
    if "pattern" not in fields:
        raise ValueError(f"missing field 'split' (the name of a pre-split rule: {', '.join(SPLIT_RULES)})")
    pattern = fields["pattern"]
    for name, known in SPLIT_RULES.items():
        if pattern == known:
            return name
    raise ValueError(
        f"field 'pattern' holds a pre-split regular expression {pattern!r:.80} that is not one of tinylm's "
        f"rules; tinylm runs no regular expression read from a file, expected 'split' naming one of "
        f"{', '.join(map(repr, SPLIT_RULES))}"
    )


def _check_merges(merges: Sequence[Pair]) -> tuple[Pair, ...]:
    """``merges`` as a tuple of int pairs, each built only from earlier tokens and none repeated."""
    checked: list[Pair] = []
    seen: dict[Pair, int] = {}
    for i, merge in enumerate(merges):
        try:
            first, second = merge
            if isinstance(first, bool) or isinstance(second, bool):
                raise TypeError
            pair = (operator.index(first), operator.index(second))
        except (TypeError, ValueError):
            raise ValueError(f"merge {i} must be a pair of token ids [a, b], got {merge!r}") from None
        if not all(0 <= t < NUM_BYTES + i for t in pair):
            raise ValueError(
                f"merge {i} {list(pair)} uses a token id outside [0, {NUM_BYTES + i}); "
                f"a merge may only join bytes and earlier merged tokens"
            )
        if pair in seen:
            raise ValueError(f"merge {i} {list(pair)} repeats merge {seen[pair]}")
        seen[pair] = i
        checked.append(pair)
    return tuple(checked)
