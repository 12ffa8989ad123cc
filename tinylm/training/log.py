"""What a run records as it goes: ``log.jsonl`` (one JSON object per line) and ``loss.png``.

Training lines hold ``step``, ``loss``, ``lr``, ``tokens_per_second`` and
``threads``; evaluation lines hold ``step``, ``train_loss``, ``val_loss``,
``perplexity`` and ``elapsed`` (seconds); a skipped step (a loss or gradient
that is not finite) is a line with ``skipped``; a change of the thread count
is a line with ``threads`` and ``reason``.

A resumed run appends to the same log, after cutting it back to the
checkpoint's step: lines written after the checkpoint (by a run that was
killed) would otherwise appear twice, and a last line cut short by the kill
is dropped. A missing log starts afresh.
"""

import json
from pathlib import Path

from tinylm.files import write_atomically


def read_entries(path):
    """The entries of a log file, skipping lines that are not whole JSON objects (a write cut short)."""
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("step"), int):
            entries.append(entry)
    return entries


class TrainingLog:
    def __init__(self, out, resume_at=None):
        """A new log in ``out``, or with ``resume_at`` (a step) the existing one cut back to that step."""
        self.path = Path(out) / "log.jsonl"
        self.png = Path(out) / "loss.png"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.history = [] if resume_at is None else [e for e in read_entries(self.path) if e["step"] <= resume_at]
        text = "".join(json.dumps(entry) + "\n" for entry in self.history)
        write_atomically(self.path, lambda temporary: temporary.write_text(text, encoding="utf-8"))

    def write(self, **entry):
        self.history.append(entry)
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")

    def last(self, key):
        """The most recent entry that has ``key``, or None."""
        return next((entry for entry in reversed(self.history) if key in entry), None)

    def plot(self):
        """Draw the training and validation losses against the step into ``loss.png``."""
        import matplotlib  # loaded on first use

        matplotlib.use("Agg")  # draw to files; there may be no screen
        from matplotlib import pyplot

        steps = [e["step"] for e in self.history if "loss" in e]
        losses = [e["loss"] for e in self.history if "loss" in e]
        evals = [e for e in self.history if "val_loss" in e]
        figure, axes = pyplot.subplots(figsize=(7, 4))
        if steps:
            axes.plot(steps, losses, color="0.6", linewidth=1, label="training batch")
        if evals:
            axes.plot([e["step"] for e in evals], [e["train_loss"] for e in evals], "o-", label="train (estimate)")
            axes.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "s-", label="validation")
        axes.set_xlabel("step")
        axes.set_ylabel("cross-entropy loss (nats per token)")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        # format: the temporary name's suffix is .tmp, not .png
        write_atomically(self.png, lambda temporary: figure.savefig(temporary, dpi=100, format="png"))
        pyplot.close(figure)
