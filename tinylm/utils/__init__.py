"""``torch.utils`` as far as tinylm has it: ``tinylm.utils.data`` (datasets and the DataLoader)."""

from tinylm.utils import data

# Well-known torch.utils modules that tinylm does not have, and what to do instead.
_NOT_HERE = {
    "checkpoint": "there is no activation checkpointing; a smaller batch or block size saves memory",
    "tensorboard": "there is no TensorBoard writer; tinylm train writes its log as JSON lines",
    "cpp_extension": "there are no C++ extensions; kernels are Numba functions (tinylm.kernels)",
    "dlpack": "there is no DLPack exchange; go through NumPy (tensor.numpy(), tinylm.from_numpy)",
    "benchmark": "there is no benchmark timer; time with time.perf_counter (see benchmarks/)",
}


def __getattr__(name):
    """A well-known ``torch.utils`` name that tinylm has not: refused by name; any other: AttributeError."""
    from tinylm import refuse

    if name in _NOT_HERE:
        raise refuse(f"torch.utils.{name}", _NOT_HERE[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
