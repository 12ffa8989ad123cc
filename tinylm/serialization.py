"""``tinylm.save`` / ``tinylm.load``: PyTorch's ``torch.save`` / ``torch.load``, without pickle.

One file holds what ``save`` was given: its arrays as the tensors of a
safetensors file, and its structure (the dicts, lists and tuples, the
numbers, strings and None, and which leaf is which tensor) as JSON in that
file's metadata, under ``"tinylm.structure"``. Loading reads data only and
runs no code. A tensor is stored under its place in the structure (a state
dict's tensors under their own names), so ``safetensors.numpy.load_file``
reads the arrays of a state dict saved here, and ``tinylm.load`` reads any
plain safetensors file (as a dict of tensors).

The structure is JSON in which numbers, strings, true/false and null stand for
themselves and every other value is an object of one key::

    {"tensor": name, "device": "cpu", "requires_grad": false}   a Tensor
    {"array": name}          a NumPy array      {"scalar": name}   a NumPy number
    {"list": [...]}          {"tuple": [...]}   {"dict": [[key, value], ...]}
    {"ordered_dict": [[key, value], ...]}    (a state_dict() is an OrderedDict, as in PyTorch)

(dict keys keep their type: a string, an int, a float, a bool or None).

A PyTorch file (a zip archive or a pickle) is refused with a message that says
how to convert it.
"""

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from tinylm import backend
from tinylm.errors import UserError
from tinylm.files import write_atomically
from tinylm.tensor import Tensor

FORMAT = "tinylm.save"
VERSION = "1"
STRUCTURE_KEY = "tinylm.structure"

_KEY_TYPES = (str, int, float, bool, type(None))
_CONVERT = (
    "to convert it, load it in PyTorch and save its tensors as safetensors, for a state dict: "
    "safetensors.torch.save_file({k: v.contiguous() for k, v in torch.load(path).items()}, 'model.safetensors'), "
    "or in general tinylm.save(converted, path) where converted holds tensor.numpy() for each tensor"
)


class SerializationError(UserError, ValueError):
    """A file that ``tinylm.load`` cannot read, or a value that ``tinylm.save`` cannot write."""


def save(obj, f):
    """Write ``obj`` to ``f`` (a path, or a file opened for writing in binary).

    ``obj`` is a tensor, a NumPy array or number, a Python number, string or
    None, or dicts, lists and tuples of these, nested (a ``state_dict()``, an
    optimizer's ``state_dict()``, a checkpoint dict). A path is written
    atomically: under a temporary name, then renamed into place.

    Raises ``SerializationError`` naming the place in ``obj`` (``obj['model'][2]``)
    of a value of any other kind, or an array of a dtype safetensors cannot hold.
    """
    arrays = {}
    structure = _encode(obj, "obj", [], arrays)
    from safetensors.numpy import save as to_safetensors  # loaded on first use: `import tinylm` stays light

    metadata = {"format": FORMAT, "version": VERSION, STRUCTURE_KEY: json.dumps(structure)}
    try:
        payload = to_safetensors(arrays, metadata=metadata)
    except Exception as error:  # safetensors names the unsupported dtype
        raise SerializationError(f"save: safetensors cannot hold these arrays ({error})") from None
    if hasattr(f, "write"):
        f.write(payload)
    else:
        write_atomically(f, lambda temporary: Path(temporary).write_bytes(payload))


def _tensor_name(path, arrays):
    """A name for the array at ``path`` (its keys, joined by dots), unique in ``arrays``."""
    name = ".".join(str(part) for part in path) or "tensor"
    unique, n = name, 1
    while unique in arrays:
        unique, n = f"{name}#{n}", n + 1
    return unique


def _store(array, path, arrays, place):
    if array.dtype.kind not in "biuf":
        raise SerializationError(f"save: {place} is an array of dtype {array.dtype}; tinylm.save writes arrays of "
                                 f"numbers or bools")  # fmt: skip
    name = _tensor_name(path, arrays)
    arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
    return name


def _encode(value, place, path, arrays):
    """The JSON structure of ``value`` (at ``place``, as a message names it; ``path``, its keys),
    its arrays added to ``arrays``."""
    if isinstance(value, Tensor):
        name = _store(backend.to_numpy(value.data), path, arrays, place)
        return {"tensor": name, "device": str(value.device), "requires_grad": value.requires_grad}
    if isinstance(value, np.ndarray):
        return {"array": _store(value, path, arrays, place)}
    if isinstance(value, np.generic):
        return {"scalar": _store(np.asarray(value), path, arrays, place)}
    if value is None or isinstance(value, (bool, str)):
        return str(value) if isinstance(value, str) else value  # a device is a str; it is written as one
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, _KEY_TYPES):
                raise SerializationError(f"save: {place} has a key of type {type(key).__name__}; tinylm.save "
                                         f"writes dict keys that are strings, numbers, bools or None")  # fmt: skip
            items.append([_encode(key, place, path, {}), _encode(item, f"{place}[{key!r}]", path + [key], arrays)])
        return {"ordered_dict" if isinstance(value, OrderedDict) else "dict": items}
    if isinstance(value, (list, tuple)):
        encoded = [_encode(item, f"{place}[{i}]", path + [i], arrays) for i, item in enumerate(value)]
        return {"tuple" if isinstance(value, tuple) else "list": encoded}
    raise SerializationError(
        f"save: {place} is a {type(value).__name__}; tinylm.save writes tensors, NumPy arrays, numbers, strings, "
        f"None and dicts, lists and tuples of them (never pickle)"
    )


def load(f, map_location=None, weights_only=True, **_ignored):
    """What ``save`` wrote to ``f`` (a path, or a file opened for reading in binary).

    Tensors go to ``map_location`` ("cpu", "cuda", a ``tinylm.device``, or a
    dict from the saved device to another, as ``{"cuda": "cpu"}``), else back
    to the device they were saved from. A plain safetensors file (written by
    another program) loads as a dict of tensors by name. ``weights_only``
    (PyTorch's) is accepted: loading never runs code whatever it says.

    Raises ``SerializationError`` (one line) for a PyTorch pickle file (with how
    to convert it), a file that is not safetensors, or one that is truncated or
    corrupt.
    """
    where = getattr(f, "name", "the file") if hasattr(f, "read") else str(f)
    payload = f.read() if hasattr(f, "read") else _read(f)
    if callable(map_location):
        raise SerializationError("load: map_location as a function is not supported; give a device "
                                 "(map_location='cpu')")  # fmt: skip
    if payload[:4] == b"PK\x03\x04":
        raise SerializationError(f"load: {where} is a PyTorch pickle file (torch.save's zip format), which "
                                 f"tinylm.load does not read (pickle can run code); {_CONVERT}")  # fmt: skip
    if payload[:1] == b"\x80":
        raise SerializationError(f"load: {where} is a Python pickle (an old PyTorch file), which tinylm.load does "
                                 f"not read (pickle can run code); {_CONVERT}")  # fmt: skip
    metadata = _metadata(payload, where)
    from safetensors.numpy import load as from_safetensors  # loaded on first use: `import tinylm` stays light

    try:
        arrays = from_safetensors(bytes(payload))
    except Exception as error:  # SafetensorError, or a dtype NumPy lacks
        raise SerializationError(f"load: {where} is truncated or not a valid safetensors file ({error})") from None
    if STRUCTURE_KEY not in metadata:  # a plain safetensors file
        return {name: _tensor(array, "cpu", False, map_location) for name, array in arrays.items()}
    try:
        structure = json.loads(metadata[STRUCTURE_KEY])
        return _decode(structure, arrays, map_location)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise SerializationError(f"load: {where} holds a damaged structure record ({type(error).__name__}: "
                                 f"{error})") from None  # fmt: skip


def _read(path):
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SerializationError(f"load: cannot read {path} ({error.strerror or error})") from None


def _metadata(payload, where):
    """The ``__metadata__`` of a safetensors file's header (8 bytes of length, then JSON)."""
    size = int.from_bytes(payload[:8], "little") if len(payload) >= 8 else None
    if size is None or size > len(payload) - 8:
        raise SerializationError(f"load: {where} is truncated or not a tinylm.save or safetensors file "
                                 f"({len(payload)} bytes)")  # fmt: skip
    try:
        header = json.loads(bytes(payload[8 : 8 + size]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise SerializationError(f"load: {where} is not a tinylm.save or safetensors file (its header is not "
                                 f"JSON)") from None  # fmt: skip
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _target_device(saved, map_location):
    if map_location is None:
        return saved
    if isinstance(map_location, dict):
        return map_location.get(saved, saved)
    return map_location


def _tensor(array, saved_device, requires_grad, map_location):
    device = backend.normalize_device(_target_device(saved_device, map_location))
    result = Tensor(backend.to_device(np.array(array), device))  # a copy the tensor owns, writable
    if requires_grad:
        result.requires_grad_(True)
    return result


def _decode(node, arrays, map_location):
    """The value that a structure ``node`` (see the module's docstring) describes."""
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if not isinstance(node, dict) or len(node) == 0:
        raise ValueError(f"unexpected structure node {node!r:.80}")
    if "tensor" in node:
        return _tensor(arrays[node["tensor"]], node.get("device", "cpu"), bool(node.get("requires_grad")),
                       map_location)  # fmt: skip
    if "array" in node:
        return np.array(arrays[node["array"]])
    if "scalar" in node:
        return arrays[node["scalar"]][()]
    if "list" in node:
        return [_decode(item, arrays, map_location) for item in node["list"]]
    if "tuple" in node:
        return tuple(_decode(item, arrays, map_location) for item in node["tuple"])
    for kind, make in (("dict", dict), ("ordered_dict", OrderedDict)):
        if kind in node:
            return make((_decode(key, arrays, map_location), _decode(item, arrays, map_location))
                        for key, item in node[kind])  # fmt: skip
    raise ValueError(f"unexpected structure node {node!r:.80}")


__all__ = ["save", "load", "SerializationError"]
