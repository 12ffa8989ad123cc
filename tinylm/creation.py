"""Making tensors: from data, filled with a constant, random, or a range."""

import numpy as np

from tinylm import backend, random
from tinylm.tensor import Tensor

_PYTHON_NUMBERS = (bool, int, float, complex)
_PYTHON_DATA = (list, tuple, range) + _PYTHON_NUMBERS
_NUMERIC_KINDS = "biufc"  # bool, signed and unsigned integers, floating point, complex
_ACCEPTED = (
    "numbers or bools, (nested, rectangular) lists or tuples of them, "
    "NumPy or CuPy arrays of numbers or bools, or Tensors"
)


def _resolve(dtype, device):
    dtype = None if dtype is None else np.dtype(dtype)
    device = backend.normalize_device(device)
    return dtype, device


def _finish(array, device, requires_grad):
    return Tensor(backend.to_device(array, device), requires_grad=requires_grad)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (a number, nested lists, an array or a tensor).

    Without ``dtype``: Python floats give float32, Python ints int64 and bools
    bool; an array keeps its own dtype.

    Raises:
        TypeError: ``data`` is not numeric (a string, None, a dict, an object, an
            array of strings or objects, or a list holding any of these); the
            message names what was given and where in the nesting.
        ValueError: nested lists of different lengths (ragged), which make no
            rectangular array.
    """
    dtype = None if dtype is None else np.dtype(dtype)
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.generic):  # before the Python types: np.float64 subclasses float
        array = np.asarray(data)
    elif isinstance(data, _PYTHON_DATA):
        array = _array_from_python(data)
        if dtype is None and array.dtype.kind == "f":
            dtype = backend.DEFAULT_FLOAT
    elif isinstance(data, np.ndarray) or type(data).__module__.split(".")[0] == "cupy":
        array = backend.array_module(data).array(data, copy=True)
    else:
        raise TypeError(f"tensor: got {_describe(data)}; expected {_ACCEPTED}")
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"tensor: got {_describe_non_numeric(data)}; expected {_ACCEPTED}")
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    # an array stays on its own device unless told otherwise
    device = backend.device_of(array) if device is None else backend.normalize_device(device)
    return _finish(array, device, requires_grad)


def _array_from_python(data):
    """``np.array(data)`` for Python numbers and nested lists/tuples, ragged nesting refused."""
    try:
        return np.array(data)
    except ValueError:  # NumPy refuses sequences of different lengths
        place = _ragged_place(data, ()) or "the nested lists of data have different lengths"
        raise ValueError(
            f"tensor: got ragged nested lists ({place}); expected a rectangular nesting such as [[1, 2], [3, 4]]"
        ) from None


def _ragged_place(data, position):
    """Where nested lists/tuples stop being rectangular ("data[0] has 1 element but
    data[1] has 2 elements"), or None if they are rectangular."""
    if not isinstance(data, (list, tuple, range)):
        return None
    lengths = [len(item) if isinstance(item, (list, tuple, range)) else None for item in data]
    for i in range(1, len(lengths)):
        if lengths[i] != lengths[0]:
            first, other = (_place(position + (j,)) for j in (0, i))
            return f"{first} {_holding(lengths[0])} but {other} {_holding(lengths[i])}"
    for i, item in enumerate(data):
        place = _ragged_place(item, position + (i,))
        if place is not None:
            return place
    return None


def _place(position):
    """``(1, 0)`` -> ``"data[1][0]"``."""
    return "data" + "".join(f"[{i}]" for i in position)


def _holding(length):
    return "is not a list" if length is None else f"has {length} element{'s' * (length != 1)}"


def _describe(value):
    """``value`` named for an error message: its type and a short repr (an array: its dtype)."""
    if isinstance(value, (np.ndarray, np.generic)) or type(value).__module__.split(".")[0] == "cupy":
        return f"{type(value).__name__} of dtype {value.dtype}"
    return f"{type(value).__name__} {value!r:.60}"


def _describe_non_numeric(data):
    """What makes ``data`` non-numeric: the first leaf of its nested lists that is not a
    number (named with its place), or ``data`` itself."""
    found = _first_non_number(data, ())
    if not found or not found[0]:
        return _describe(data)
    position, value = found
    return f"{type(data).__name__} whose element {_place(position)} is {_describe(value)}"


def _first_non_number(data, position):
    """``(position, value)`` of the first leaf of nested lists/tuples that is not a number
    or a numeric array/tensor, or None if there is none."""
    if isinstance(data, (list, tuple, range)):
        for i, item in enumerate(data):
            found = _first_non_number(item, position + (i,))
            if found is not None:
                return found
        return None
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, _PYTHON_NUMBERS) or (
        isinstance(data, (np.ndarray, np.generic)) and data.dtype.kind in _NUMERIC_KINDS
    ):
        return None
    return position, data


def from_numpy(array):
    """A CPU tensor sharing memory with the NumPy array ``array``."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(n) for n in size)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """A tensor of shape ``size`` filled with ``fill_value``."""
    dtype, device = _resolve(dtype, device)
    if dtype is None:
        dtype = backend.DEFAULT_FLOAT if isinstance(fill_value, float) else np.asarray(fill_value).dtype
    xp = backend.xp_for(device)
    return Tensor(xp.full(tuple(size), fill_value, dtype=dtype), requires_grad=requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``; float32 unless told otherwise."""
    return full(_shape(size), 0, dtype=dtype or backend.DEFAULT_FLOAT, device=device, requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``; float32 unless told otherwise."""
    return full(_shape(size), 1, dtype=dtype or backend.DEFAULT_FLOAT, device=device, requires_grad=requires_grad)


def zeros_like(other, dtype=None, device=None, requires_grad=False):
    return zeros(other.shape, dtype=dtype or other.dtype, device=device or other.device, requires_grad=requires_grad)


def ones_like(other, dtype=None, device=None, requires_grad=False):
    return ones(other.shape, dtype=dtype or other.dtype, device=device or other.device, requires_grad=requires_grad)


def _float_dtype(dtype, op):
    dtype = backend.DEFAULT_FLOAT if dtype is None else np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point dtype, got {dtype}")
    return dtype


def randn(*size, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the generator seeded by ``manual_seed``.

    Samples are drawn in float64 and rounded, so one seed gives the same values
    (to rounding) in every dtype and on every device.
    """
    dtype = _float_dtype(dtype, "randn")
    device = backend.normalize_device(device)
    array = random.generator().standard_normal(_shape(size), dtype=np.float64).astype(dtype, copy=False)
    return _finish(array, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from the generator seeded by ``manual_seed``."""
    dtype = _float_dtype(dtype, "rand")
    device = backend.normalize_device(device)
    array = random.generator().random(_shape(size), dtype=np.float64).astype(dtype, copy=False)
    return _finish(array, device, requires_grad)


def randint(low, high=None, size=(), dtype=np.int64, device=None):
    """Integers drawn uniformly from ``[low, high)`` (or ``[0, low)`` if ``high`` is None)."""
    if high is None:
        low, high = 0, low
    device = backend.normalize_device(device)
    array = random.generator().integers(low, high, size=tuple(size), dtype=np.dtype(dtype))
    return _finish(np.asarray(array), device, False)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """``start, start + step, ...`` up to but not including ``end``; int64 for ints, float32 for floats."""
    if end is None:
        start, end = 0, start
    dtype, device = _resolve(dtype, device)
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = backend.DEFAULT_FLOAT if is_float else np.dtype(np.int64)
    xp = backend.xp_for(device)
    return Tensor(xp.arange(start, end, step, dtype=dtype), requires_grad=requires_grad)
