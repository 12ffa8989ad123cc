"""Where arrays live: NumPy on the CPU, CuPy on a CUDA GPU.

This is the only module in tinylm that imports ``cupy``, and it does so lazily,
the first time something asks about the GPU, so ``import tinylm`` never pays
for it. Everything else asks this module for the array module (``xp``) that
matches an array or a device, and never branches on the library itself.

Devices are plain strings: ``"cpu"`` or ``"cuda"`` (``"cuda:0"`` is accepted
and means the same).
"""

import numpy as np

#: The dtype of tensors made from Python floats, and of new parameters.
DEFAULT_FLOAT = np.dtype(np.float32)

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
    """Map a user's device argument to ``"cpu"`` or ``"cuda"``; check that it can be used."""
    if device is None or device == "cpu":
        return "cpu"
    if device in ("cuda", "cuda:0"):
        require_cuda()
        return "cuda"
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
    """``"cpu"`` for a NumPy array, ``"cuda"`` for a CuPy array."""
    return "cpu" if isinstance(array, (np.ndarray, np.generic)) else "cuda"


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
