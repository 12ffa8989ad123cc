"""How much memory a training run will take, estimated from its settings before anything is allocated.

So that ``--n-embd 100000`` or ``--batch-size 10000000`` is refused at once with
a line that says why, instead of a MemoryError (or the machine swapping) after
the data has been prepared. The estimate counts what dominates: the parameters
four times over (weights, gradients, AdamW's two moments) and the activations
the backward pass keeps, per token of a batch. It errs high by a small factor
at most; only settings that would not fit even then are refused.
"""

import os

import numpy as np

from tinylm.errors import ConfigError

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def parameter_count(model):
    """The parameters of a model of the settings ``model`` (a checkpoint's ``model`` record)."""
    vocab, width, layers = model["vocab_size"], model["n_embd"], model["n_layer"]
    if model["type"] == "gpt":
        bias = bool(model.get("bias"))
        per_layer = 12 * width * width + (13 if bias else 2) * width  # four matrices; two layer norms, biases
        return vocab * width + model["block_size"] * width + layers * per_layer + (2 if bias else 1) * width
    gates, hidden = _GATES[model["type"]], model["hidden_size"]
    recurrent = gates * hidden * (width + hidden) + (layers - 1) * gates * hidden * (2 * hidden) + layers * 2 * gates * hidden
    return vocab * width + recurrent + hidden * vocab + vocab


def training_bytes(model, batch_size, dtype):
    """Estimated peak bytes of one training step (and of an evaluation pass) of ``model``."""
    itemsize = np.dtype(dtype).itemsize
    tokens = batch_size * model["block_size"]
    vocab, width, layers = model["vocab_size"], model["n_embd"], model["n_layer"]
    if model["type"] == "gpt":
        per_token = layers * (18 * width + model["n_head"] * model["block_size"]) + 4 * width
    else:
        per_token = layers * (_GATES[model["type"]] + 2) * model["hidden_size"] + width
    activations = tokens * (per_token + 3 * vocab)
    evaluation = 5 * tokens * 2 * vocab  # a pass of five batches' logits and probabilities (no graph kept)
    return itemsize * (4 * parameter_count(model) + max(activations, evaluation))


def available_bytes():
    """Memory a new allocation can take now (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_fits(model, batch_size, dtype, available=None):
    """Raise ConfigError if training ``model`` at ``batch_size`` cannot fit in memory."""
    available = available_bytes() if available is None else available
    needed = training_bytes(model, batch_size, dtype)
    if available is not None and needed > available:
        raise ConfigError(
            f"these settings need about {_gib(needed)} GiB to train ({parameter_count(model):,} parameters, "
            f"batches of {batch_size} x {model['block_size']} tokens, {dtype}) but {_gib(available)} GiB is "
            f"available; use a smaller --n-embd, --n-layer, --batch-size or --block-size"
        )
    return needed


def _gib(count):
    """Bytes as GiB for a message: one decimal for small sizes, none for large ones."""
    gib = count / 2**30
    return f"{gib:,.1f}" if gib < 100 else f"{gib:,.0f}"
