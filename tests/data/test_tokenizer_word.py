"""WordTokenizer: splitting, frequency ranking, specials, <unk>, lower-casing, CJK text."""

import pytest

from tinylm.data import WordTokenizer
from tinylm.data.tokenizers import join_tokens, join_words
from tinylm.data.tokenizers.word import split_words


def test_split_keeps_inner_apostrophes_and_separates_punctuation():
    assert split_words("Don't stop, l'homme!  Go.\n中文 ok") == [
        "Don't", "stop", ",", "l'homme", "!", "Go", ".", "中", "文", "ok",
    ]


# Li Bai's "Quiet Night Thought"; the opening of Soseki's "I Am a Cat"; a sentence on
# language models (simplified Chinese) and one with Katakana and full-width punctuation.
CHINESE = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
JAPANESE = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
CHINESE_MODERN = "语言模型根据前面的文字预测下一个字：“今天天气很好”。"
JAPANESE_KATAKANA = "「コンピューター」は、ｎ個のデータを処理する！（テスト）"
CHINESE_DIALOGUE = "他说：“我不知道……”然后——列夫·托尔斯泰走了。"


@pytest.mark.parametrize("text", [CHINESE, JAPANESE, CHINESE_MODERN, JAPANESE_KATAKANA, CHINESE_DIALOGUE])
def test_chinese_and_japanese_split_into_characters_and_round_trip(text):
    assert split_words(text) == [char for char in text]  # every character is a token
    tok = WordTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.detokenize(tok.encode(text)) == text
    assert tok.vocab_size == 2 + len(set(text))


def test_the_vocabulary_of_chinese_text_is_its_characters_by_frequency():
    tok = WordTokenizer.train(CHINESE)
    # the five characters seen twice, in code-point order, then those seen once
    assert tok.tokens[2:7] == ("。", "头", "明", "月", "，") and len(tok.tokens) == 2 + 5 + 14
    assert tok.encode("明月光") == [tok.token_to_id("明"), tok.token_to_id("月"), tok.token_to_id("光")]
    assert tok.encode("明天") == [tok.token_to_id("明"), tok.unk_id]


def test_cjk_text_mixed_with_other_scripts_gets_a_space_at_each_boundary():
    text = "我用Python写了一个“GPT-2”模型，2024年训练。Hello 世界!"
    assert split_words(text) == [
        "我", "用", "Python", "写", "了", "一", "个", "“", "GPT", "-", "2", "”", "模", "型", "，",
        "2024", "年", "训", "练", "。", "Hello", "世", "界", "!",
    ]
    tok = WordTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == "我用 Python 写了一个“ GPT - 2 ”模型，2024 年训练。Hello 世界 !"
    assert tok.detokenize(tok.encode(text)) == "我用 Python 写了一个“GPT-2”模型，2024 年训练。Hello 世界!"


def test_korean_keeps_its_space_separated_words():
    text = "나는 한국어를 공부합니다."
    assert split_words(text) == ["나는", "한국어를", "공부합니다", "."]
    tok = WordTokenizer.train(text)
    assert tok.detokenize(tok.encode(text)) == text


def test_english_spacing_is_unchanged():
    assert join_tokens(["Hi", ",", "you", "."]) == "Hi , you ."
    assert join_tokens(["He", "said", "“", "hi", "”", "—", "“", "bye", "”"]) == "He said “ hi ” — “ bye ”"
    assert join_tokens([]) == ""


def test_vocabulary_ranks_by_frequency_then_code_point_order():
    tok = WordTokenizer.train("b a b c a b z y x")
    assert tok.tokens == ("<pad>", "<unk>", "b", "a", "c", "x", "y", "z")
    assert tok.token_to_id("<pad>") == 0 and tok.unk_id == 1


def test_vocabulary_does_not_depend_on_text_order():
    texts = ["the cat sat", "a dog sat", "the end"]
    assert WordTokenizer.train(texts).tokens == WordTokenizer.train(texts[::-1]).tokens


def test_min_freq_and_max_size():
    text = "a a a b b c"
    assert WordTokenizer.train(text, min_freq=2).tokens == ("<pad>", "<unk>", "a", "b")
    assert WordTokenizer.train(text, max_size=3).tokens == ("<pad>", "<unk>", "a")
    with pytest.raises(ValueError, match="max_size 1"):
        WordTokenizer.train(text, max_size=1)
    with pytest.raises(ValueError, match="min_freq"):
        WordTokenizer.train(text, min_freq=0)


def test_unknown_words_map_to_unk():
    tok = WordTokenizer.train("the cat sat")
    assert tok.encode("the dog sat") == [tok.token_to_id("the"), tok.unk_id, tok.token_to_id("sat")]


def test_lowercasing_applies_to_training_and_encoding():
    tok = WordTokenizer.train("The THE the", lowercase=True)
    assert tok.tokens == ("<pad>", "<unk>", "the")
    assert tok.encode("tHe") == [2]
    assert WordTokenizer.train("The THE the").vocab_size == 5


def test_declared_special_tokens_come_first_and_are_encoded_only_when_allowed():
    specials = ("<pad>", "<unk>", "<bos>", "<eos>")
    tok = WordTokenizer.train("je suis là", special_tokens=specials)
    assert tok.tokens[:4] == specials
    bos, eos = tok.token_to_id("<bos>"), tok.token_to_id("<eos>")
    je, suis = tok.token_to_id("je"), tok.token_to_id("suis")
    assert tok.encode("<bos> je suis <eos>", allowed_special="all") == [bos, je, suis, eos]
    assert tok.encode("<bos>je", allowed_special={"<bos>"}) == [bos, je]
    assert bos not in tok.encode("<bos> je")  # not allowed: split like ordinary text
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<cls>"})
    with pytest.raises(ValueError, match="wrap a single token"):
        tok.encode("x", allowed_special="<bos>")


def test_unk_token_must_be_a_special_token():
    with pytest.raises(ValueError, match="unk_token '<oov>'"):
        WordTokenizer(["a"], unk_token="<oov>")
    with pytest.raises(ValueError, match="'a' twice"):
        WordTokenizer(["a", "a"])


def test_decode_is_lossy_and_detokenize_reattaches_punctuation():
    tok = WordTokenizer.train('He said, "hi (there)". Don\'t go-away!')
    ids = tok.encode('He said, "hi (there)". Don\'t go-away!')
    assert tok.decode(ids) == 'He said , " hi ( there ) " . Don\'t go - away !'
    assert tok.detokenize(ids) == 'He said, "hi (there)". Don\'t go-away!'


def test_join_words_alternates_straight_quotes():
    assert join_words(["'", "a", "'", "and", "'", "b", "'"]) == "'a' and 'b'"
    assert join_words([]) == ""
