"""build_model and the model configs: impossible settings are a ValueError naming the field, before
any weight is made (a checkpoint's record of them may have been edited by hand)."""

import pytest

from tinylm.models import GPT, GPTConfig, build_model, model_config
from tinylm.models.rnn_lm import RNNLM, RNNLMConfig

GPT_SETTINGS = dict(type="gpt", vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0, bias=True)
LSTM_SETTINGS = dict(type="lstm", vocab_size=11, block_size=8, n_layer=1, n_embd=8, hidden_size=12, dropout=0.0)


@pytest.mark.parametrize("kind", ["gpt", "rnn", "lstm", "gru"])
def test_build_model_makes_each_kind(kind):
    settings = GPT_SETTINGS if kind == "gpt" else dict(LSTM_SETTINGS, type=kind)
    model = build_model(settings)
    assert isinstance(model, GPT if kind == "gpt" else RNNLM)
    assert model.config.vocab_size == 11 and (kind == "gpt" or model.config.cell == kind)
    assert isinstance(build_model(dict(settings, n_head=4)), type(model))  # a recurrent model ignores n_head


# (settings, fragments of the message: the field, what it was given and what was expected)
IMPOSSIBLE = {
    "n_head does not divide n_embd": (dict(GPT_SETTINGS, n_head=3), ["n_head (3) must divide n_embd (16)"]),
    "n_head zero": (dict(GPT_SETTINGS, n_head=0), ["n_head must be a positive integer, got 0"]),
    "vocab_size zero": (dict(GPT_SETTINGS, vocab_size=0), ["vocab_size must be a positive integer, got 0"]),
    "block_size negative": (dict(GPT_SETTINGS, block_size=-8), ["block_size must be a positive integer, got -8"]),
    "n_layer a float": (dict(GPT_SETTINGS, n_layer=1.0), ["n_layer must be a positive integer, got 1.0"]),
    "n_embd a bool": (dict(GPT_SETTINGS, n_embd=True), ["n_embd must be a positive integer, got True"]),
    "n_embd a string": (dict(GPT_SETTINGS, n_embd="16"), ["n_embd must be a positive integer, got '16'"]),
    "gpt dropout of 1": (dict(GPT_SETTINGS, dropout=1.0), ["dropout must be a number in [0, 1), got 1.0"]),
    "gpt dropout NaN": (dict(GPT_SETTINGS, dropout=float("nan")), ["dropout must be a number in [0, 1), got nan"]),
    "bias a string": (dict(GPT_SETTINGS, bias="no"), ["bias must be true or false, got 'no'"]),
    "unknown type": (dict(GPT_SETTINGS, type="transformer"),
                     ["type must be one of gpt, rnn, lstm, gru", "got 'transformer'"]),
    "no type": ({k: v for k, v in GPT_SETTINGS.items() if k != "type"}, ["type must be one of", "got None"]),
    "unknown gpt key": (dict(GPT_SETTINGS, n_heads=2), ["unknown key(s) 'n_heads' for type 'gpt'", "n_head"]),
    "unknown lstm key": (dict(LSTM_SETTINGS, bias=False), ["unknown key(s) 'bias' for type 'lstm'", "hidden_size"]),
    "hidden_size zero": (dict(LSTM_SETTINGS, hidden_size=0), ["hidden_size must be a positive integer, got 0"]),
    "rnn vocab_size zero": (dict(LSTM_SETTINGS, vocab_size=0), ["vocab_size must be a positive integer, got 0"]),
    "rnn dropout negative": (dict(LSTM_SETTINGS, dropout=-0.1), ["dropout must be a number in [0, 1), got -0.1"]),
    "cell given twice": (dict(LSTM_SETTINGS, cell="gru"), ["'cell' is given by type ('lstm')"]),
    "not a dict": ([("type", "gpt")], ["model settings must be a dict, got list"]),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_impossible_settings_are_a_value_error_naming_the_field(case):
    settings, fragments = IMPOSSIBLE[case]
    for make in (build_model, model_config):
        with pytest.raises(ValueError) as caught:
            make(settings)
        assert all(fragment in str(caught.value) for fragment in fragments), str(caught.value)


def test_the_configs_check_themselves():
    with pytest.raises(ValueError, match=r"GPTConfig: n_head \(4\) must divide n_embd \(30\)"):
        GPTConfig(n_embd=30)
    with pytest.raises(ValueError, match="RNNLMConfig: cell must be one of rnn, lstm, gru, got 'transformer'"):
        RNNLMConfig(cell="transformer")
    with pytest.raises(ValueError, match="RNNLMConfig: n_layer must be a positive integer, got 0"):
        RNNLMConfig(n_layer=0)


def test_a_complete_record_may_not_leave_a_field_to_the_defaults():
    settings = {k: v for k, v in GPT_SETTINGS.items() if k not in ("n_head", "bias")}
    assert model_config(settings).n_head == GPTConfig().n_head  # the API fills in the default
    with pytest.raises(ValueError, match="n_head, bias missing for type 'gpt'"):
        model_config(settings, complete=True)
    assert model_config(GPT_SETTINGS, complete=True) == GPTConfig(**{k: v for k, v in GPT_SETTINGS.items()
                                                                     if k != "type"})  # fmt: skip
