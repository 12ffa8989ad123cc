"""The training loop: random windows, AdamW with warmup and cosine decay, evaluation, checkpoints.

Step ``s`` (from 0) first evaluates when ``s`` is a multiple of
``eval_interval`` (and at the end) and writes a checkpoint, then trains on one
batch. A checkpoint saved at step ``s`` holds the weights, the optimizer and
the random generator as they are before step ``s`` trains, and whether step
``s`` has been evaluated, so ``--resume`` continues exactly as if the run had
never stopped: same batches, same dropout masks, same losses, same weights.
"""

import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tinylm
from tinylm import models, random
from tinylm.data import BUNDLED_CORPUS, load_prepared, prepare, random_windows
from tinylm.errors import CheckpointError, ConfigError, DataError
from tinylm.nn.utils import clip_grad_norm_
from tinylm.optim import AdamW
from tinylm.optim.lr_scheduler import warmup_cosine
from tinylm.training import checkpoint
from tinylm.training.log import TrainingLog


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
    def __init__(self, config, progress=True):
        self.config = config
        self.out = Path(config.out)
        self.progress = progress
        if checkpoint.has_checkpoint(self.out) and not (config.resume or config.overwrite):
            raise ConfigError(
                f"{self.out} already holds a checkpoint: pass --resume to continue it or --overwrite to start over"
            )
        if config.resume and not checkpoint.has_checkpoint(self.out):
            raise CheckpointError(f"--resume: no checkpoint in {self.out} to continue")
        # Also with the default (0: one thread per core), so that OpenBLAS runs on Numba's threads
        # (kernels/blas_pool.py). 2 threads are fastest on an idle 2-core machine, 1 when another
        # job holds a core.
        if config.device == "cpu" or config.threads:
            from tinylm.kernels import configure_threads

            try:
                configure_threads(config.threads or None)
            except ValueError as error:
                raise ConfigError(f"--threads {config.threads}: {error}") from None
        self.data = _load_data(config, self.out)
        _check_block_size(config, self.data)
        self.vocab_size = self.data.tokenizer.vocab_size
        tinylm.manual_seed(config.seed)
        self.model = models.build_model(model_config(config, self.vocab_size))
        self.model.to(config.dtype).to(config.device)
        self.optimizer = make_optimizer(self.model, config)
        self.step, self.best_val_loss, self.evaluated = 0, math.inf, False
        if config.resume:
            self._restore()
        self.log = TrainingLog(self.out, fresh=not config.resume)

    def _restore(self):
        record, model_state, optimizer_state = checkpoint.load_checkpoint(self.out)
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

    def save(self, evaluated):
        record = {
            "step": self.step,
            "evaluated": evaluated,
            "best_val_loss": self.best_val_loss,
            "model": model_config(self.config, self.vocab_size),
            "train_config": self.config.to_dict(),
            "data": self.data.meta,
            "tokenizer": self.data.tokenizer.to_payload(),
            "rng_state": random.get_rng_state(),
        }
        model_state = {name: tensor.numpy() for name, tensor in self.model.state_dict().items()}
        checkpoint.save_checkpoint(self.out, model_state, record, self.optimizer.state_dict())

    def evaluate(self):
        losses = estimate_loss(self.model, self.data, self.config, self.config.eval_iters)
        self.best_val_loss = min(self.best_val_loss, losses["val"])
        return losses

    def train_step(self):
        config = self.config
        lr = warmup_cosine(self.step, config.lr, config.warmup_iters, config.effective_decay_iters,
                           config.effective_min_lr)  # fmt: skip
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = random_windows(self.data.train, config.batch_size, config.block_size, config.device)
        _, loss = self.model(x, y)
        self.optimizer.zero_grad()
        loss.backward()
        if config.grad_clip:
            clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.step += 1
        return loss.item(), lr

    def run(self):
        config = self.config
        start_time, last_loss, val_loss = time.perf_counter(), math.nan, math.nan
        tokens_per_step = config.batch_size * config.block_size
        bar = _progress_bar(self.step, config.max_iters, self.progress)
        with _InterruptFlag() as interrupt:
            while True:
                due = self.step % config.eval_interval == 0 or self.step == config.max_iters
                if due and not self.evaluated:
                    losses = self.evaluate()
                    val_loss = losses["val"]
                    self.log.write(step=self.step, train_loss=losses["train"], val_loss=val_loss,
                                   perplexity=math.exp(val_loss), elapsed=time.perf_counter() - start_time)  # fmt: skip
                    self.save(evaluated=True)
                    self.log.plot()
                    _report(bar, f"step {self.step}: train loss {losses['train']:.4f}, val loss {val_loss:.4f}")
                if self.step >= config.max_iters:
                    break
                tick = time.perf_counter()
                last_loss, lr = self.train_step()
                self.evaluated = False
                seconds = time.perf_counter() - tick
                if self.step % config.log_interval == 0:
                    self.log.write(step=self.step, loss=last_loss, lr=lr, tokens_per_second=tokens_per_step / seconds)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{tokens_per_step / seconds:,.0f}")
                if interrupt.raised:
                    self.save(evaluated=False)
                    if bar is not None:
                        bar.close()
                    raise TrainingInterrupted(self.step, self.out)
        if bar is not None:
            bar.close()
        return TrainResult(self.step, val_loss, self.best_val_loss, last_loss, time.perf_counter() - start_time,
                           self.out, self.log.history)  # fmt: skip


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
    path = Path(out) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
