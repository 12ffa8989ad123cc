"""Choosing the next token from logits: temperature, top-k, top-p (nucleus), or greedy.

The draws come from tinylm's generator, so ``tinylm.manual_seed`` makes a
sample reproducible.
"""

import math

import numpy as np

from tinylm import backend, random
from tinylm.errors import ConfigError


def check_sampling(temperature, top_k, top_p):
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top-k must be at least 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ConfigError(f"top-p must be in (0, 1], got {top_p}")


def next_tokens(logits, temperature=1.0, top_k=None, top_p=None):
    """One token id per row of ``logits`` (batch, vocab) as an int64 NumPy array (batch,).

    ``temperature`` 0 picks the most likely token. Otherwise the logits are
    divided by the temperature; ``top_k`` keeps the k most likely tokens and
    ``top_p`` the smallest set whose probability reaches p (at least one); the
    token is drawn from what remains, renormalised.
    """
    scores = backend.to_numpy(logits).astype(np.float64)
    if temperature == 0:
        return scores.argmax(axis=-1)
    scores = scores / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth = np.partition(scores, -top_k, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth, -np.inf, scores)
    probabilities = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probabilities, axis=-1, kind="stable")
        sorted_probabilities = np.take_along_axis(probabilities, order, axis=-1)
        before = np.cumsum(sorted_probabilities, axis=-1) - sorted_probabilities  # mass ahead of each token
        drop = np.zeros_like(probabilities, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=-1)
        probabilities = np.where(drop, 0.0, probabilities)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
    draws = random.generator().random(probabilities.shape[0])
    cumulative = np.cumsum(probabilities, axis=-1)
    chosen = (cumulative <= draws[:, None]).sum(axis=-1)
    return np.minimum(chosen, probabilities.shape[-1] - 1)
