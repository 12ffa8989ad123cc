"""tinylm: a from-scratch language-model engine.

The names here follow PyTorch's, so that ``import tinylm as torch`` is enough
for everyday PyTorch code: ``tinylm.tensor``, ``zeros``, ``randn``,
``manual_seed``, ``no_grad``, every op of ``tinylm.ops`` (``cat``,
``softmax``...), ``save``/``load``, ``device``, ``Generator``; layers live in
``tinylm.nn``, optimizers in ``tinylm.optim``, datasets and loaders in
``tinylm.utils.data``, models in ``tinylm.models``. ``docs/pytorch.md`` lists
what is supported, what differs and what is refused.

Importing tinylm loads NumPy and nothing heavier. Every submodule (``nn``,
``optim``, ``utils``, ``cuda``...) loads on first use, through the module's
``__getattr__`` (PEP 562), as do ``save``, ``load`` and the thread settings;
Numba, CuPy, safetensors and the plotting libraries load when first used. A
well-known PyTorch name that tinylm does not have (``torch.compile``,
``torch.jit``...) raises ``NotInTinylmError`` saying so.
"""

import importlib as _importlib
import importlib.util as _importlib_util

import numpy as _np

from tinylm import backend
from tinylm.errors import NotInTinylmError, refuse  # defined there so tinylm.nn can import them too
from tinylm.memory import keep_freed_memory_unless_opted_out as _keep_freed_memory
from tinylm.backend import Device as device  # noqa: N813 (PyTorch's name for the class)
from tinylm.backend import cuda_is_available

# every public op (tinylm.ops.__all__) as tinylm.<op>; the names below take precedence
from tinylm.ops import *  # noqa: F403
from tinylm.creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    is_tensor,
    linspace,
    multinomial,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from tinylm.gradcheck import GradcheckError, gradcheck
from tinylm.random import Generator, get_rng_state, manual_seed, set_rng_state
from tinylm.tensor import (
    Function,
    Tensor,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)

# dtypes are NumPy's, under PyTorch's names
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
float16 = _np.dtype(_np.float16)
int8 = _np.dtype(_np.int8)
int16 = _np.dtype(_np.int16)
int32 = _np.dtype(_np.int32)
int64 = _np.dtype(_np.int64)
uint8 = _np.dtype(_np.uint8)
bool = _np.dtype(_np.bool_)  # noqa: A001 (the PyTorch name)
half = float16
short = int16
int = int32  # noqa: A001 (the PyTorch name: torch.int is int32)
long = int64
float = float32  # noqa: A001 (the PyTorch name)
double = float64

__version__ = "0.1.0"


def get_default_dtype():
    """The dtype of tensors made from Python floats and of new parameters: float32."""
    return backend.DEFAULT_FLOAT


def inference_mode(mode=True):
    """PyTorch's ``torch.inference_mode()``: here the same as ``no_grad()`` (with ``mode=False``, ``enable_grad()``),
    as a context manager or a decorator."""
    return set_grad_enabled(not mode)


# Well-known PyTorch names that tinylm does not provide, and what to do instead.
# A submodule of tinylm of the same name, if one is ever added, is found first.
NOT_IN_TINYLM = {
    "compile": "tinylm runs every op eagerly; use the model itself (drop 'model = torch.compile(model)')",
    "jit": "there is no TorchScript (jit.script, jit.trace); run the Python module itself",
    "autocast": "there is no automatic mixed precision; tensors compute in their own dtype (float32 or float64)",
    "amp": "there is no automatic mixed precision or GradScaler; train in float32",
    "distributed": "tinylm trains in one process",
    "fft": "there are no Fourier transforms",
    "linalg": "there is no linear-algebra module; matmul, norm and the tensor ops are in tinylm itself",
    "special": "there is no special-functions module (tinylm.erf is there)",
    "sparse": "tensors are dense NumPy or CuPy arrays",
    "sparse_coo_tensor": "tensors are dense NumPy or CuPy arrays",
    "vmap": "there are no functional transforms (vmap, grad, jacrev); write the batch dimension out",
    "func": "there are no functional transforms (vmap, grad, jacrev); write the batch dimension out",
    "distributions": "there are no probability distributions; sample with tinylm.multinomial or tinylm.randn",
    "quantization": "there is no quantization",
    "ao": "there is no quantization or pruning (torch.ao)",
    "onnx": "there is no ONNX export; save the weights with tinylm.save (safetensors)",
    "export": "there is no graph export; save the weights with tinylm.save (safetensors)",
    "fx": "there is no graph tracing (torch.fx)",
    "hub": "there is no model hub; load weights with tinylm.load or load_state_dict",
    "backends": "there is no cuDNN or MKL switch (torch.backends.cudnn...); delete the setting",
    "nested": "there are no nested (ragged) tensors; pad them (tinylm.nn.utils.rnn.pad_sequence)",
    "masked": "there are no masked tensors; use tinylm.where or masked_fill",
    "bfloat16": "NumPy has no bfloat16; use tinylm.float16 or tinylm.float32",
    "complex64": "tensors are real: complex dtypes are not supported",
    "complex128": "tensors are real: complex dtypes are not supported",
    "cfloat": "tensors are real: complex dtypes are not supported",
    "Size": "shapes are plain tuples (tensor.shape, tensor.size())",
    "set_default_dtype": "new floating tensors are float32; give dtype= or call model.double()",
    "set_default_device": "tensors are made on the CPU; give device= or call .to(device)",
    "use_deterministic_algorithms": "there is no such switch; CPU results are reproducible for a fixed thread count",
}

# Public functions that live in modules loaded on first use: name -> module.
_LAZY_FUNCTIONS = {
    "save": "tinylm.serialization",
    "load": "tinylm.serialization",
    "set_num_threads": "tinylm.threads",
    "get_num_threads": "tinylm.threads",
}


def __getattr__(name):
    """``tinylm.<name>`` not found among the names above: a submodule or function loaded now, or a
    PyTorch feature refused by name (PEP 562: Python calls this only for names the module lacks)."""
    if name in _LAZY_FUNCTIONS:
        value = getattr(_importlib.import_module(_LAZY_FUNCTIONS[name]), name)
        globals()[name] = value  # later look-ups find it directly
        return value
    if not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}") is not None:
        return _importlib.import_module(f"{__name__}.{name}")  # the import binds it as an attribute too
    if name in NOT_IN_TINYLM:
        raise refuse(f"torch.{name}", NOT_IN_TINYLM[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    """The names above, the functions loaded on first use and the submodules (for completion in a shell)."""
    import pkgutil

    submodules = {module.name for module in pkgutil.iter_modules(__path__) if not module.name.startswith("_")}
    return sorted(set(globals()) | set(_LAZY_FUNCTIONS) | submodules)


_keep_freed_memory()  # a step reuses its freed activations' pages; TINYLM_KEEP_FREED_MEMORY=0 opts out (memory.py)
