"""Which BLAS kernels the benchmarks' timed processes run, and the option that chooses.

Some machines, this project's development machine among them, set
``OPENBLAS_CORETYPE`` (with ``OPENBLAS_L2_SIZE``) to pin OpenBLAS to an older
kernel family, because old OpenBLAS builds compute wrong results or crash on
newer processors. NumPy 2's own OpenBLAS (0.3.31 here) knows these processors,
and pinned it runs slower: on the AMD EPYC with AVX-512, OPENBLAS_CORETYPE=Haswell
(AVX2) against its own choice, SkylakeX (AVX-512), float32 matmuls at the GPT's
shapes (768x128x512 and the like), 2 threads, medians of 7x200 calls:
about 225 against 400 GFLOP/s (one thread: 120 against 228). PyTorch's MKL
reads neither variable and chooses for itself (about 200 GFLOP/s at the same
shapes). So by default the benchmarks start their timed processes without the
two variables, as on a machine that does not set them, and print the kernel
family that ran (``tinylm.kernels.threads.blas_core``); ``--machine-blas``
keeps the machine's setting. Nothing else in tinylm touches either variable.
"""

import os

PINNING_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def add_option(parser):
    parser.add_argument(
        "--machine-blas", action="store_true",
        help="keep this machine's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the timed runs "
             "(by default they run without them, on OpenBLAS's own choice of kernels)",
    )  # fmt: skip


def child_environment(machine_blas, **overrides):
    """os.environ for a timed process: without the pinning variables unless ``machine_blas``."""
    env = {k: v for k, v in os.environ.items() if machine_blas or k not in PINNING_VARIABLES}
    env.update(overrides)
    return env


def describe(core, machine_blas):
    """The line that says which kernels ran: 'OpenBLAS kernels SkylakeX (this machine's
    OPENBLAS_CORETYPE=Haswell ... left out)', given ``blas_core()``'s answer in the timed runs."""
    if core is None:
        return "no OpenBLAS"
    pinned = " ".join(f"{k}={os.environ[k]}" for k in PINNING_VARIABLES if k in os.environ)
    kept = f" (this machine's {pinned} {'kept' if machine_blas else 'left out'})" if pinned else ""
    return f"OpenBLAS kernels {core}{kept}"
