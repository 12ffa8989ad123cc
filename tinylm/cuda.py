"""``torch.cuda`` as far as tinylm has it: is a GPU there, how many, wait for it, free its cache.

tinylm uses one GPU, through CuPy (``tinylm.backend`` decides); ``"cuda"``
and ``"cuda:0"`` name it. Random numbers are drawn on the CPU for every
device, by the one generator that ``tinylm.manual_seed`` seeds, so the
seeding functions here have nothing to do. Importing this module does not
import CuPy; asking a question does.
"""

from tinylm import backend


def is_available():
    """True when CuPy is installed and a CUDA GPU can be used."""
    return backend.cuda_is_available()


def device_count():
    """The number of GPUs tinylm can use: 1 with a usable GPU (tinylm uses one), else 0."""
    return 1 if backend.cuda_is_available() else 0


def current_device():
    """The index of the GPU in use: 0. RuntimeError, saying why, without one."""
    backend.require_cuda()
    return 0


def get_device_name(device=None):
    """The GPU's name, as its driver reports it (``device`` may be None, 0, "cuda" or "cuda:0")."""
    if device not in (None, 0):
        backend.normalize_device(device)
    cupy = backend.require_cuda()
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else name


def synchronize(device=None):
    """Wait until the GPU has finished all the work queued so far (nothing to do without a GPU)."""
    if backend.cuda_is_available():
        backend.require_cuda().cuda.Device(0).synchronize()


def empty_cache():
    """Hand the GPU memory that CuPy keeps for reuse, and no array holds, back to the driver."""
    if backend.cuda_is_available():
        cupy = backend.require_cuda()
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


def manual_seed(seed):
    """Nothing to do: GPU tensors take their random numbers from the CPU generator, which
    ``tinylm.manual_seed`` seeds. The seed is checked all the same."""
    from tinylm.random import _checked_seed

    _checked_seed(seed, "cuda.manual_seed")


manual_seed_all = manual_seed


def __getattr__(name):
    """A well-known ``torch.cuda`` name that tinylm has not: refused by name; any other: AttributeError."""
    from tinylm import refuse

    if name in ("amp", "Stream", "Event", "graphs", "CUDAGraph", "nccl", "set_device", "memory_allocated",
                "max_memory_allocated", "get_rng_state", "set_rng_state"):  # fmt: skip
        raise refuse(f"torch.cuda.{name}", "tinylm's GPU support is one CuPy device (tinylm.cuda has "
                                           "is_available, device_count, synchronize, empty_cache)")  # fmt: skip
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
