"""BPETokenizer: round trips on all of Unicode, training and encoding checked
against plain reference implementations written here, special tokens."""

import json
import random
import re
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.data import BPETokenizer
from tinylm.data.tokenizers import GPT2_SPLIT_PATTERN, SPLIT_RULES, TokenizerFileError, load_tokenizer
from tinylm.data.tokenizers import bpe as bpe_module

MIXED_CORPUS = (
    "The quick brown fox jumps over the lazy dog. It's 2024; don't panic!\n" * 20
    + "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。\n" * 20
    + "emoji: 😀😀 👨\u200d👩\u200d👧 🇫🇷 — ok? café e\u0301\n" * 10
    + "𠀀𠀁 control\x00chars\r\n tab\there __init__ ²½\n" * 10
)
MIXED_MERGES = 150

TRICKY_TEXTS = [
    "",
    " ",
    "\x00",
    "\r\n",
    "e\u0301",
    "👨\u200d👩\u200d👧\u200d👦",
    "𠀀",
    "\ufeffBOM",
    "<|endoftext|>",
    "  \n\n  x  ",
    "'s'S'll 've",
    "٣٤ 12³ ²½Ⅻ",
    "\x85\u2028\u202f",
    "\ufffd",
]


@pytest.fixture(scope="module")
def mixed():
    return BPETokenizer.train(MIXED_CORPUS, 256 + MIXED_MERGES)


# ---- plain reference implementations ------------------------------------------------


def plain_merge(seq, pair, new_id):
    out, i = [], 0
    while i < len(seq):
        if tuple(seq[i : i + 2]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def reference_train(text, num_merges):
    """Recount every pair of every chunk occurrence before each merge."""
    seqs = [list(chunk.encode("utf-8")) for chunk in re.findall(GPT2_SPLIT_PATTERN, text)]
    merges = []
    for k in range(num_merges):
        counts = Counter()
        for seq in seqs:
            counts.update(zip(seq, seq[1:]))
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        seqs = [plain_merge(seq, best, 256 + k) for seq in seqs]
        merges.append(best)
    return merges


def reference_encode(text, merges):
    """Replay the merges in training order on each chunk."""
    ids = []
    for chunk in re.findall(GPT2_SPLIT_PATTERN, text):
        seq = list(chunk.encode("utf-8"))
        for rank, pair in enumerate(merges):
            seq = plain_merge(seq, pair, 256 + rank)
        ids.extend(seq)
    return ids


# A small alphabet makes pairs repeat, so merges (and ties) happen.
small_texts = st.text(alphabet=st.sampled_from(list("aaabbc  '\n1é中😀s_")), max_size=200)


# ---- pre-split ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPLIT_RULES))
@given(text=st.text())
@settings(max_examples=200)
def test_every_pre_split_rule_covers_every_character(name, text):
    # encode relies on this instead of checking every text it splits
    assert re.compile(SPLIT_RULES[name]).groups == 0  # findall would return the groups
    assert "".join(re.findall(SPLIT_RULES[name], text)) == text


def test_pre_split_follows_gpt2_rules():
    assert re.findall(GPT2_SPLIT_PATTERN, "I'll pay 42 dollars!!  Now\n\n") == [
        "I", "'ll", " pay", " 42", " dollars", "!!", " ", " Now", "\n\n",
    ]


# ---- round trips --------------------------------------------------------------------


@given(st.text())
@settings(max_examples=200)
def test_round_trip_any_text_trained(mixed, text):
    assert mixed.decode(mixed.encode(text)) == text


@given(st.text())
@settings(max_examples=100)
def test_round_trip_any_text_untrained(text):
    tok = BPETokenizer()
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_round_trip_tricky_texts(mixed, text):
    assert mixed.decode(mixed.encode(text)) == text


def test_round_trip_training_corpus_compresses(mixed):
    assert mixed.vocab_size == 256 + MIXED_MERGES
    ids = mixed.encode(MIXED_CORPUS)
    assert mixed.decode(ids) == MIXED_CORPUS
    assert len(ids) < len(MIXED_CORPUS.encode("utf-8")) / 3


def test_lone_surrogates_are_rejected_with_their_position(mixed):
    with pytest.raises(ValueError, match=r"lone surrogate '\\ud800' at position 2"):
        mixed.encode("ab\ud800c")
    with pytest.raises(ValueError, match="lone surrogate"):
        BPETokenizer.train("x\udfff", 260)


@given(st.lists(st.integers(0, 256 + MIXED_MERGES - 1), max_size=50))
def test_decoding_any_ids_never_fails(mixed, ids):
    assert isinstance(mixed.decode(ids), str)


def test_decoding_half_a_character_gives_replacement_character():
    tok = BPETokenizer()
    first, *rest = "中".encode("utf-8")
    assert tok.decode([first]) == "\ufffd"
    assert tok.decode([first, *rest]) == "中"


# ---- training -----------------------------------------------------------------------


def test_hand_checked_merges_with_tie_break():
    # aaabdaaabac: (a,a) x4 -> Z. Then Z a b d Z a b a c: (Z,a) and (a,b) tie at 2,
    # the smaller pair (97, 98) wins -> Y. Then Z Y d Z Y a c: (Z,Y) x2 -> X.
    # Then X d X a c: four pairs once each; the smallest is (a, c) = (97, 99).
    tok = BPETokenizer.train("aaabdaaabac", 256 + 4)
    assert tok.merges == [(97, 97), (97, 98), (256, 257), (97, 99)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 259]


def test_merges_stay_inside_chunks():
    # Chunks "ab", " ab", " ab", ".", " ab": (a, b) x4, then (" ", ab) x3, and then
    # every chunk is one token; "b " and "b." never form although they occur in the text.
    tok = BPETokenizer.train("ab ab ab. ab", 256 + 10)
    assert tok.merges == [(97, 98), (32, 256)]
    assert [tok.id_to_bytes(i) for i in (256, 257)] == [b"ab", b" ab"]


@given(small_texts, st.integers(0, 40))
@settings(max_examples=200)
def test_incremental_training_equals_reference(text, num_merges):
    tok = BPETokenizer.train(text, 256 + num_merges)
    assert tok.merges == reference_train(text, num_merges)


@pytest.mark.parametrize("seed", [0, 1])
def test_incremental_training_equals_reference_on_a_longer_text(seed):
    rng = random.Random(seed)
    words = ["the", "then", "there", "a", "an", "ant", "中文", "😀", "'s", "!", "12", "\n", "  "]
    text = " ".join(rng.choice(words) for _ in range(600))
    tok = BPETokenizer.train(text, 256 + 60)
    assert tok.merges == reference_train(text, 60)


@given(small_texts)
def test_no_token_joins_a_word_to_the_space_after_it(text):
    tok = BPETokenizer.train(text, 256 + 30)
    for i in range(256, tok.vocab_size):
        assert not re.search(rb"[^\s] ", tok.id_to_bytes(i))


def test_training_is_deterministic_and_honours_vocab_size():
    first = BPETokenizer.train(MIXED_CORPUS, 300, special_tokens=["<|endoftext|>"])
    second = BPETokenizer.train(MIXED_CORPUS, 300, special_tokens=["<|endoftext|>"])
    assert first.merges == second.merges
    assert first.vocab_size == len(first) == 300
    assert len(first.merges) == 300 - 256 - 1
    assert first.special_tokens == {"<|endoftext|>": 299}


def test_training_stops_early_when_no_pair_is_left():
    tok = BPETokenizer.train("abc abc", 1000)
    assert tok.merges == [(97, 98), (256, 99), (32, 257)]
    assert tok.vocab_size == 259


def test_vocab_size_too_small_is_rejected():
    with pytest.raises(ValueError, match="vocab_size 256 is too small.*257"):
        BPETokenizer.train("abc", 256, special_tokens=["<|endoftext|>"])


# ---- encoding -----------------------------------------------------------------------


@given(small_texts, small_texts)
def test_encoding_equals_reference_encoder(training_text, text):
    tok = BPETokenizer.train(training_text, 256 + 25)
    assert tok.encode(text) == reference_encode(text, tok.merges)


@given(st.text(max_size=200))
@settings(max_examples=100)
def test_encoding_mixed_tokenizer_equals_reference_encoder(mixed, text):
    assert mixed.encode(text) == reference_encode(text, mixed.merges)


def test_encoding_with_a_full_cache_gives_the_same_ids(mixed, monkeypatch):
    expected = reference_encode(MIXED_CORPUS, mixed.merges)
    monkeypatch.setattr(bpe_module, "_CACHE_LIMIT", 3)
    fresh = BPETokenizer(mixed.merges)
    assert fresh.encode(MIXED_CORPUS) == expected
    assert fresh.encode(MIXED_CORPUS) == expected
    assert len(fresh._cache) <= 3


# ---- pre-split rules are named, never read from a file -----------------------------

# Backtracks exponentially: encoding 21 characters with it took a minute.
CATASTROPHIC_PATTERN = r"(?:(?:a|aa)+)+c|[\s\S]"


def test_the_split_rule_is_chosen_by_name_and_saved_by_name(mixed, tmp_path):
    assert mixed.split == "gpt2" and mixed.pattern == GPT2_SPLIT_PATTERN
    assert BPETokenizer.train("ab ab", 257, split="gpt2").merges == [(97, 98)]
    path = tmp_path / "bpe.json"
    mixed.save(path)
    fields = json.loads(path.read_text())
    assert fields["split"] == "gpt2" and "pattern" not in fields


@pytest.mark.parametrize("split", ["gpt4", GPT2_SPLIT_PATTERN, None, 2])
def test_an_unknown_split_rule_is_refused_naming_the_known_ones(split):
    with pytest.raises(ValueError, match=r"unknown pre-split rule .*expected one of 'gpt2'"):
        BPETokenizer(split=split)
    with pytest.raises(ValueError, match=r"unknown pre-split rule"):
        BPETokenizer.train("abc", 260, split=split)


def test_the_pattern_argument_is_gone():
    with pytest.raises(TypeError, match="pattern"):
        BPETokenizer(pattern=GPT2_SPLIT_PATTERN)


def _bpe_file(tmp_path, **split_fields):
    path = tmp_path / "bpe.json"
    fields = {"type": "bpe", "version": 1, **split_fields, "merges": [[97, 98]], "special_tokens": {"<s>": 257}}
    path.write_text(json.dumps(fields))
    return path


def test_a_file_with_the_gpt2_pattern_written_by_earlier_versions_still_loads(tmp_path):
    loaded = load_tokenizer(_bpe_file(tmp_path, pattern=GPT2_SPLIT_PATTERN))
    assert loaded.split == "gpt2"
    assert loaded.encode("abab cab") == [256, 256, 32, 99, 256]
    assert loaded.to_dict()["split"] == "gpt2"


@pytest.mark.parametrize(
    "split_fields, match",
    [
        ({"pattern": CATASTROPHIC_PATTERN}, r"'pattern' holds a pre-split regular expression .*runs no regular"),
        ({"pattern": GPT2_SPLIT_PATTERN + "|x"}, r"not one of tinylm's rules"),
        ({"split": "gpt4"}, r"unknown pre-split rule 'gpt4': expected one of 'gpt2'"),
        ({"split": 3}, r"field 'split' must be the name of a pre-split rule"),
        ({"split": "gpt2", "pattern": GPT2_SPLIT_PATTERN}, r"'split' and 'pattern' are both present"),
        ({}, r"missing field 'split'"),
    ],
)
def test_a_file_naming_no_known_split_rule_is_refused_at_once(tmp_path, split_fields, match):
    path = _bpe_file(tmp_path, **split_fields)
    start = time.perf_counter()
    with pytest.raises(TokenizerFileError, match=match) as info:
        load_tokenizer(path)
    assert "bpe.json" in str(info.value)
    assert time.perf_counter() - start < 1.0  # refused before any text meets the pattern


# ---- special tokens -----------------------------------------------------------------

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def with_specials():
    text = (EOT + "hello world ") * 30
    return BPETokenizer.train(text, 256 + 6 + 2, special_tokens=[EOT, "<|pad|>"])


def test_special_tokens_take_the_last_ids(with_specials):
    assert with_specials.special_tokens == {EOT: 262, "<|pad|>": 263}
    assert with_specials.id_to_bytes(262) == EOT.encode()


def test_special_tokens_never_take_part_in_merges(with_specials):
    merged = [with_specials.id_to_bytes(i) for i in range(256, 262)]
    assert all(token in b"hello world " or token in b" hello world" for token in merged)


def test_special_tokens_are_encoded_only_when_allowed(with_specials):
    text = f"hi{EOT}there<|pad|>"
    plain = with_specials.encode(text)
    assert 262 not in plain and 263 not in plain
    assert with_specials.decode(plain) == text
    everything = with_specials.encode(text, allowed_special="all")
    assert everything.count(262) == 1 and everything.count(263) == 1
    assert with_specials.decode(everything) == text
    only_eot = with_specials.encode(text, allowed_special={EOT})
    assert only_eot.count(262) == 1 and 263 not in only_eot
    with pytest.raises(ValueError, match="wrap a single token"):
        with_specials.encode(text, allowed_special=EOT)


def test_overlapping_special_tokens_prefer_the_longest():
    tok = BPETokenizer(special_tokens=["<a>", "<a><b>"])
    assert tok.encode("<a><b><a>", allowed_special="all") == [257, 256]
