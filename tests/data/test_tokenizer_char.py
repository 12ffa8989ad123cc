"""CharTokenizer: vocabulary from text, round trips, unknown-character errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.data import CharTokenizer
from tinylm.data.tokenizers import UnknownCharacterError

TEXT = "To be, or not to be 床前明月光 😀 𠀀 e\u0301 \x00\r\n\t"


def test_vocabulary_is_the_sorted_set_of_characters():
    tok = CharTokenizer.train(TEXT)
    assert tok.chars == tuple(sorted(set(TEXT)))
    assert tok.vocab_size == len(set(TEXT)) == len(tok)
    assert tok.token_to_id("𠀀") == sorted(set(TEXT)).index("𠀀")
    assert tok.id_to_token(0) == min(TEXT)


def test_astral_and_combining_characters_are_one_token_each():
    tok = CharTokenizer.train(TEXT)
    assert len(tok.encode("𠀀")) == 1
    assert len(tok.encode("e\u0301")) == 2


@given(st.text(alphabet=sorted(set(TEXT))))
def test_round_trip_within_the_vocabulary(text):
    tok = CharTokenizer.train(TEXT)
    ids = tok.encode(text)
    assert all(type(i) is int for i in ids)
    assert tok.decode(ids) == text


def test_unknown_character_error_names_character_position_and_vocab_size():
    tok = CharTokenizer.train("abc")
    with pytest.raises(UnknownCharacterError) as info:
        tok.encode("ab\x00cé")
    message = str(info.value)
    assert "'\\x00' at position 2" in message
    assert "'é' at position 4" in message
    assert "3 characters" in message
    assert info.value.unknown == {"\x00": 2, "é": 4}
    assert isinstance(info.value, ValueError)


def test_unknown_character_error_lists_a_few_and_counts_the_rest():
    tok = CharTokenizer.train("a")
    with pytest.raises(UnknownCharacterError, match="10 distinct characters.* and 5 more"):
        tok.encode("a" + "0123456789" * 3)


@pytest.mark.parametrize(
    "chars, match",
    [(["a", "b", "a"], "'a' repeats"), (["ab"], "single characters"), ([""], "single characters")],
)
def test_constructor_rejects_bad_vocabularies(chars, match):
    with pytest.raises(ValueError, match=match):
        CharTokenizer(chars)


def test_empty_training_text_is_rejected():
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer.train("")


def test_token_to_id_of_unknown_character_names_it():
    with pytest.raises(KeyError, match="'z'"):
        CharTokenizer.train("abc").token_to_id("z")
