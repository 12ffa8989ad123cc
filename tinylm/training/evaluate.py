"""Loss, perplexity and next-token accuracy of a model over a whole text."""

import math
import sys
from dataclasses import dataclass

import numpy as np

import tinylm
from tinylm.data import DataLoader, SlidingWindows
from tinylm.nn import functional as F


@dataclass
class Evaluation:
    loss: float  # mean cross-entropy per predicted token, in nats
    perplexity: float
    accuracy: float  # how often the most likely token is the next one
    tokens: int


@tinylm.no_grad()
def evaluate_text(model, ids, block_size, batch_size=32, device="cpu", progress=False):
    """Score every token of ``ids`` that can be predicted from up to ``block_size`` before it.

    The text is cut into consecutive windows of ``block_size + 1`` tokens that
    overlap by one (each window's last token is the next one's first), so every
    token after the first is a target exactly once, as in training (each window
    starts from nothing). With ``progress``, a progress bar on a terminal's stderr.
    """
    ids = np.asarray(ids)
    if len(ids) < 2:
        raise ValueError(f"evaluate_text: {len(ids)} token(s) given; at least 2 are needed (one to read, one to "
                         "predict)")  # fmt: skip
    block = min(block_size, len(ids) - 1)
    windows = SlidingWindows(ids, block, stride=block)
    total_loss, correct, count = 0.0, 0, 0
    batches = DataLoader(windows, batch_size=batch_size, device=device)
    if progress and sys.stderr.isatty():
        from tqdm import tqdm  # loaded on first use

        batches = tqdm(batches, total=len(batches), unit="batch", leave=False, desc="eval")
    for x, y in batches:
        logits, _ = model(x)
        flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        total_loss += F.cross_entropy(flat_logits, flat_targets, reduction="sum").item()
        correct += int((flat_logits.argmax(-1) == flat_targets).numpy().sum())
        count += flat_targets.numel()
    tail = len(ids) - 1 - len(windows) * block  # tokens after the last full window
    if tail > 0:
        x = tinylm.tensor(ids[None, -tail - 1 : -1].astype(np.int64), device=device)
        y = tinylm.tensor(ids[None, -tail:].astype(np.int64), device=device)
        logits, _ = model(x)
        total_loss += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        correct += int((logits.argmax(-1) == y).numpy().sum())
        count += tail
    loss = total_loss / count
    return Evaluation(loss, math.exp(loss), correct / count, count)
