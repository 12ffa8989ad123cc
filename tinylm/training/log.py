"""What a run records as it goes: ``log.jsonl`` (one JSON object per line) and ``loss.png``.

Training lines hold ``step``, ``loss``, ``lr`` and ``tokens_per_second``;
evaluation lines hold ``step``, ``train_loss``, ``val_loss``, ``perplexity`` and
``elapsed`` (seconds). A resumed run appends to the same log.
"""

import json
from pathlib import Path

from tinylm.files import write_atomically


class TrainingLog:
    def __init__(self, out, fresh=True):
        self.path = Path(out) / "log.jsonl"
        self.png = Path(out) / "loss.png"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.path.write_text("")
            self.history = []
        else:
            self.history = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, **entry):
        self.history.append(entry)
        with open(self.path, "a") as file:
            file.write(json.dumps(entry) + "\n")

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
