"""Where arrays live: NumPy on the CPU, CuPy on a CUDA GPU.

This is the only module in tinylm that imports ``cupy``, and it does so lazily,
the first time something asks about the GPU, so ``import tinylm`` never pays
for it. Everything else asks this module for the array module (``xp``) that
matches an array or a device, and never branches on the library itself.

Devices are strings: ``"cpu"`` or ``"cuda"`` (``"cuda:0"`` is accepted and
means the same). ``Device`` (``tinylm.device``, PyTorch's ``torch.device``) is
a ``str`` with PyTorch's ``.type`` and ``.index``, so it is accepted wherever a
device string is, and ``Tensor.device`` returns one (equal to ``"cpu"``).
"""

import numpy as np

#: The dtype of tensors made from Python floats, and of new parameters.
DEFAULT_FLOAT = np.dtype(np.float32)



class Device(str):
    """A device, as ``torch.device``: ``Device("cpu")``, ``Device("cuda")``, ``Device("cuda:0")``,
    ``Device("cuda", 0)``.

    It is the string PyTorch's ``str(device)`` gives (``"cuda:0"``), so it
    compares equal to that string and goes wherever a device string goes;
    ``.type`` is ``"cpu"`` or ``"cuda"`` and ``.index`` the number after the
    colon, or None. Making one checks only its spelling; using a device that is
    not there (``"cuda"`` without a GPU, ``"cuda:1"``) fails where it is used.
    """

    __slots__ = ()

    def __new__(cls, type, index=None):  # noqa: A002 (PyTorch's argument name)
        if isinstance(type, Device) and index is None:
            return type
        if not isinstance(type, str):
            raise TypeError(f"device: expected a string such as 'cpu' or 'cuda:0', got {type!r}")
        kind, colon, number = type.partition(":")
        if kind not in ("cpu", "cuda") or (colon and not number.isdecimal()):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:<index>', got {type!r}")
        if colon and index is not None:
            raise ValueError(f"device: {type!r} already holds an index; got index={index!r} as well")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise ValueError(f"device: index must be a non-negative int, got {index!r}")
        index = int(number) if colon else index
        return super().__new__(cls, kind if index is None else f"{kind}:{index}")

    @property
    def type(self):  # noqa: A003 (PyTorch's name)
        return self.partition(":")[0]

    @property
    def index(self):
        number = self.partition(":")[2]
        return int(number) if number else None

    def __repr__(self):
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"


CPU, CUDA = Device("cpu"), Device("cuda")

_cupy = None  # the cupy module, once it has been imported and found usable
_cuda_problem = None  # why "cuda" cannot be used, once probed
_probed = False


def _probe_cuda():
    """Import cupy once and decide whether a GPU can be used; remember why not."""
    global _cupy, _cuda_problem, _probed
    if _probed:
        return
    _probed = True
    try:
        import cupy
    except ImportError:
        _cuda_problem = "CuPy is not installed (pip install 'tinylm[gpu]')"
        return
    except Exception as error:  # a broken CUDA install can fail in many ways on import
        _cuda_problem = f"CuPy failed to import: {error}"
        return
    try:
        usable = bool(cupy.is_available())
    except Exception:
        usable = False
    if not usable:
        _cuda_problem = "CuPy is installed but it sees no usable CUDA GPU"
        return
    _cupy = cupy


def cuda_is_available():
    """True when CuPy is installed and a CUDA GPU can be used."""
    _probe_cuda()
    return _cupy is not None


def require_cuda():
    """Return the cupy module, or raise one RuntimeError saying what is missing."""
    _probe_cuda()
    if _cupy is None:
        raise RuntimeError(
            f"device 'cuda' was requested, but {_cuda_problem}; use device='cpu' instead"
        )
    return _cupy


def normalize_device(device):
    """Map a user's device argument (a string or a ``Device``) to ``CPU`` or ``CUDA``; check that it
    can be used."""
    if device is None or device == "cpu" or device == "cpu:0":
        return CPU
    if device == "cuda" or device == "cuda:0":
        require_cuda()
        return CUDA
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def xp_for(device):
    """The array module for a normalized device string."""
    return np if device == "cpu" else require_cuda()


def array_module(array):
    """The array module (numpy or cupy) that owns ``array``."""
    if isinstance(array, (np.ndarray, np.generic)):
        return np
    _probe_cuda()
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    raise TypeError(f"expected a NumPy or CuPy array, got {type(array).__name__}")


def device_of(array):
    """``CPU`` (equal to ``"cpu"``) for a NumPy array, ``CUDA`` (``"cuda"``) for a CuPy array."""
    return CPU if isinstance(array, (np.ndarray, np.generic)) else CUDA


def to_device(array, device):
    """Copy ``array`` to ``device`` if it is not there already."""
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    return require_cuda().asarray(array)


def to_numpy(array):
    """A NumPy array with the values of ``array`` (copied off the GPU if needed)."""
    return array if isinstance(array, np.ndarray) else np.asarray(array.get() if hasattr(array, "get") else array)


def scatter_add(target, index, values):
    """``target[index] += values``, adding every occurrence of a repeated index."""
    if isinstance(target, np.ndarray):
        np.add.at(target, index, values)
    else:
        import cupyx  # only reached with a cupy array, so cupy is installed

        cupyx.scatter_add(target, index, values)


def erf(array):
    """The error function, elementwise, accurate to the dtype's rounding."""
    if isinstance(array, np.ndarray):
        from tinylm.kernels.special import erf as numpy_erf  # plain NumPy, no Numba

        return numpy_erf(array)
    import cupyx.scipy.special  # only reached with a cupy array, so cupy is installed

    return cupyx.scipy.special.erf(array)
