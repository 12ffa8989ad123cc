"""Word-level tokenizer with a frequency-ranked vocabulary, as in the seed articles.

Splitting rule (``WORD_PATTERN``): a word is a run of letters, digits and
underscores, which may hold inner apostrophes (``don't``, ``o'clock``,
``aujourd'hui``); every other non-space character (punctuation, symbols, a
combining mark standing apart from its letter) is a token by itself; whitespace
separates tokens and is dropped.

Chinese and Japanese are written without spaces between words, so the rule
above would make a whole clause one "word" that never repeats. Their
characters (``CJK_CHARACTERS``: Han ideographs, Hiragana, Katakana, Bopomofo,
CJK and full-width punctuation, full-width letters and digits) are therefore
each a token by itself, as in character-based Chinese language models: the
vocabulary stays a few thousand characters and no word segmenter (a dictionary
and a model of its own) is needed. Korean is the exception among the CJK
scripts: it puts spaces between words, so a Hangul word stays one word, split
like any space-separated script.

``decode`` is lossy: it joins tokens with single spaces, except that no space
goes between two CJK characters, beside CJK punctuation, or between a CJK
character and the punctuation Chinese shares with English (“ ” ‘ ’ … — ·), so
text in Chinese or Japanese alone comes back exactly (but for whitespace, which
is dropped), and mixed text with a space at each boundary between CJK and other
tokens. ``detokenize`` also re-attaches ASCII punctuation by rule of thumb.
"""

from __future__ import annotations

import functools
import re
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
from tinylm.errors import DataError

# Characters of scripts written without spaces between words, each a token by itself
# (a regular-expression class body). The ideographic space U+3000 is left out: it is
# whitespace, which separates tokens and is dropped.
CJK_CHARACTERS = (
    "\u3001-\u303f"  # CJK symbols and punctuation: 、。「」〜 and the marks 々〆〇
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana (with ー and ・)
    "\u3100-\u312f\u31a0-\u31bf"  # Bopomofo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han: extension A, unified, compatibility
    "\ufe30-\ufe4f"  # CJK compatibility forms (vertical punctuation)
    "\uff01-\uff60\uffe0-\uffe6"  # full-width punctuation, letters and digits
    "\uff61-\uff9f"  # half-width Katakana and its punctuation
    "\U00020000-\U0003134f"  # Han: extensions B to G
)

# A CJK character alone; a run of other word characters (with inner apostrophes);
# any other non-space character alone.
WORD_PATTERN = re.compile(
    rf"[{CJK_CHARACTERS}]|[^\W{CJK_CHARACTERS}]+(?:['’][^\W{CJK_CHARACTERS}]+)*|[^\w\s]"
)
# Punctuation that Chinese and Japanese share with other scripts (quotation marks, the
# ellipsis, the dash, the middle dot of transliterated names): written without spaces
# beside CJK characters, with spaces elsewhere.
_SHARED_PUNCTUATION = "“”‘’…—·"
_CJK_OR_SHARED = re.compile(f"[{CJK_CHARACTERS}{_SHARED_PUNCTUATION}]")

# What a token is, for spacing (see _spaced): not CJK, a CJK letter, CJK punctuation,
# shared punctuation.
_OTHER, _CJK_LETTER, _CJK_PUNCTUATION, _SHARED = 0, 1, 2, 3

DEFAULT_SPECIAL_TOKENS = ("<pad>", "<unk>")

# Rules of thumb for putting words back together (see join_words).
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}%…”")
_NO_SPACE_AFTER = frozenset("([{¿¡$“")
_NO_SPACE_AROUND = frozenset("-/")
_QUOTES = frozenset("\"'")


def split_words(text: str) -> list[str]:
    """``text`` cut into words and punctuation by ``WORD_PATTERN``."""
    return WORD_PATTERN.findall(text)


@functools.lru_cache(maxsize=1 << 16)
def _cjk_kind(token: str) -> int:
    """What ``token`` is for spacing: ``_CJK_LETTER``, ``_CJK_PUNCTUATION`` or ``_SHARED``
    for a one-character token of those kinds, else ``_OTHER``."""
    if len(token) != 1 or not _CJK_OR_SHARED.match(token):
        return _OTHER
    if token in _SHARED_PUNCTUATION:
        return _SHARED
    return _CJK_LETTER if token.isalnum() else _CJK_PUNCTUATION


def _spaced(previous: str, token: str, after_cjk: bool) -> bool:
    """Whether a space goes between two adjacent tokens: not between two CJK letters,
    nor beside CJK punctuation (it is full-width: its spacing is built in), nor between
    shared punctuation and CJK, nor between shared marks that follow CJK (``after_cjk``:
    the last token that was not a shared mark was CJK, as in "道……”") or repeat ("——")."""
    kinds = {_cjk_kind(previous), _cjk_kind(token)}
    if _CJK_PUNCTUATION in kinds:
        return False
    if kinds == {_SHARED}:
        return not after_cjk and previous != token
    return _OTHER in kinds


def _follows_cjk(token: str, after_cjk: bool) -> bool:
    """``after_cjk`` for the token after ``token``, given ``after_cjk`` before it."""
    kind = _cjk_kind(token)
    return after_cjk if kind == _SHARED else kind != _OTHER


def join_tokens(tokens: Iterable[str]) -> str:
    """Tokens joined by single spaces, except between CJK characters and beside CJK
    punctuation: ``join_tokens(["我", "爱", "Python", "。"]) == "我爱 Python。"``."""
    tokens = list(tokens)
    if not _CJK_OR_SHARED.search("".join(tokens)):  # one fast scan spares the loop below
        return " ".join(tokens)
    pieces: list[str] = []
    previous, after_cjk = None, False
    for token in tokens:
        if previous is not None and _spaced(previous, token, after_cjk):
            pieces.append(" ")
        pieces.append(token)
        previous, after_cjk = token, _follows_cjk(token, after_cjk)
    return "".join(pieces)


def join_words(words: Iterable[str]) -> str:
    """Words back into readable text: a space between words, none before closing
    punctuation (``. , ; : ! ? ) ] } % … ”``), after opening ones (``( [ { ¿ ¡ $ “``),
    around ``-`` and ``/``, between CJK characters or beside CJK punctuation; a
    straight quote opens (glued to the next word) and then closes (glued to the
    previous one), alternately.

    ``join_words(["he", "said", ",", '"', "hi", '"', "."]) == 'he said, "hi".'``
    """
    pieces: list[str] = []
    open_quotes: set[str] = set()
    glue_next = True  # no space before the first word
    previous, after_cjk = None, False
    for word in words:
        glue_this = glue_next or word in _NO_SPACE_BEFORE or word in _NO_SPACE_AROUND
        glue_this = glue_this or (previous is not None and not _spaced(previous, word, after_cjk))
        glue_next = word in _NO_SPACE_AFTER or word in _NO_SPACE_AROUND
        previous, after_cjk = word, _follows_cjk(word, after_cjk)
        if word in _QUOTES:
            if word in open_quotes:
                open_quotes.remove(word)
                glue_this = True
            else:
                open_quotes.add(word)
                glue_next = True
        if not glue_this:
            pieces.append(" ")
        pieces.append(word)
    return "".join(pieces)


class WordTokenizer(Tokenizer):
    """Words to ids, with special tokens first and words by falling frequency.

    Ids ``0 .. len(special_tokens) - 1`` are the special tokens, in the order
    given (by default ``<pad>`` = 0, ``<unk>`` = 1); the words follow. A word
    not in the vocabulary encodes as ``unk_token``. For translation declare
    ``special_tokens=("<pad>", "<unk>", "<bos>", "<eos>")`` and frame each
    sentence with ``token_to_id("<bos>")`` / ``token_to_id("<eos>")``.

    Build one from texts with ``WordTokenizer.train``; the constructor takes
    the vocabulary itself.
    """

    type_name = "word"

    def __init__(
        self,
        words: Sequence[str],
        *,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        unk_token: str = "<unk>",
        lowercase: bool = False,
    ):
        """
        Args:
            words: the ordinary tokens, in id order (they follow the specials).
            special_tokens: tokens with ids ``0 ..``; must include ``unk_token``.
            unk_token: what words outside the vocabulary encode to.
            lowercase: lower-case text before looking words up.
        """
        self._special_tokens = check_special_tokens(special_tokens)
        if unk_token not in self._special_tokens:
            raise ValueError(
                f"unk_token {unk_token!r} must be one of the special tokens {list(self._special_tokens)}"
            )
        self._itos = self._special_tokens + tuple(words)
        for word in self._itos:
            if not isinstance(word, str) or not word:
                raise ValueError(f"vocabulary tokens must be non-empty strings, got {word!r}")
        self._stoi = {token: i for i, token in enumerate(self._itos)}
        if len(self._stoi) != len(self._itos):
            repeated = next(t for i, t in enumerate(self._itos) if self._stoi[t] != i)
            raise ValueError(f"the vocabulary holds {repeated!r} twice; expected distinct tokens")
        self._unk_id = self._stoi[unk_token]
        self._lowercase = bool(lowercase)

    @classmethod
    def train(
        cls,
        texts: str | Iterable[str],
        *,
        lowercase: bool = False,
        min_freq: int = 1,
        max_size: int | None = None,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        unk_token: str = "<unk>",
    ) -> WordTokenizer:
        """Count the words of ``texts`` and keep the most frequent.

        Args:
            texts: one text, or an iterable of texts (e.g. sentences).
            lowercase: lower-case before counting (and later before encoding).
            min_freq: keep only words seen at least this often.
            max_size: the largest ``vocab_size``, special tokens included; at
                least ``min_vocab_size(len(special_tokens))``.
            special_tokens, unk_token: as for the constructor.

        Words are ranked by falling count, equal counts by the words' code-point
        order, so the vocabulary does not depend on the order of the texts.
        A word spelled like a special token is not counted again (and the
        splitting rule breaks ``<unk>`` into ``<``, ``unk``, ``>`` anyway).
        """
        special_tokens = check_special_tokens(special_tokens)
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        smallest = cls.min_vocab_size(len(special_tokens))
        if max_size is not None and max_size < smallest:
            raise DataError(
                f"max_size {max_size} is too small for a word tokenizer: expected at least {smallest} "
                f"(the {len(special_tokens)} special tokens {', '.join(special_tokens)} and one word)"
            )
        if isinstance(texts, str):
            texts = [texts]
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split_words(text.lower() if lowercase else text))
        for token in special_tokens:
            counts.pop(token, None)
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max_size - len(special_tokens)]
        return cls(ranked, special_tokens=special_tokens, unk_token=unk_token, lowercase=lowercase)

    @staticmethod
    def min_vocab_size(n_special_tokens: int = len(DEFAULT_SPECIAL_TOKENS)) -> int:
        """The smallest ``max_size`` ``train`` accepts: the special tokens and one word
        (with none, every word would encode as ``<unk>``)."""
        return n_special_tokens + 1

    @property
    def vocab_size(self) -> int:
        return len(self._itos)

    @property
    def tokens(self) -> tuple[str, ...]:
        """The whole vocabulary: ``tokens[i]`` is the token of id ``i``."""
        return self._itos

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._special_tokens

    @property
    def unk_id(self) -> int:
        return self._unk_id

    @property
    def lowercase(self) -> bool:
        return self._lowercase

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; ``KeyError`` naming it if it is not in the vocabulary."""
        try:
            return self._stoi[token]
        except KeyError:
            raise KeyError(f"{token!r} is not in the vocabulary of {self.vocab_size} tokens") from None

    def id_to_token(self, token_id: int) -> str:
        return self._itos[check_token_ids([token_id], self.vocab_size)[0]]

    def tokenize(self, text: str) -> list[str]:
        """The words ``encode`` would look up (lower-cased if the tokenizer is)."""
        return split_words(text.lower() if self._lowercase else text)

    def encode(self, text: str, *, allowed_special: str | Collection[str] = "none") -> list[int]:
        """Ids of the words of ``text``; unknown words give ``unk_id``.

        Args:
            allowed_special: special tokens to recognise when written in the
                text: ``"none"`` (default: ``"<eos>"`` is split like any text),
                ``"all"``, or a collection of them.
        """
        allowed = resolve_allowed_special(allowed_special, self._special_tokens)
        stoi, unk = self._stoi, self._unk_id
        ids: list[int] = []
        pieces = split_on_special(text, allowed)
        for i, piece in enumerate(pieces):
            if i % 2:
                ids.append(stoi[piece])
            else:
                ids.extend([stoi.get(word, unk) for word in self.tokenize(piece)])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """The tokens of ``ids`` joined by single spaces, but with none between CJK
        characters or beside CJK punctuation (``join_tokens``).

        Lossy: the original spacing is gone (``"Hi, you."`` comes back as
        ``"Hi , you ."``, ``"我用Python。"`` as ``"我用 Python。"``), as is case if
        lower-casing; see ``detokenize``. Chinese or Japanese text alone comes back
        as it was, but for whitespace (which is dropped) and unknown words.
        """
        return join_tokens(self.ids_to_tokens(ids))

    def detokenize(self, ids: Iterable[int]) -> str:
        """Like ``decode`` but with punctuation re-attached by ``join_words``."""
        return join_words(self.ids_to_tokens(ids))

    def ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        itos = self._itos
        return [itos[i] for i in check_token_ids(ids, self.vocab_size)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "special_tokens": list(self._special_tokens),
            "unk_token": self._itos[self._unk_id],
            "lowercase": self._lowercase,
            "words": list(self._itos[len(self._special_tokens) :]),
        }

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> WordTokenizer:
        return cls(
            get_field(fields, "words", list, "a list of words"),
            special_tokens=get_field(fields, "special_tokens", list, "a list of strings"),
            unk_token=get_field(fields, "unk_token", str, "a string"),
            lowercase=get_field(fields, "lowercase", bool, "true or false"),
        )
