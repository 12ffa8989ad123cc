"""The settings of a training run, from defaults, a TOML/JSON file, and command-line flags.

Defaults are nanoGPT's Shakespeare-char choices for the CPU (4 layers of 4
heads, 128-wide, block 64, batch 12, AdamW with betas (0.9, 0.99) and weight
decay 0.1 on matrices, lr 1e-3 with 100 warmup steps and cosine decay to
lr/10, gradient clipping at 1.0, no dropout), with a short run by default.

A resumed run takes its settings from its checkpoint (:func:`resume_settings`):
only the ones in :data:`MAY_CHANGE_ON_RESUME` may be given again with another
value.
"""

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tinylm.errors import ConfigError

MODELS = ("gpt", "lstm", "gru", "rnn")
TOKENIZERS = ("char", "word", "bpe")
DTYPES = ("float32", "float64")
KEEP = ("latest", "best")


def _setting(default, help):
    """A field of TrainConfig with the help text that ``tinylm train --help`` shows."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # data
    data: str = _setting("", "a UTF-8 text file, or a directory made by `tinylm prepare` (default: the bundled Tiny "
                             "Shakespeare)")  # fmt: skip
    tokenizer: str = _setting("char", "how a text file is cut into tokens: char, word or bpe")
    vocab_size: int = _setting(0, "the vocabulary size for word and bpe (0: 10000 words, 1000 BPE tokens)")
    val_fraction: float = _setting(0.1, "the fraction of a text file kept for validation, in (0, 1)")
    # model
    model: str = _setting("gpt", "the model: gpt, lstm, gru or rnn")
    n_layer: int = _setting(4, "the number of layers")
    n_head: int = _setting(4, "attention heads per layer (gpt); must divide n-embd")
    n_embd: int = _setting(128, "the width: embedding size (and the gpt's residual width)")
    hidden_size: int = _setting(256, "the state size of the recurrent models")
    block_size: int = _setting(64, "the context length in tokens: windows of this many tokens are trained on")
    dropout: float = _setting(0.0, "the dropout probability, in [0, 1)")
    bias: bool = _setting(False, "biases in the gpt's linear and norm layers (nanoGPT trains without)")
    # optimisation
    batch_size: int = _setting(12, "windows per training step")
    max_iters: int = _setting(600, "training steps in all (may change on --resume)")
    lr: float = _setting(1e-3, "the peak learning rate (AdamW)")
    min_lr: float = _setting(0.0, "the learning rate at the end of the cosine decay (0: lr / 10)")
    warmup_iters: int = _setting(100, "steps of linear warm-up from 0 to lr")
    lr_decay_iters: int = _setting(0, "the step where the cosine decay reaches min-lr (0: max-iters)")
    weight_decay: float = _setting(0.1, "AdamW's decoupled weight decay on matrices, >= 0")
    beta1: float = _setting(0.9, "AdamW's beta1, in [0, 1)")
    beta2: float = _setting(0.99, "AdamW's beta2, in [0, 1)")
    grad_clip: float = _setting(1.0, "clip the global gradient norm to this (0: no clipping)")
    # evaluation, logging, checkpoints
    eval_interval: int = _setting(250, "evaluate and write a checkpoint every this many steps")
    eval_iters: int = _setting(20, "batches per split in each evaluation")
    log_interval: int = _setting(10, "write the training loss to log.jsonl every this many steps")
    out: str = _setting("", "the run directory (default: a new out/run-NNN, with out/latest pointing at it)")
    keep: str = _setting("latest", "checkpoints to keep: latest, or best,latest (also the best by val loss, in "
                                   "OUT/best)")  # fmt: skip
    resume: bool = _setting(False, "continue the run in --out (default: out/latest) with its own settings")
    overwrite: bool = _setting(False, "start over in an --out that holds a run (replaced only when the new run ends)")
    # running
    seed: int = _setting(1337, "the random seed (weights, batches, dropout)")
    device: str = _setting("cpu", "cpu or cuda")
    threads: int = _setting(0, "CPU threads for BLAS and the kernels (0: chosen by measuring the steps)")
    dtype: str = _setting("float32", "float32 or float64")

    @property
    def effective_min_lr(self):
        return self.min_lr or self.lr / 10

    @property
    def effective_decay_iters(self):
        return self.lr_decay_iters or self.max_iters

    def to_dict(self):
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

#: What a resumed run may be given with a new value: how long it runs, how often it
#: evaluates and logs, what it keeps, and where it runs. Everything else (the model,
#: the data, the tokenizer, the optimizer and its schedule) comes from the checkpoint.
MAY_CHANGE_ON_RESUME = ("max_iters", "eval_interval", "eval_iters", "log_interval", "keep", "threads", "device")

# Not settings of the run but of this command: where the run is, and how it starts.
_HOW_IT_STARTS = ("out", "resume", "overwrite")


def flag(name):
    return "--" + name.replace("_", "-")


def _coerce(name, value, source):
    """``value`` as the type of field ``name``, or a ConfigError naming both."""
    kind = type(FIELDS[name].default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(value, str):
        return value
    raise ConfigError(f"{source}: {name} must be a {kind.__name__}, got {value!r}")


def read_config_file(path):
    """The settings in a TOML or JSON file, as a dict (keys may use - or _)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"config file {path} is "
                          "not a file")  # fmt: skip
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover (Python 3.10)
                import tomli as tomllib
            values = tomllib.loads(text)
    except ValueError as error:
        raise ConfigError(f"config file {path} cannot be parsed: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of settings")
    return values


def normalized_settings(source, values):
    """``values`` with ``-`` in keys turned to ``_`` and each value coerced to its field's type."""
    settings = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"{source}: unknown setting {key!r}{_suggestion(name)}")
        settings[name] = _coerce(name, value, source)
    return settings


def make_config(*layers):
    """A validated TrainConfig from dicts of settings, later ones overriding earlier ones.

    Each layer is ``(source name, dict)``; an unknown key is a ConfigError that
    names it, its source and the nearest known keys.
    """
    config = TrainConfig()
    for source, values in layers:
        for name, value in normalized_settings(source, values).items():
            setattr(config, name, value)
    validate(config)
    return config


def with_fixed_schedule(settings):
    """``settings`` (a dict) with ``min_lr`` and ``lr_decay_iters`` written out as numbers.

    A checkpoint records them so: their defaults follow ``lr`` and ``max_iters``,
    and a resumed run that trains for longer must not move its schedule (the
    learning rate would jump). Past ``lr_decay_iters`` it stays at ``min_lr``.
    """
    fixed = dict(settings)
    fixed["min_lr"] = fixed.get("min_lr") or fixed["lr"] / 10
    fixed["lr_decay_iters"] = fixed.get("lr_decay_iters") or fixed["max_iters"]
    return fixed


def resume_settings(saved, given, directory):
    """The settings of a resumed run: the checkpoint's ``saved`` ones, with ``given`` (a dict of
    settings named on the command line or in a config file) for those that may change.

    A given setting outside :data:`MAY_CHANGE_ON_RESUME` whose value differs from
    the run's is a ConfigError naming it and both values.
    """
    if not isinstance(saved, dict):
        raise ConfigError(f"the checkpoint in {directory} does not record its settings (train_config)")
    recorded = normalized_settings(f"the checkpoint in {directory}", {k: v for k, v in saved.items() if k in FIELDS})
    saved = with_fixed_schedule({**{name: spec.default for name, spec in FIELDS.items()}, **recorded})
    given = normalized_settings("the given settings", given)
    for name in ("min_lr", "lr_decay_iters"):  # 0 is "the default", which for a resumed run is its own schedule
        if given.get(name) == 0:
            del given[name]
    for name, value in given.items():
        if name not in MAY_CHANGE_ON_RESUME + _HOW_IT_STARTS and name in saved and value != saved[name]:
            may = ", ".join(flag(n) for n in MAY_CHANGE_ON_RESUME[:-1]) + " and " + flag(MAY_CHANGE_ON_RESUME[-1])
            raise ConfigError(
                f"--resume: {flag(name)} {value!r} differs from the run's {saved[name]!r} (its checkpoint in "
                f"{directory} keeps its settings; only {may} may change)"
            )
    return dict(saved, **given)


def _suggestion(name):
    import difflib

    close = difflib.get_close_matches(name, FIELDS, n=2)
    return f" (did you mean {' or '.join(c.replace('_', '-') for c in close)}?)" if close else ""


def parse_keep(keep):
    """The set of checkpoints ``--keep`` names ("latest" or "best,latest"), or a ConfigError."""
    names = {part.strip() for part in keep.split(",") if part.strip()}
    if not names <= set(KEEP) or "latest" not in names:
        raise ConfigError(f"keep must be latest or best,latest (the latest is what --resume reads), got {keep!r}")
    return names


def validate(config):
    """Reject settings that cannot work, naming the setting, what was given and what is allowed."""

    def need(condition, message):
        if not condition:
            raise ConfigError(message)

    need(config.model in MODELS, f"model must be one of {', '.join(MODELS)}, got {config.model!r}")
    need(config.tokenizer in TOKENIZERS, f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {config.tokenizer!r}")
    need(config.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    for name in ("n_layer", "n_head", "n_embd", "hidden_size", "block_size", "batch_size", "eval_interval",
                 "eval_iters", "log_interval"):  # fmt: skip
        need(getattr(config, name) >= 1, f"{flag(name)} must be at least 1, got {getattr(config, name)}")
    for name in ("max_iters", "warmup_iters", "lr_decay_iters", "vocab_size", "seed", "threads"):
        need(getattr(config, name) >= 0, f"{flag(name)} must not be negative, got {getattr(config, name)}")
    need(config.seed < 2**63, f"--seed must be below 2**63, got {config.seed}")
    need(config.tokenizer != "char" or config.vocab_size == 0,
         f"--vocab-size {config.vocab_size} is for the word and bpe tokenizers; a char tokenizer's vocabulary is "
         "the text's characters")  # fmt: skip
    need(config.model != "gpt" or config.n_embd % config.n_head == 0,
         f"n-embd ({config.n_embd}) must be a multiple of n-head ({config.n_head})")  # fmt: skip
    for name in ("dropout", "beta1", "beta2"):
        value = getattr(config, name)
        need(0.0 <= value < 1.0, f"{flag(name)} must be in [0, 1), got {value}")
    need(0.0 < config.val_fraction < 1.0, f"--val-fraction must be in (0, 1), got {config.val_fraction}")
    need(math.isfinite(config.lr) and config.lr > 0, f"--lr must be a positive finite number, got {config.lr}")
    for name in ("min_lr", "weight_decay", "grad_clip"):
        value = getattr(config, name)
        need(math.isfinite(value) and value >= 0, f"{flag(name)} must be a finite number >= 0, got {value}")
    need(config.min_lr <= config.lr, f"--min-lr ({config.min_lr}) must not exceed --lr ({config.lr})")
    need(not (config.resume and config.overwrite), "--resume and --overwrite cannot go together")
    need(config.device in ("cpu", "cuda", "cuda:0"), f"--device must be cpu or cuda, got {config.device!r}")
    parse_keep(config.keep)
