"""Language models: ``GPT`` (a transformer decoder, nanoGPT's design) and ``RNNLM`` (RNN, LSTM or GRU).

Both are called as ``model(idx, targets=None) -> (logits, loss)`` and sample
with ``model.generate(idx, max_new_tokens, temperature, top_k, top_p)``. ``GPTDecoder``
runs a GPT one position at a time, each one ``gpt_decode_step`` kernel call
(what ``GPT.generate`` uses with its cache). ``build_model(settings)`` makes
either from the settings a checkpoint records, checked first by ``model_config``.
"""

from dataclasses import fields

from tinylm.models.decoding import GPTDecoder
from tinylm.models.gpt import GPT, GPTConfig

MODEL_TYPES = ("gpt", "rnn", "lstm", "gru")


def model_config(settings, complete=False):
    """The ``GPTConfig`` or ``RNNLMConfig`` for ``build_model``'s settings, checked, without building the model.

    ``settings`` is ``{"type": "gpt" | "rnn" | "lstm" | "gru", ...}`` with the
    config's fields (``n_head`` is ignored for a recurrent model). A missing
    field takes the config's default unless ``complete`` (a checkpoint records
    them all, so one missing is damage). Raises ValueError naming the field:
    an unknown type or key, a value of the wrong type, or an impossible size.
    """
    if not isinstance(settings, dict):
        raise ValueError(f"model settings must be a dict, got {type(settings).__name__}")
    settings = dict(settings)
    kind = settings.pop("type", None)
    if kind not in MODEL_TYPES:
        raise ValueError(f"model settings: type must be one of {', '.join(MODEL_TYPES)}, got {kind!r}")
    if kind == "gpt":
        config_class = GPTConfig
    else:
        from tinylm.models.rnn_lm import RNNLMConfig  # the recurrent layers load only when used

        config_class = RNNLMConfig
        settings.pop("n_head", None)  # meaningless for a recurrent model
        if "cell" in settings:
            raise ValueError(f"model settings: 'cell' is given by type ({kind!r}), not as a key")
        settings["cell"] = kind
    names = [field.name for field in fields(config_class)]
    unknown = sorted(set(settings) - set(names), key=str)
    if unknown:
        raise ValueError(f"model settings: unknown key(s) {', '.join(map(repr, unknown))} for type {kind!r}; "
                         f"expected {', '.join(name for name in names if name != 'cell')}")  # fmt: skip
    missing = [name for name in names if name not in settings]
    if complete and missing:
        raise ValueError(f"model settings: {', '.join(missing)} missing for type {kind!r}")
    return config_class(**settings)


def build_model(settings):
    """A model from the settings a checkpoint records: ``{"type": "gpt" | "lstm" | "gru" | "rnn", ...}``.

    The settings are checked first (``model_config``): a ValueError names the
    field that no model can have, before any weight is allocated.
    """
    config = model_config(settings)
    if isinstance(config, GPTConfig):
        return GPT(config)
    from tinylm.models.rnn_lm import RNNLM

    return RNNLM(config)


__all__ = ["GPT", "GPTConfig", "GPTDecoder", "MODEL_TYPES", "build_model", "model_config"]
