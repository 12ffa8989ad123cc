"""One place that maps a kernel name and a backend to a function.

Backends:

- ``"numpy"``: the NumPy reference, the ground truth the others are tested against;
- ``"numba"``: the CPU ``@njit`` version;
- ``"cuda"``: the ``@cuda.jit`` version (CuPy arrays in and out; NumPy arrays under
  Numba's CUDA simulator).

Every kernel module defines ``<name>_reference``, ``<name>_numba`` and
``<name>_cuda`` side by side. A module is imported the first time one of its
kernels is asked for, so importing this registry (or ``tinylm.kernels``) does
not import Numba; Numba compiles a kernel on its first call (or loads it from
its on-disk cache).

The first Numba kernel asked for also sets up the threads, unless the program or
its user chose them already (``threads.configure_default_threads``): a user's
own loop gets the configuration ``tinylm train`` uses without asking.
"""

import importlib
import os

from .threads import configure_default_threads

BACKENDS = ("numpy", "numba", "cuda")

_SUFFIX = {"numpy": "reference", "numba": "numba", "cuda": "cuda"}

# kernel name -> module of this package that defines it
_MODULES = {
    "cross_entropy_forward": "cross_entropy",
    "cross_entropy_backward": "cross_entropy",
    "layernorm_forward": "layernorm",
    "layernorm_backward": "layernorm",
    "gelu_forward": "gelu",
    "gelu_forward_with_grad": "gelu",
    "gelu_backward": "gelu",
    "bias_gelu_forward": "gelu",
    "bias_gelu_backward": "gelu",
    "attention_softmax_forward": "attention_softmax",
    "attention_softmax_backward": "attention_softmax",
    "causal_attention_forward": "causal_attention",
    "causal_attention_backward": "causal_attention",
    "lstm_cell_forward": "lstm_cell",
    "lstm_cell_backward": "lstm_cell",
    "lstm_sequence_forward": "lstm_sequence",
    "lstm_sequence_backward": "lstm_sequence",
    "gru_cell_forward": "gru_cell",
    "gru_cell_backward": "gru_cell",
    "gru_sequence_forward": "gru_sequence",
    "gru_sequence_backward": "gru_sequence",
    "adamw_update": "adamw",
    "embedding_backward": "embedding_backward",
    "gpt_decode_step": "gpt_decode",
}

#: Every kernel name, in a stable order.
KERNELS = tuple(_MODULES)

#: The CPU implementation that :func:`kernel_for` picks for NumPy arrays. "numba"
#: wherever ``benchmarks/bench_kernels.py`` measured it faster than the reference
#: at the shapes of a small GPT on CPU (which is everywhere, as of this writing);
#: change an entry to "numpy" if a measurement says otherwise.
CPU_DEFAULT = {name: "numba" for name in KERNELS}

_cache = {}


def get_kernel(name, backend="numba"):
    """The function implementing kernel ``name`` on ``backend`` ("numpy", "numba" or "cuda")."""
    key = (name, backend)
    kernel = _cache.get(key)
    if kernel is None:
        if name not in _MODULES:
            raise ValueError(f"unknown kernel {name!r}; known kernels: {', '.join(KERNELS)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r} for kernel {name!r}; expected one of {BACKENDS}")
        if backend == "numba":  # the first CPU kernel sets up the threads (once), before it starts them
            configure_default_threads()
        module = importlib.import_module(f"{__package__}.{_MODULES[name]}")
        kernel = _cache[key] = getattr(module, f"{name}_{_SUFFIX[backend]}")
    return kernel


#: The environment variable that, set to "reference" when the program starts, makes
#: every CPU kernel its NumPy reference (see :func:`use_reference_kernels`).
REFERENCE_VARIABLE = "TINYLM_KERNELS"

_reference_mode = os.environ.get(REFERENCE_VARIABLE, "").strip().lower() == "reference"


def use_reference_kernels(on=True):
    """Run every CPU kernel's NumPy reference in place of its compiled version (or, with
    ``on=False``, go back). For study and debugging: a reader can step through any op in a
    debugger, and a suspected kernel bug can be told from a bug elsewhere. The results are
    the same to rounding; the speed is NumPy's. CuPy arrays keep their CUDA kernels.
    ``TINYLM_KERNELS=reference`` in the environment turns it on from the start."""
    global _reference_mode
    _reference_mode = bool(on)


def reference_kernels_in_use():
    return _reference_mode


def kernel_for(name, array):
    """The kernel ``name`` for arrays like ``array``: CUDA for a CuPy array,
    ``CPU_DEFAULT[name]`` (normally Numba) for a NumPy array, or its NumPy
    reference after :func:`use_reference_kernels`."""
    from tinylm.backend import device_of  # imports only NumPy

    if device_of(array) == "cuda":
        return get_kernel(name, "cuda")
    if _reference_mode:
        return get_kernel(name, "numpy")
    return get_kernel(name, CPU_DEFAULT.get(name, "numba"))
