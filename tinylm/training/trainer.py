"""The training loop: random windows, AdamW with warmup and cosine decay, evaluation, checkpoints.

Step ``s`` (from 0) first evaluates when ``s`` is a multiple of
``eval_interval`` (and at the end) and writes a checkpoint, then trains on one
batch. A checkpoint saved at step ``s`` holds the weights, the optimizer and
the random generator as they are before step ``s`` trains, and whether step
``s`` has been evaluated, so ``--resume`` continues exactly as if the run had
never stopped: same batches, same dropout masks, same losses, same weights
(bit for bit where the thread count is pinned: see ``thread_tuner.py``).

What can go wrong is stopped before it does harm:

- a step whose loss or gradient norm is not finite leaves the weights alone
  (it is counted, and logged); ``MAX_SKIPPED_IN_A_ROW`` in a row stop the run;
- weights or an evaluation that are not finite are never checkpointed: the
  run stops with TrainingDiverged and the last good checkpoint stays;
- ``overwrite`` trains into a new folder beside the old run, which takes the
  old one's place only when the run ends (or is interrupted); a run that
  fails leaves the old run as it was.
"""

import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tinylm
from tinylm import backend, models, random
from tinylm.data import BUNDLED_CORPUS, load_prepared, prepare, random_windows
from tinylm.errors import CheckpointError, ConfigError, DataError, UserError
from tinylm.nn.utils import clip_grad_norm_
from tinylm.optim import AdamW
from tinylm.optim.lr_scheduler import warmup_cosine
from tinylm.training import checkpoint, footprint, runs
from tinylm.training.config import make_config, parse_keep, resume_settings, with_fixed_schedule
from tinylm.training.log import TrainingLog, read_entries


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training; a checkpoint of the last finished step was written."""

    def __init__(self, step, directory):
        super().__init__(f"interrupted at step {step}; checkpoint written to {directory}")
        self.step, self.directory = step, directory


@dataclass
class TrainResult:
    step: int
    val_loss: float
    best_val_loss: float
    train_loss: float
    seconds: float
    out: Path
    history: list = field(default_factory=list)
    skipped_steps: int = 0  # steps whose loss or gradients were not finite, and so did not update the weights


def model_config(config, vocab_size):
    """The settings that define the model's shape, as saved in checkpoints."""
    common = dict(vocab_size=vocab_size, block_size=config.block_size, n_layer=config.n_layer,
                  n_embd=config.n_embd, dropout=config.dropout)  # fmt: skip
    if config.model == "gpt":
        return dict(common, type="gpt", n_head=config.n_head, bias=config.bias)
    return dict(common, type=config.model, hidden_size=config.hidden_size)


def _load_data(config, out):
    source = Path(config.data) if config.data else BUNDLED_CORPUS
    if source.is_dir():
        return load_prepared(source)
    tokens = out / "data"
    if config.resume and (tokens / "meta.json").is_file():
        return load_prepared(tokens)  # the run's own encoding, which the checkpoint's vocabulary matches
    return prepare(source, tokens, tokenizer=config.tokenizer, vocab_size=config.vocab_size or None,
                   val_fraction=config.val_fraction)  # fmt: skip


def _check_block_size(config, data):
    for name, ids in (("training", data.train), ("validation", data.val)):
        if len(ids) <= config.block_size:
            raise DataError(
                f"--block-size {config.block_size} is larger than the {name} data ({len(ids)} tokens); "
                f"use a smaller --block-size or more text"
            )


def make_optimizer(model, config):
    """AdamW with weight decay on matrices (embeddings and weights) only, as nanoGPT."""
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


# How many evaluation batches go through the model in one forward pass.
EVAL_BATCHES_PER_PASS = 5


@tinylm.no_grad()
def estimate_loss(model, data, config, batches):
    """Mean loss over ``batches`` random batches of each split (nanoGPT's ``estimate_loss``).

    The batches are drawn one at a time, as nanoGPT draws them (so the random
    stream of a run does not depend on this), then scored several to a forward
    pass: they all hold ``batch_size`` windows, so the mean loss of a pass is
    the mean of its batches' losses, and the larger matmuls cost less per row.
    """
    model.eval()
    result = {}
    for name, ids in (("train", data.train), ("val", data.val)):
        drawn = [random_windows(ids, config.batch_size, config.block_size, config.device) for _ in range(batches)]
        total = 0.0
        for start in range(0, batches, EVAL_BATCHES_PER_PASS):
            group = drawn[start : start + EVAL_BATCHES_PER_PASS]
            inputs, targets = zip(*group)
            total += model(tinylm.cat(list(inputs)), tinylm.cat(list(targets)))[1].item() * len(group)
        result[name] = total / batches
    model.train()
    return result


class _InterruptFlag:
    """Turns Ctrl-C into a flag the loop checks between steps, so no step is left half done."""

    def __init__(self):
        self.raised = False
        self.previous = None

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            self.previous = None
        return self

    def _handle(self, signum, frame):
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class Trainer:
    """One training run: its directory, data, model, optimizer and log, ready to ``run()``.

    Everything that can be checked is checked here, before anything of an
    existing run is touched: the settings, the device, the data, whether the
    model fits in memory, and on ``resume`` the checkpoint and its settings.
    """

    def __init__(self, config, progress=True):
        self.config = config
        self.progress = progress
        self.device = _usable_device(config.device)
        self.out, self.work, self._made = _run_directories(config)
        try:
            self._set_up()
        except BaseException:
            for directory in self._made:  # a run that never started leaves nothing behind
                shutil.rmtree(directory, ignore_errors=True)
            raise
        if not (config.out or config.resume):  # a new numbered run: the one sample and eval now read
            runs.point_latest_at(self.out)

    def _set_up(self):
        config = self.config
        self.keep = parse_keep(config.keep)
        self.threads = _thread_setting(config.threads)
        self.data = _load_data(config, self.out if config.resume else self.work)
        _check_block_size(config, self.data)
        self.vocab_size = self.data.tokenizer.vocab_size
        settings = model_config(config, self.vocab_size)
        footprint.check_fits(settings, config.batch_size, config.dtype)
        tinylm.manual_seed(config.seed)
        self.model = models.build_model(settings)
        self.model.to(config.dtype).to(self.device)
        self.parameters = list(self.model.parameters())
        self.optimizer = make_optimizer(self.model, config)
        self.step, self.best_val_loss, self.evaluated = 0, math.inf, False
        self.skipped_steps, self._bad_in_a_row = 0, []
        if config.resume:
            self._restore()
        self.log = TrainingLog(self.work, resume_at=self.step if config.resume else None)

    def _restore(self):
        record, model_state, optimizer_state = checkpoint.load_checkpoint(self.out)
        self.config = make_config(("resumed run", resume_settings(record.get("train_config"), self.config.to_dict(),
                                                                  self.out)))  # fmt: skip
        expected = model_config(self.config, self.vocab_size)
        if record.get("model") != expected:
            raise CheckpointError(
                f"the checkpoint in {self.out} is of a different model or vocabulary: it has "
                f"{record.get('model')}, these settings give {expected}"
            )
        try:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"the checkpoint in {self.out} does not fit this model: {error}") from None
        random.set_rng_state(record["rng_state"])
        self.step, self.best_val_loss = record["step"], record["best_val_loss"]
        self.evaluated = record["evaluated"]
        self.skipped_steps = record.get("skipped_steps", 0)

    @property
    def finished(self):
        """Whether the run has trained all its steps and been evaluated after the last."""
        return self.step >= self.config.max_iters and self.evaluated

    def _record(self, evaluated):
        return {
            "step": self.step,
            "evaluated": evaluated,
            "best_val_loss": self.best_val_loss,
            "skipped_steps": self.skipped_steps,
            "model": model_config(self.config, self.vocab_size),
            "train_config": with_fixed_schedule(dict(self.config.to_dict(), out=str(self.out))),
            "data": self.data.meta,
            "tokenizer": self.data.tokenizer.to_payload(),
            "rng_state": random.get_rng_state(),
        }

    def _model_state(self):
        """The weights as NumPy arrays; weights that are not all finite are a TrainingDiverged, never saved."""
        state = {name: tensor.numpy() for name, tensor in self.model.state_dict().items()}
        broken = [name for name, array in state.items() if not np.isfinite(array).all()]
        if broken:
            raise TrainingDiverged(
                f"at step {self.step} the weights {', '.join(broken[:3])} are not finite; the checkpoint in "
                f"{self.out} (step {_checkpoint_step(self.work)}) was kept. {_DIVERGENCE_HINT}"
            )
        return state

    def save(self, evaluated, best=False):
        """Write the checkpoint (and with ``best`` the best one, in ``best/``, without the optimizer)."""
        model_state, record = self._model_state(), self._record(evaluated)
        checkpoint.save_checkpoint(self.work, model_state, record, self.optimizer.state_dict())
        if best:
            checkpoint.save_checkpoint(self.work / "best", model_state, record)

    def evaluate(self):
        losses = estimate_loss(self.model, self.data, self.config, self.config.eval_iters)
        if not all(math.isfinite(value) for value in losses.values()):
            raise TrainingDiverged(
                f"at step {self.step} the evaluation loss is not finite ({losses}); the checkpoint in {self.out} "
                f"(step {_checkpoint_step(self.work)}) was kept. {_DIVERGENCE_HINT}"
            )
        self.best_val_loss = min(self.best_val_loss, losses["val"])
        return losses

    def train_step(self):
        """Train on one batch; returns ``(loss, lr, problem)``.

        ``problem`` is None, or says what was not finite (the loss, or the
        gradients' norm), in which case the weights were left as they were.
        """
        config = self.config
        lr = warmup_cosine(self.step, config.lr, config.warmup_iters, config.effective_decay_iters,
                           config.effective_min_lr)  # fmt: skip
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = random_windows(self.data.train, config.batch_size, config.block_size, self.device)
        _, loss = self.model(x, y)
        self.optimizer.zero_grad()
        loss_value, problem = loss.item(), None
        if not math.isfinite(loss_value):
            problem = f"the loss is {loss_value}"
        else:
            loss.backward()
            # with no clipping, an infinite bound: the norm alone, to see that every gradient is finite
            norm = float(clip_grad_norm_(self.parameters, config.grad_clip or math.inf).item())
            if not math.isfinite(norm):
                problem = f"the gradient norm is {norm}"
        if problem is None:
            self.optimizer.step()
        self.step += 1
        return loss_value, lr, problem

    def _note_problem(self, problem):
        """Count a skipped step; after ``MAX_SKIPPED_IN_A_ROW`` in a row, stop the run."""
        if problem is None:
            self._bad_in_a_row = []
            return
        self.skipped_steps += 1
        self._bad_in_a_row.append(self.step)  # numbered as in the log: the step's count after it
        self.log.write(step=self.step, skipped=problem)
        if len(self._bad_in_a_row) >= MAX_SKIPPED_IN_A_ROW:
            steps = ", ".join(str(s) for s in self._bad_in_a_row)
            raise TrainingDiverged(
                f"{problem} at steps {steps}, each skipped; training stopped. The checkpoint in {self.out} "
                f"(step {_checkpoint_step(self.work)}) was kept. {_DIVERGENCE_HINT}"
            )

    def run(self):
        """Train to ``max_iters``; returns a TrainResult. Raises TrainingInterrupted on Ctrl-C
        (after writing a checkpoint) and TrainingDiverged when training cannot go on."""
        config = self.config
        start_time, last_loss = time.perf_counter(), math.nan
        last_eval = self.log.last("val_loss")
        val_loss = last_eval["val_loss"] if last_eval and last_eval["step"] == self.step else math.nan
        tokens_per_step = config.batch_size * config.block_size
        bar = _progress_bar(self.step, config.max_iters, self.progress)
        try:
            with _InterruptFlag() as interrupt:
                while True:
                    due = self.step % config.eval_interval == 0 or self.step == config.max_iters
                    if due and not self.evaluated:
                        previous_best = self.best_val_loss
                        losses = self.evaluate()
                        val_loss = losses["val"]
                        self.log.write(step=self.step, train_loss=losses["train"], val_loss=val_loss,
                                       perplexity=math.exp(val_loss), elapsed=time.perf_counter() - start_time)  # fmt: skip
                        self.save(evaluated=True, best="best" in self.keep and val_loss < previous_best)
                        self.evaluated = True
                        self.log.plot()
                        _report(bar, f"step {self.step}: train loss {losses['train']:.4f}, val loss {val_loss:.4f}")
                    if self.step >= config.max_iters:
                        break
                    tick = time.perf_counter()
                    last_loss, lr, problem = self.train_step()
                    self.evaluated = False
                    seconds = time.perf_counter() - tick
                    self.threads.step_finished(seconds)
                    for event in self.threads.take_events():  # a choice of thread count, with its timings
                        self.log.write(**dict(event, step=self.step))
                    self._note_problem(problem)
                    if self.step % config.log_interval == 0:
                        self.log.write(step=self.step, loss=last_loss, lr=lr,
                                       tokens_per_second=tokens_per_step / seconds, threads=self.threads.threads)  # fmt: skip
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(f"loss {last_loss:.4f}, {tokens_per_step / seconds:,.0f} tok/s, "
                                            f"{self.threads.describe()}")  # fmt: skip
                    if interrupt.raised:
                        self.save(evaluated=False)
                        raise TrainingInterrupted(self.step, self.out)
        except TrainingInterrupted:
            self._finish()
            raise
        except BaseException:
            self._abandon()
            raise
        finally:
            if bar is not None:
                bar.close()
        self._finish()
        return TrainResult(self.step, val_loss, self.best_val_loss, last_loss, time.perf_counter() - start_time,
                           self.out, self.log.history, self.skipped_steps)  # fmt: skip

    def _finish(self):
        """With --overwrite the new run was written beside the old one: now it takes its place."""
        if self.work != self.out:
            replaced = self.out.with_name(f".{self.out.name}.replaced")
            shutil.rmtree(replaced, ignore_errors=True)
            os.replace(self.out, replaced)
            os.replace(self.work, self.out)
            shutil.rmtree(replaced, ignore_errors=True)
            self.work = self.out

    def _abandon(self):
        """A run that failed under --overwrite leaves the old run as it was, and no trace of itself."""
        if self.work != self.out:
            shutil.rmtree(self.work, ignore_errors=True)


_DIVERGENCE_HINT = "A lower --lr, or --grad-clip, may help."

#: Steps in a row with a loss or gradient that is not finite before a run stops.
MAX_SKIPPED_IN_A_ROW = 3


class TrainingDiverged(UserError):
    """The loss, gradients or weights stopped being finite; the last good checkpoint was kept."""


def _checkpoint_step(directory):
    """The step of the checkpoint in ``directory``, for a message; "none yet" where there is none."""
    try:
        return checkpoint.read_record(directory)["step"]
    except CheckpointError:
        return "none yet"


def _usable_device(device):
    """``"cpu"`` or ``"cuda"``, or a ConfigError saying why ``device`` cannot be used here."""
    try:
        return backend.normalize_device(device)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(f"--device {device}: {error}") from None


def _run_directories(config):
    """``(out, work, made)``: where the run lives, where it writes (a new folder beside ``out``
    with ``overwrite``, swapped in when the run ends), and the folders made here."""
    if config.resume:  # the run itself, or a runs folder's latest
        out = runs.run_directory(config.out or None)
        return out, out, []
    if not config.out:
        out = runs.new_run_directory()
        return out, out, [out]
    out = Path(config.out)
    existed = out.exists()
    runs.make_directory(out)
    if not checkpoint.has_checkpoint(out):
        return out, out, [] if existed else [out]
    if not config.overwrite:
        raise ConfigError(
            f"{out} already holds a checkpoint: pass --resume to continue it, --overwrite to start over, "
            f"or leave out --out for a new numbered run"
        )
    work = out.with_name(f".{out.name}.overwrite")
    shutil.rmtree(work, ignore_errors=True)  # left by an earlier run that was killed
    work.mkdir()
    return out, work, [work]


def _thread_setting(threads):
    """The thread tuner: ``threads`` pins the count; 0 lets it choose by measuring the steps."""
    from tinylm.training.thread_tuner import ThreadTuner

    try:
        return ThreadTuner(pinned=threads or None)
    except ValueError as error:
        raise ConfigError(f"--threads {threads}: {error}") from None


def _progress_bar(start, total, enabled):
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm  # loaded on first use

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def _report(bar, message):
    if bar is not None:
        bar.write(message)
    else:
        print(message, file=sys.stderr, flush=True)


def train(config, progress=True):
    """Train a model with ``config`` (a TrainConfig); returns a TrainResult."""
    return Trainer(config, progress).run()


def read_log(out):
    """The entries of a run's ``log.jsonl`` (a line cut short by a kill is skipped)."""
    return read_entries(Path(out) / "log.jsonl")
