"""tinylm: a from-scratch language-model engine.

The names here follow PyTorch's: ``tinylm.tensor``, ``zeros``, ``randn``,
``manual_seed``, ``no_grad``, ``cat``, ``softmax`` and so on; layers live in
``tinylm.nn``, optimizers in ``tinylm.optim``, models in ``tinylm.models``.
Importing tinylm loads NumPy and nothing heavier: Numba, CuPy and the
plotting and checkpoint libraries load when first used.
"""

import numpy as _np

from tinylm import backend
from tinylm.memory import keep_freed_memory as _keep_freed_memory
from tinylm.backend import cuda_is_available
# every public op (tinylm.ops.__all__) as tinylm.<op>; the names below take precedence
from tinylm.ops import *  # noqa: F403
from tinylm.creation import (
    arange,
    from_numpy,
    full,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from tinylm.gradcheck import GradcheckError, gradcheck
from tinylm.random import get_rng_state, manual_seed, set_rng_state
from tinylm.tensor import (
    Function,
    Tensor,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)

float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
float16 = _np.dtype(_np.float16)
int32 = _np.dtype(_np.int32)
int64 = _np.dtype(_np.int64)
uint8 = _np.dtype(_np.uint8)
bool = _np.dtype(_np.bool_)  # noqa: A001 (the PyTorch name)
long = int64
float = float32  # noqa: A001 (the PyTorch name)
double = float64

__version__ = "0.1.0"

_keep_freed_memory()  # a training step reuses its freed activations' pages (see tinylm/memory.py)
