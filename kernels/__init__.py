"""Fused kernels for tinylm (installed as ``tinylm.kernels``).

Each kernel is a plain function over arrays (no Tensor) with three
implementations side by side in one module: a NumPy reference (the ground
truth), a Numba CPU version and a Numba CUDA version. Pick one through the
registry::

    from tinylm.kernels import get_kernel, kernel_for
    forward = get_kernel("layernorm_forward", "numba")    # or "numpy", "cuda"
    y, mean, rstd = forward(x, weight, bias, 1e-5)
    forward = kernel_for("layernorm_forward", x)          # by x's device

Kernels: cross_entropy_forward/backward, layernorm_forward/backward,
gelu_forward/backward, gelu_forward_with_grad, bias_gelu_forward/backward,
attention_softmax_forward/backward, causal_attention_forward/backward (a
GPT's multi-head attention on its packed q/k/v rows), lstm_cell_forward/backward,
lstm_sequence_forward/backward (an LSTM layer's whole loop over time),
gru_cell_forward/backward, gru_sequence_forward/backward, adamw_update,
gpt_decode_step (see ``KERNELS``).

Importing this package does not import Numba (it would cost a third of a
second); a kernel's module is imported on the first ``get_kernel`` for it, and
Numba compiles each function on its first call, or loads it from its cache.
Threads: :func:`configure_threads`, which also puts OpenBLAS on Numba's
threads (``blas_pool.py``); a program that does not call it gets it with its
defaults at the first Numba kernel it asks for, unless its user chose the
threads otherwise (``threads.configure_default_threads``). Importing this
package sets ``OMP_WAIT_POLICY=PASSIVE`` if it is unset, until
``configure_threads`` chooses brief spinning for the shared pool (see
``threads.py``).
"""

from .registry import BACKENDS, CPU_DEFAULT, KERNELS, get_kernel, kernel_for, use_reference_kernels
from .threads import blas_threads_at_most, configure_threads, use_passive_openmp_waiting

use_passive_openmp_waiting()  # before Numba's OpenMP threads start; see its docstring

__all__ = [
    "BACKENDS", "CPU_DEFAULT", "KERNELS", "blas_threads_at_most", "configure_threads", "get_kernel", "kernel_for",
    "use_reference_kernels",
]  # fmt: skip
