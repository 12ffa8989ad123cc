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
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from tinylm.errors import CheckpointError
from tinylm.files import write_atomically

FORMAT = "tinylm-checkpoint"
VERSION = 1
RECORD = "ckpt.json"


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


def load_checkpoint(directory):
    """``(record, model_state, optimizer_state or None)`` from a checkpoint directory.

    Raises ``CheckpointError`` naming the problem for a missing, unreadable,
    truncated or corrupt checkpoint.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    directory = Path(directory)
    record_path = directory / RECORD
    if not record_path.is_file():
        raise CheckpointError(f"no checkpoint in {directory} ({RECORD} is missing)")
    try:
        record = json.loads(record_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{record_path} is not valid JSON ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{record_path} is not a tinylm checkpoint")
    if record.get("version") != VERSION:
        raise CheckpointError(f"{record_path} has format version {record.get('version')}, this tinylm reads {VERSION}")
    try:
        weights = record["weights"]
        weights_path = directory / weights["file"]
        payload = weights_path.read_bytes()
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{record_path} does not name its weights file ({error})") from None
    except OSError:
        raise CheckpointError(f"the weights file {weights_path} named by {record_path} is missing") from None
    if len(payload) != weights["bytes"] or hashlib.sha256(payload).hexdigest() != weights["sha256"]:
        raise CheckpointError(
            f"{weights_path} is truncated or corrupt ({len(payload)} bytes, the checkpoint recorded "
            f"{weights['bytes']} bytes and another SHA-256)"
        )
    try:
        arrays = load(payload)
    except SafetensorError as error:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({error})") from None
    model_state = {name[len("model.") :]: value for name, value in arrays.items() if name.startswith("model.")}
    optimizer_state = None
    if "optimizer" in record:
        state = {}
        for index, scalars in record["optimizer"]["scalars"].items():
            state[int(index)] = dict(scalars)
        for name, value in arrays.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                state.setdefault(int(index), {})[key] = value
        optimizer_state = {"state": state, "param_groups": record["optimizer"]["param_groups"]}
    return record, model_state, optimizer_state
