"""Language models: ``GPT`` (a transformer decoder, nanoGPT's design) and ``RNNLM`` (RNN, LSTM or GRU).

Both are called as ``model(idx, targets=None) -> (logits, loss)`` and sample
with ``model.generate(idx, max_new_tokens, temperature, top_k, top_p)``. ``GPTDecoder``
runs a GPT one position at a time, each one ``gpt_decode_step`` kernel call
(what ``GPT.generate`` uses with its cache).
"""

from tinylm.models.decoding import GPTDecoder
from tinylm.models.gpt import GPT, GPTConfig


def build_model(settings):
    """A model from the settings a checkpoint records: ``{"type": "gpt" | "lstm" | "gru" | "rnn", ...}``."""
    settings = dict(settings)
    kind = settings.pop("type")
    if kind == "gpt":
        return GPT(GPTConfig(**settings))
    from tinylm.models.rnn_lm import RNNLM, RNNLMConfig  # the recurrent layers load only when used

    settings.pop("n_head", None)
    return RNNLM(RNNLMConfig(cell=kind, **settings))


__all__ = ["GPT", "GPTConfig", "GPTDecoder", "build_model"]
