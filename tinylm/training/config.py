"""The settings of a training run, from defaults, a TOML/JSON file, and command-line flags.

Defaults are nanoGPT's Shakespeare-char choices for the CPU (4 layers of 4
heads, 128-wide, block 64, batch 12, AdamW with betas (0.9, 0.99) and weight
decay 0.1 on matrices, lr 1e-3 with 100 warmup steps and cosine decay to
lr/10, gradient clipping at 1.0, no dropout), with a short run by default.
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


@dataclass
class TrainConfig:
    # data
    data: str = ""  # a text file, or a directory made by `tinylm prepare`; empty: the bundled Tiny Shakespeare
    tokenizer: str = "char"  # char | word | bpe (for a text file)
    vocab_size: int = 0  # for word and bpe; 0: the tokenizer's default
    val_fraction: float = 0.1
    # model
    model: str = "gpt"  # gpt | lstm | gru | rnn
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    hidden_size: int = 256  # the recurrent models' state size
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = False  # biases in the GPT's linear and norm layers (nanoGPT trains without)
    # optimisation
    batch_size: int = 12
    max_iters: int = 600
    lr: float = 1e-3
    min_lr: float = 0.0  # 0: lr / 10
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # 0: max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0: no clipping
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    out: str = "out"
    resume: bool = False
    overwrite: bool = False
    # running
    seed: int = 1337
    device: str = "cpu"
    threads: int = 0  # CPU threads for BLAS and the Numba kernels; 0: one per core
    dtype: str = "float32"
    _sources: list = field(default_factory=list, repr=False, compare=False)

    @property
    def effective_min_lr(self):
        return self.min_lr or self.lr / 10

    @property
    def effective_decay_iters(self):
        return self.lr_decay_iters or self.max_iters

    def to_dict(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig) if not f.name.startswith("_")}


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
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
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


def make_config(*layers):
    """A validated TrainConfig from dicts of settings, later ones overriding earlier ones.

    Each layer is ``(source name, dict)``; an unknown key is a ConfigError that
    names it, its source and the nearest known keys.
    """
    config = TrainConfig()
    for source, values in layers:
        for key, value in values.items():
            name = key.replace("-", "_")
            if name not in FIELDS:
                raise ConfigError(f"{source}: unknown setting {key!r}{_suggestion(name)}")
            setattr(config, name, _coerce(name, value, source))
        config._sources.append(source)
    validate(config)
    return config


def _suggestion(name):
    import difflib

    close = difflib.get_close_matches(name, FIELDS, n=2)
    return f" (did you mean {' or '.join(c.replace('_', '-') for c in close)}?)" if close else ""


def validate(config):
    """Reject settings that cannot work, naming the setting and the allowed values."""

    def need(condition, message):
        if not condition:
            raise ConfigError(message)

    need(config.model in MODELS, f"model must be one of {', '.join(MODELS)}, got {config.model!r}")
    need(config.tokenizer in TOKENIZERS, f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {config.tokenizer!r}")
    need(config.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    for name in ("n_layer", "n_head", "n_embd", "hidden_size", "block_size", "batch_size", "eval_interval",
                 "eval_iters", "log_interval"):  # fmt: skip
        need(getattr(config, name) >= 1, f"{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    for name in ("max_iters", "warmup_iters", "lr_decay_iters", "vocab_size", "seed", "threads"):
        need(getattr(config, name) >= 0, f"{name.replace('_', '-')} must not be negative, got {getattr(config, name)}")
    need(config.model != "gpt" or config.n_embd % config.n_head == 0,
         f"n-embd ({config.n_embd}) must be a multiple of n-head ({config.n_head})")  # fmt: skip
    need(0.0 <= config.dropout < 1.0, f"dropout must be in [0, 1), got {config.dropout}")
    need(0.0 < config.val_fraction < 1.0, f"val-fraction must be in (0, 1), got {config.val_fraction}")
    need(config.lr > 0 and math.isfinite(config.lr), f"lr must be positive, got {config.lr}")
    need(config.min_lr >= 0 and config.weight_decay >= 0 and config.grad_clip >= 0,
         "min-lr, weight-decay and grad-clip must not be negative")  # fmt: skip
    need(0.0 <= config.beta1 < 1.0 and 0.0 <= config.beta2 < 1.0, "beta1 and beta2 must be in [0, 1)")
    need(not (config.resume and config.overwrite), "--resume and --overwrite cannot go together")
    need(config.device in ("cpu", "cuda", "cuda:0"), f"device must be cpu or cuda, got {config.device!r}")
