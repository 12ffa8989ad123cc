"""Checkpoints: arrays in a safetensors file, everything else in ``ckpt.json``.

A checkpoint directory holds ``ckpt.json`` and the weights file it names,
``ckpt-<step>.safetensors`` (model parameters under ``model.<name>``, optimizer
moments under ``optimizer.<index>.<name>``). Loading runs no code: safetensors
and JSON are data only, never pickle.

Writing is crash-safe. The weights go to a new file (written under a temporary
name, flushed to disk, then renamed); then ``ckpt.json``, which records the
weights file's name, size and SHA-256, replaces the old one by a rename. That
rename is the commit: until it happens the previous checkpoint is whole, and
a weights file that does not match its record is reported, never loaded.

Loading trusts nothing in the directory, which a person may have edited:
``ckpt.json`` is checked against the schema below (every field the trainer
reads, present and of its type), the weights file must be a plain file in the
directory, and every tensor must be of a floating dtype and finite. Anything
else is a ``CheckpointError`` naming the file, the field or tensor, what it
holds and what was expected. ``load_checkpoint(directory, optimizer=False)``
leaves the optimizer's state unread, for ``sample`` and ``eval``.
"""

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from tinylm.errors import CheckpointError
from tinylm.files import write_atomically

FORMAT = "tinylm-checkpoint"
VERSION = 1
RECORD = "ckpt.json"

# The tensor dtypes a checkpoint may hold, by their safetensors names: floating
# ones, which a model of either dtype (float32, float64) can take. An integer
# tensor is refused, not cast: a hand-converted int32 embedding would load as
# the truncated weights (all zeros, as GPT's weights are all below 1).
FLOAT_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def _optimizer_arrays(optimizer_state):
    """Split an optimizer state dict into its arrays (for safetensors) and the rest (for JSON)."""
    arrays, scalars = {}, {}
    for index, entries in optimizer_state["state"].items():
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return arrays, {"param_groups": optimizer_state["param_groups"], "scalars": scalars}


def save_checkpoint(directory, model_state, record, optimizer_state=None):
    """Write a checkpoint of ``model_state`` (name -> array) and ``optimizer_state`` (an
    ``Optimizer.state_dict()``) with the JSON-serialisable ``record`` (which must hold ``step``)."""
    from safetensors.numpy import save  # loaded on first use: `import tinylm` stays light

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"model.{name}": np.ascontiguousarray(value) for name, value in model_state.items()}
    document = dict(record, format=FORMAT, version=VERSION)
    if optimizer_state is not None:
        optimizer_arrays, document["optimizer"] = _optimizer_arrays(optimizer_state)
        arrays.update({name: np.ascontiguousarray(value) for name, value in optimizer_arrays.items()})
    payload = save(arrays)
    weights = f"ckpt-{int(record['step']):08d}.safetensors"
    write_atomically(directory / weights, lambda temporary: temporary.write_bytes(payload))
    document["weights"] = {"file": weights, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    write_atomically(directory / RECORD, lambda temporary: temporary.write_text(json.dumps(document, indent=2)))
    for stale in directory.glob("ckpt-*.safetensors"):
        if stale.name != weights:
            stale.unlink()
    return directory / RECORD


def has_checkpoint(directory):
    return (Path(directory) / RECORD).is_file()


# ----- the schema of ckpt.json ----------------------------------------------------------
# Each check takes a JSON value and says whether it is of the expected kind.


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value):
    return _is_int(value) and value >= 0


def _is_sha256(value):
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _is_file_name(value):
    """A plain file name: nothing that reaches out of the directory (a path, ``..``, an absolute name)."""
    return (isinstance(value, str) and value not in ("", ".", "..") and not any(c in value for c in "/\\\0")
            and Path(value).name == value)  # fmt: skip


def _is_loss(value):
    return _is_number(value) and value >= 0  # a NaN fails the comparison; infinity means "not evaluated yet"


def _is_tokenizer(value):
    return isinstance(value, dict) and isinstance(value.get("type"), str) and "version" in value


# What ckpt.json must hold: field (dotted to reach into a section) -> (what is expected, its check).
RECORD_FIELDS = {
    "weights": ("an object", lambda v: isinstance(v, dict)),
    "weights.file": ("a plain file name in the checkpoint's directory (no '/', '\\' or '..')", _is_file_name),
    "weights.bytes": ("a non-negative integer", _is_count),
    "weights.sha256": ("64 lowercase hexadecimal digits", _is_sha256),
    "step": ("a non-negative integer", _is_count),
    "evaluated": ("true or false", lambda v: isinstance(v, bool)),
    "best_val_loss": ("a non-negative number (Infinity before the first evaluation)", _is_loss),
    "rng_state": ("an object (a random generator's state)", lambda v: isinstance(v, dict)),
    "model": ("an object (the model's settings)", lambda v: isinstance(v, dict)),
    "tokenizer": ("an object with a string 'type' and a 'version'", _is_tokenizer),
}

# The optimizer's section: its parameter groups (each a list of parameter indices and
# that group's settings) and the per-parameter numbers (Adam's step count); its arrays are in the weights file.
OPTIMIZER_FIELDS = {
    "optimizer": ("an object (the optimizer's state)", lambda v: isinstance(v, dict)),
    "optimizer.param_groups": ("a non-empty list of objects",
                               lambda v: isinstance(v, list) and v and all(isinstance(g, dict) for g in v)),
    "optimizer.scalars": ("an object (parameter index -> its numbers)",
                          lambda v: isinstance(v, dict) and all(isinstance(e, dict) for e in v.values())),
}  # fmt: skip

# The settings a parameter group may hold, as SGD, Adam and AdamW name them; the
# optimizer that loads the state checks that they are the ones it has.
GROUP_SETTINGS = {
    "params": ("a list of parameter indices (integers from 0)",
               lambda v: isinstance(v, list) and all(_is_count(i) for i in v)),
    "lr": ("a non-negative finite number", lambda v: _is_number(v) and 0 <= v < math.inf),
    "eps": ("a non-negative finite number", lambda v: _is_number(v) and 0 <= v < math.inf),
    "weight_decay": ("a non-negative finite number", lambda v: _is_number(v) and 0 <= v < math.inf),
    "momentum": ("a non-negative finite number", lambda v: _is_number(v) and 0 <= v < math.inf),
    "dampening": ("a finite number", lambda v: _is_number(v) and math.isfinite(v)),
    "betas": ("a list of two numbers in [0, 1)",
              lambda v: isinstance(v, list) and len(v) == 2 and all(_is_number(b) and 0 <= b < 1 for b in v)),
    "nesterov": ("true or false", lambda v: isinstance(v, bool)),
}  # fmt: skip

# A parameter's numbers in "scalars": Adam's step count; any other must at least be a number.
PARAMETER_SCALARS = {"step": ("an integer from 1", lambda v: _is_int(v) and v >= 1)}
ANY_SCALAR = ("a finite number or true/false", lambda v: isinstance(v, bool) or (_is_number(v) and math.isfinite(v)))

_MISSING = object()


def _shown(value):
    """A JSON value as the message shows it: short, and as it appears in the file."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _refuse(record_path, field, value, expected):
    given = "missing" if value is _MISSING else _shown(value)
    raise CheckpointError(f"{record_path}: {field} is {given}, expected {expected}")


def _check_fields(document, fields, record_path, prefix=""):
    """Check ``document``'s ``fields`` (a table like ``RECORD_FIELDS``), in order (a section before its
    fields), raising CheckpointError for the first that is missing or not what its table entry expects.
    ``prefix`` names the section ``document`` is."""
    for field, (expected, check) in fields.items():
        value = document
        for key in field.split("."):
            value = value.get(key, _MISSING)
            if value is _MISSING:
                _refuse(record_path, prefix + field, value, expected)
        if not check(value):
            _refuse(record_path, prefix + field, value, expected)


def read_record(directory, optimizer=False):
    """``ckpt.json`` of ``directory``, parsed and checked (the weights are not read): every field in ``RECORD_FIELDS`` (and with
    ``optimizer``, the optimizer's section) present and of its type, the model's settings possible."""
    from tinylm import random
    from tinylm.models import model_config

    record_path = Path(directory) / RECORD
    if not record_path.is_file():
        raise CheckpointError(f"no checkpoint in {directory} ({RECORD} is missing)")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{record_path} is not valid JSON ({error})") from None
    except OSError as error:
        raise CheckpointError(f"{record_path} cannot be read ({error.strerror or error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{record_path} is not a tinylm checkpoint")
    if record.get("version") != VERSION:
        raise CheckpointError(f"{record_path} has format version {record.get('version')}, this tinylm reads {VERSION}")
    _check_fields(record, RECORD_FIELDS, record_path)
    try:
        model_config(record["model"], complete=True)
    except ValueError as error:
        raise CheckpointError(f"{record_path}: the model section describes no possible model: {error}") from None
    try:
        random.check_rng_state(record["rng_state"])
    except ValueError as error:
        raise CheckpointError(f"{record_path}: rng_state is not a generator state tinylm saved: {error}") from None
    if optimizer:
        _check_fields(record, OPTIMIZER_FIELDS, record_path)
        _check_optimizer_section(record["optimizer"], record_path)
    return record


def _check_optimizer_section(section, record_path):
    """Each parameter group's settings and the per-parameter numbers, by the tables above; every
    parameter index in one group only, and the numbers only for parameters that some group lists."""
    listed = set()
    for number, group in enumerate(section["param_groups"]):
        prefix = f"optimizer.param_groups[{number}]."
        _check_fields(group, {"params": GROUP_SETTINGS["params"]}, record_path, prefix)
        known = {name: rule for name, rule in GROUP_SETTINGS.items() if name in group}
        _check_fields(group, known, record_path, prefix)
        for index in group["params"]:
            if index in listed:
                raise CheckpointError(f"{record_path}: {prefix}params lists parameter {index} a second time, "
                                      f"expected each parameter in one group, once")  # fmt: skip
            listed.add(index)
    for index, scalars in section["scalars"].items():
        if not (index.isdecimal() and int(index) in listed):
            raise CheckpointError(f"{record_path}: optimizer.scalars has an entry {_shown(index)}, expected the "
                                  f"index of a parameter that param_groups lists ({_ranges(listed)})")  # fmt: skip
        for name, value in scalars.items():
            expected, check = PARAMETER_SCALARS.get(name, ANY_SCALAR)
            if not check(value):
                _refuse(record_path, f"optimizer.scalars.{index}.{name}", value, expected)


def _ranges(indices):
    """``0-8`` for the indices 0 to 8, or the list itself when they are not one run."""
    indices = sorted(indices)
    if indices and indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}-{indices[-1]}"
    return ", ".join(map(str, indices)) or "none"


# ----- loading ----------------------------------------------------------------------------


def _read_weights(directory, record):
    """The bytes of the weights file ``record`` names, checked against its recorded size and SHA-256."""
    weights = record["weights"]
    weights_path = directory / weights["file"]  # a plain name (checked): it cannot leave the directory
    if weights_path.is_symlink():  # ... but a link could take it anywhere
        raise CheckpointError(f"the weights file {weights_path} named by {directory / RECORD} is a symbolic link, "
                              f"expected a plain file in the checkpoint's directory")  # fmt: skip
    if not weights_path.exists():
        raise CheckpointError(f"the weights file {weights_path} named by {directory / RECORD} is missing")
    try:
        payload = weights_path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"the weights file {weights_path} cannot be read ({error.strerror or error})") from None
    if len(payload) != weights["bytes"] or hashlib.sha256(payload).hexdigest() != weights["sha256"]:
        raise CheckpointError(
            f"{weights_path} is truncated or corrupt ({len(payload)} bytes, the checkpoint recorded "
            f"{weights['bytes']} bytes and another SHA-256)"
        )
    return weights_path, payload


def _tensors(weights_path, payload, optimizer):
    """The tensors of a safetensors file, by name: the model's always, the optimizer's if ``optimizer``
    (otherwise they are not even decoded). Each must be of a ``FLOAT_DTYPES`` dtype and finite."""
    from safetensors import SafetensorError, deserialize  # loaded on first use: `import tinylm` stays light

    try:
        entries = deserialize(payload)
    except SafetensorError as error:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({error})") from None
    arrays = {}
    for name, entry in entries:
        if name.startswith("optimizer.") and not optimizer:
            continue
        if not name.startswith(("model.", "optimizer.")):
            raise CheckpointError(f"{weights_path} holds a tensor {name!r}, expected only 'model.<parameter>' and "
                                  f"'optimizer.<index>.<state>' tensors")  # fmt: skip
        dtype = FLOAT_DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointError(f"{weights_path}: tensor {name!r} has dtype {entry['dtype']}, expected a floating "
                                  f"dtype ({', '.join(FLOAT_DTYPES)})")  # fmt: skip
        array = np.frombuffer(entry["data"], dtype=dtype).reshape(entry["shape"])
        bad = array.size - np.count_nonzero(np.isfinite(array))
        if bad:
            raise CheckpointError(f"{weights_path}: tensor {name!r} holds {bad} non-finite values (NaN or inf) "
                                  f"of {array.size}, expected finite numbers")  # fmt: skip
        arrays[name] = array
    return arrays


def _optimizer_state(section, arrays, weights_path, record_path):
    """An ``Optimizer.state_dict()`` rebuilt from the record's checked section and the weights file's
    ``optimizer.<index>.<name>`` arrays, each of a parameter that a group lists."""
    listed = {index for group in section["param_groups"] for index in group["params"]}
    state = {int(index): dict(scalars) for index, scalars in section["scalars"].items()}
    for name, value in arrays.items():
        if not name.startswith("optimizer."):
            continue
        index, _, key = name[len("optimizer.") :].partition(".")
        if not (index.isdecimal() and int(index) in listed and key):
            raise CheckpointError(f"{weights_path}: tensor {name!r} is not the state of a parameter that "
                                  f"{record_path}'s optimizer lists ({_ranges(listed)})")  # fmt: skip
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": section["param_groups"]}


def load_checkpoint(directory, optimizer=True):
    """``(record, model_state, optimizer_state)`` from a checkpoint directory.

    ``record`` is ``ckpt.json`` as saved, with every field in ``RECORD_FIELDS``
    present and of its type (``step``, ``evaluated``, ``best_val_loss``, a
    ``rng_state`` that ``tinylm.random.set_rng_state`` takes, a ``model``
    section that ``tinylm.models.build_model`` takes, ``tokenizer``);
    ``model_state`` maps parameter names to finite floating arrays. With
    ``optimizer`` (the default, for resuming) the record must hold the
    optimizer's section, checked, and ``optimizer_state`` is the
    ``Optimizer.state_dict()`` to give ``load_state_dict`` (which checks that
    it fits that optimizer); ``optimizer=False`` neither reads nor checks it,
    and ``optimizer_state`` is None.

    Raises ``CheckpointError`` naming the file and the field or tensor for a
    missing, unreadable, truncated, corrupt or hand-damaged checkpoint.
    """
    directory = Path(directory)
    record = read_record(directory, optimizer)
    weights_path, payload = _read_weights(directory, record)
    arrays = _tensors(weights_path, payload, optimizer)
    model_state = {name[len("model.") :]: value for name, value in arrays.items() if name.startswith("model.")}
    optimizer_state = None
    if optimizer:
        optimizer_state = _optimizer_state(record["optimizer"], arrays, weights_path, directory / RECORD)
    return record, model_state, optimizer_state
