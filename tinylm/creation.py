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
    """``dtype`` as a NumPy dtype (or None) and ``device`` as ``"cpu"`` or ``"cuda"``, checked."""
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


def as_tensor(data, dtype=None, device=None):
    """``data`` as a tensor, sharing its memory where it can: a tensor or an array already of
    ``dtype`` and on ``device`` is used as it is (a tensor is returned itself); anything else is
    copied as by ``tensor``."""
    if isinstance(data, Tensor):
        return data.to(dtype=dtype, device=device)
    if isinstance(data, np.ndarray) or type(data).__module__.split(".")[0] == "cupy":
        same_dtype = dtype is None or np.dtype(dtype) == data.dtype
        same_device = device is None or backend.normalize_device(device) == backend.device_of(data)
        if same_dtype and same_device and data.dtype.kind in _NUMERIC_KINDS:
            return Tensor(data)
    return tensor(data, dtype=dtype, device=device)


def is_tensor(obj):
    """Whether ``obj`` is a tinylm ``Tensor``."""
    return isinstance(obj, Tensor)


def from_numpy(array):
    """A CPU tensor sharing memory with the NumPy array ``array``."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


def _shape(size, op="size"):
    """``(2, 3)`` from ``(2, 3)`` or ``((2, 3),)``: a shape given as separate ints or as one sequence."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in size):
        raise TypeError(f"{op}: expected a shape of ints, as {op}(2, 3) or {op}((2, 3)); got {size!r}")
    if any(n < 0 for n in size):
        raise ValueError(f"{op}: a shape has no negative sizes, got {tuple(size)}")
    return tuple(int(n) for n in size)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """A tensor of shape ``size`` (a tuple, or one int) filled with ``fill_value``.

    Without ``dtype``, as PyTorch: a float gives float32, an int int64, a bool bool.
    """
    dtype, device = _resolve(dtype, device)
    if dtype is None:
        dtype = backend.DEFAULT_FLOAT if isinstance(fill_value, float) else np.asarray(fill_value).dtype
    size = _shape(size if isinstance(size, (tuple, list)) else (size,), "full")
    xp = backend.xp_for(device)
    return Tensor(xp.full(size, fill_value, dtype=dtype), requires_grad=requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of zeros: ``zeros(2, 3)`` or ``zeros((2, 3))``; float32 unless told otherwise."""
    return full(_shape(size, "zeros"), 0, dtype=dtype or backend.DEFAULT_FLOAT, device=device,
                requires_grad=requires_grad)  # fmt: skip


def ones(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of ones: ``ones(2, 3)`` or ``ones((2, 3))``; float32 unless told otherwise."""
    return full(_shape(size, "ones"), 1, dtype=dtype or backend.DEFAULT_FLOAT, device=device,
                requires_grad=requires_grad)  # fmt: skip


def empty(*size, dtype=None, device=None, requires_grad=False):
    """A tensor of shape ``size`` (``empty(2, 3)`` or ``empty((2, 3))``), float32 unless told otherwise.

    PyTorch leaves the values unset; here they are zeros, so a program that
    reads one by mistake still runs the same way every time.
    """
    return full(_shape(size, "empty"), 0, dtype=dtype or backend.DEFAULT_FLOAT, device=device,
                requires_grad=requires_grad)  # fmt: skip


def zeros_like(other, dtype=None, device=None, requires_grad=False):
    return zeros(other.shape, dtype=dtype or other.dtype, device=device or other.device, requires_grad=requires_grad)


def ones_like(other, dtype=None, device=None, requires_grad=False):
    return ones(other.shape, dtype=dtype or other.dtype, device=device or other.device, requires_grad=requires_grad)


def empty_like(other, dtype=None, device=None, requires_grad=False):
    return empty(other.shape, dtype=dtype or other.dtype, device=device or other.device, requires_grad=requires_grad)


def full_like(other, fill_value, dtype=None, device=None, requires_grad=False):
    return full(other.shape, fill_value, dtype=dtype or other.dtype, device=device or other.device,
                requires_grad=requires_grad)  # fmt: skip


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    """The (n, m) identity matrix (``m`` defaults to ``n``): ones on the diagonal; float32 unless told otherwise."""
    dtype, device = _resolve(dtype, device)
    xp = backend.xp_for(device)
    return Tensor(xp.eye(n, n if m is None else m, dtype=dtype or backend.DEFAULT_FLOAT), requires_grad=requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end``, both included; float32 unless told otherwise.

    The values are computed in float64 and rounded to ``dtype``.
    """
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    dtype, device = _resolve(dtype, device)
    array = np.linspace(float(start), float(end), int(steps), dtype=np.float64)
    return _finish(array.astype(dtype or backend.DEFAULT_FLOAT), device, requires_grad)


def _float_dtype(dtype, op):
    dtype = backend.DEFAULT_FLOAT if dtype is None else np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point dtype, got {dtype}")
    return dtype


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the generator seeded by ``manual_seed`` (or from ``generator``).

    Samples are drawn in float64 and rounded, so one seed gives the same values
    (to rounding) in every dtype and on every device.
    """
    dtype = _float_dtype(dtype, "randn")
    device = backend.normalize_device(device)
    rng = random.generator(generator)
    array = rng.standard_normal(_shape(size, "randn"), dtype=np.float64).astype(dtype, copy=False)
    return _finish(array, device, requires_grad)


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from the generator seeded by ``manual_seed`` (or from ``generator``)."""
    dtype = _float_dtype(dtype, "rand")
    device = backend.normalize_device(device)
    array = random.generator(generator).random(_shape(size, "rand"), dtype=np.float64).astype(dtype, copy=False)
    return _finish(array, device, requires_grad)


def randn_like(other, dtype=None, device=None, requires_grad=False):
    return randn(other.shape, dtype=dtype or other.dtype, device=device or other.device, requires_grad=requires_grad)


def rand_like(other, dtype=None, device=None, requires_grad=False):
    return rand(other.shape, dtype=dtype or other.dtype, device=device or other.device, requires_grad=requires_grad)


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """Integers drawn uniformly from ``[low, high)``, as a tensor of shape ``size`` (int64 unless told otherwise).

    Read as PyTorch reads it: ``randint(high, size)``, ``randint(low, high, size)``,
    or with keywords (``randint(10, size=(3,))``, ``randint(high=10, size=(3,))``);
    ``size`` is a tuple.
    """
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:  # randint(high, size=...)
        low, high = 0, low
    if size is None or not isinstance(size, (tuple, list)):
        raise TypeError(f"randint: size must be a tuple of ints, as in randint(10, (2, 3)) or randint(0, 10, (2, 3)); "
                        f"got {size!r}")  # fmt: skip
    if not low < high:
        raise ValueError(f"randint: low must be less than high, got low={low}, high={high}")
    dtype = np.dtype(np.int64 if dtype is None else dtype)
    device = backend.normalize_device(device)
    drawn = random.generator(generator).integers(low, high, size=_shape(size, "randint"), dtype=np.int64)
    return _finish(np.asarray(drawn).astype(dtype, copy=False), device, requires_grad)


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    """A random ordering of ``0 .. n-1`` (int64 unless told otherwise)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    device = backend.normalize_device(device)
    order = random.generator(generator).permutation(int(n))
    return _finish(order.astype(np.int64 if dtype is None else dtype, copy=False), device, requires_grad)


def multinomial(input, num_samples, replacement=False, *, generator=None):  # noqa: A002 (PyTorch's name)
    """Indices drawn from the categories of ``input``, in proportion to their weights.

    ``input`` holds non-negative weights (they need not sum to one), of shape
    (n,) or (rows, n); the result is int64, of shape (num_samples,) or
    (rows, num_samples), on ``input``'s device, with no gradient. Without
    ``replacement`` a category is drawn at most once per row: each draw picks
    among the categories left, in proportion to their weights (the order of the
    indices is the order they were drawn in); once the weighted ones are all
    drawn, the zero-weighted ones follow. The numbers are not PyTorch's for the
    same seed.
    """
    weights = input.data if isinstance(input, Tensor) else input
    device = backend.device_of(weights)
    weights = np.asarray(backend.to_numpy(weights))
    if weights.dtype.kind != "f":
        raise TypeError(f"multinomial: expected floating-point weights, got dtype {weights.dtype}")
    if weights.ndim not in (1, 2):
        raise ValueError(f"multinomial: expected weights of shape (n,) or (rows, n), got shape {weights.shape}")
    if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    rows = weights.reshape(-1, weights.shape[-1]).astype(np.float64)
    count = rows.shape[1]
    if not np.all(np.isfinite(rows) & (rows >= 0)):
        raise ValueError("multinomial: the weights hold a negative, infinite or NaN value, expected non-negative "
                         "finite numbers")  # fmt: skip
    if not np.all(rows.sum(axis=1) > 0):
        raise ValueError("multinomial: a row of weights sums to zero, so no category can be drawn")
    if not replacement and num_samples > count:
        raise ValueError(f"multinomial: cannot draw {num_samples} samples from {count} categories without "
                         f"replacement")  # fmt: skip
    rng = random.generator(generator)
    if replacement:
        # inverse of each row's cumulative distribution: the first category whose cumulative
        # weight exceeds a uniform draw (a category of weight zero never does)
        cumulative = np.cumsum(rows, axis=1)
        cumulative /= cumulative[:, -1:]
        uniform = rng.random((len(rows), num_samples))
        chosen = np.stack([np.searchsorted(c, u, side="right") for c, u in zip(cumulative, uniform)])
        chosen = np.minimum(chosen, count - 1)
    else:
        # an exponential race: category i finishes at E_i / w_i (E_i ~ Exp(1)); the finishing order
        # is a draw without replacement in proportion to the weights (weight 0 never finishes)
        with np.errstate(divide="ignore"):
            finish = rng.standard_exponential(rows.shape) / rows
        chosen = np.argsort(finish, axis=1, kind="stable")[:, :num_samples]
    chosen = chosen.astype(np.int64).reshape(weights.shape[:-1] + (num_samples,))
    return _finish(chosen, device, False)


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


# ``tensor.multinomial(n)``, as PyTorch has it. tensor.py cannot import this module (it imports
# tensor.py), so the method is attached here, unless Tensor defines one of its own.
if not hasattr(Tensor, "multinomial"):
    Tensor.multinomial = multinomial
