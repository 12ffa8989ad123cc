"""What the kernel modules share: the jit options, argument checks, launch shapes,
and small jitted helpers.

This module imports numba, so like every kernel module it is imported only when
the registry first needs a kernel (see ``registry.py``).

Habits that run through every jitted function in this package:

- **``@jit``, not bare ``@njit``.** ``jit`` below is ``numba.njit`` with
  ``cache=True`` (a second process loads the machine code instead of compiling),
  ``error_model="numpy"`` (a float division by zero gives inf/nan instead of
  raising; the Python check it replaces also blocks vectorization) and
  ``fastmath={"contract"}`` (lets LLVM fuse ``a * b + c`` into one FMA, which is
  both faster and more exact). No other fast-math flag is on in kernels:
  ``reassoc`` would let LLVM undo the careful range reduction in
  ``fastmath.fast_exp``, and ``nnan``/``ninf`` would break the inf/NaN
  handling. The one exception is ``reduction_jit``, for the sums ``lane_sum``
  and ``lane_dot`` alone: there ``reassoc`` lets LLVM's loop vectorizer keep
  the running sum in vector registers, which nothing else does here (Numba
  leaves the SLP vectorizer off, ``NUMBA_SLP_VECTORIZE=0``).
- **Constants take the array's dtype.** In Numba, as in NumPy's old rules, a
  float32 value combined with a Python float or int becomes float64, which is
  slower and changes the result type. So a kernel spells ``one = x.dtype.type(1)``
  (or ``type(v)(1)`` for a scalar ``v``) and uses that; launchers cast scalar
  arguments such as ``eps`` to the dtype before the call.
- **Transcendentals come from ``fastmath``**: the kernels call ``exp_into``,
  ``tanh_into``, ``sigmoid_into`` or ``erf_into`` on a row, which vectorize,
  instead of ``math.exp`` and friends per element, which do not.
- **A serial function over a range of rows, and a parallel driver.** The work
  on rows ``start:stop`` (or a span of a flat array) is one ``@jit`` function,
  which the launcher calls on everything; the parallel driver splits the rows
  into one contiguous chunk per thread with ``prange`` and calls the same
  function on each chunk (which also gets its own scratch buffers). The
  launcher takes the parallel driver only when there is enough work to pay for
  waking the threads (``use_parallel``; measured: docs/performance.md,
  "Parallel thresholds (PARALLEL_MIN_WORK)").
- **Loops index from 0.** Inner loops run over ``range(n)`` on a row or a slice.
  Indexing a whole array with ``k`` from ``range(start, stop)`` makes Numba
  guard every access against a negative ``k``, which stops LLVM from
  vectorizing the loop (measured: docs/performance.md, "Loops that vectorize").
"""

import hashlib
import math
import os
from functools import partial
from pathlib import Path

import numba
import numpy as np
from numba import cuda


def _cache_per_source_version():
    """Point Numba's cache at a directory of its own for this version of the kernels.

    Numba checks a cached function against its own file's timestamp only, but
    the kernels inline helpers from other modules (``lane_sum`` below,
    ``fast_exp`` in ``fastmath``): after a change to a helper, a kernel whose
    file did not change would load its old machine code. So unless the user
    chose a directory (``NUMBA_CACHE_DIR``), the cache goes to
    ``$XDG_CACHE_HOME/tinylm/numba/<hash of kernels/*.py>`` (``~/.cache`` by
    default); where that cannot be written, Numba's own choice stands.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        directory = base / "tinylm" / "numba" / digest.hexdigest()[:16]
        directory.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # RuntimeError: no home directory to be found
        return
    if os.access(directory, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(directory)
        numba.config.reload_config()  # the compiler reloads it from the environment too


_cache_per_source_version()

#: ``numba.njit`` with this package's options; ``@jit`` or ``@jit(parallel=True)``.
jit = partial(numba.njit, cache=True, error_model="numpy", fastmath={"contract"})

#: ``jit`` plus ``reassoc``, for plain sums only: LLVM may then add the terms in
#: any order, and it splits the sum over the lanes of vector registers.
reduction_jit = partial(numba.njit, cache=True, error_model="numpy", fastmath={"contract", "reassoc"})

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Below this much work a parallel driver costs more in waking the threads than
#: it saves. Work is the number of elements, doubled for kernels that evaluate an
#: exp, tanh or erf per element. The bar sits well above where two threads start to
#: pay for a kernel alone: inside a training step the kernel's second thread meets
#: OpenBLAS's threads on the other core, and since the row sums vectorize
#: (``lane_sum``) the serial row kernels beat two threads below it even alone. With
#: OpenBLAS on Numba's threads (``blas_pool.py``) smaller kernels gain alone, but
#: whole steps did not move, so the bar stays (measured: docs/performance.md,
#: "Parallel thresholds (PARALLEL_MIN_WORK)").
PARALLEL_MIN_WORK = 1 << 19

#: Threads per block for the CUDA kernels; the shared-memory scratch of the
#: row kernels has this many slots.
CUDA_MAX_BLOCK = 256


# --------------------------------------------------------------------------- checks


def check_float(kernel, name, array, ndim=None):
    """Raise unless ``array`` is float32 or float64 (and has ``ndim`` axes)."""
    if array.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{kernel}: {name} must be float32 or float64, got {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{kernel}: {name} must have {ndim} axes, got shape {array.shape}")


def check_like(kernel, name, array, dtype, shape):
    """Raise unless ``array`` has exactly ``dtype`` and ``shape``."""
    if array.dtype != dtype:
        raise TypeError(f"{kernel}: {name} must be {dtype} like the first input, got {array.dtype}")
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{kernel}: {name} must have shape {tuple(shape)}, got {array.shape}")


def output_array(kernel, name, given, xp, shape, dtype):
    """An array for a kernel to write a result into: ``given`` once checked, or a new one.

    ``given`` (None for a new array) must have exactly ``shape`` and ``dtype``
    and be C-contiguous, as a slice ``array[t]`` of a larger array is: the
    recurrent ops pass one time step of a (T, B, ...) array, which saves a copy
    per step.
    """
    if given is None:
        return xp.empty(shape, dtype)
    check_like(kernel, name, given, dtype, shape)
    if not given.flags.c_contiguous:
        raise ValueError(f"{kernel}: {name} must be C-contiguous to be written into, got strides {given.strides}")
    return given


def use_parallel(n_elements, transcendental=False):
    """Whether a launcher should call its ``prange`` driver: enough work and more than one thread.

    ``transcendental``: the kernel evaluates an exp, tanh or erf per element.
    """
    work = 2 * n_elements if transcendental else n_elements
    return work >= PARALLEL_MIN_WORK and numba.get_num_threads() > 1


def check_sequence(kernel, name, array, w_hh, gates, per_unit=None):
    """(T, B, H) of a recurrent layer's (T, B, per_unit * H) array, once it and
    w_hh (gates * H, H) are checked; ``per_unit`` defaults to ``gates``."""
    per_unit = gates if per_unit is None else per_unit
    check_float(kernel, name, array, ndim=3)
    length, batch, width = array.shape
    if width % per_unit:
        raise ValueError(f"{kernel}: {name} must have shape (T, B, {per_unit}H), got {array.shape}")
    hidden = width // per_unit
    check_like(kernel, "w_hh", w_hh, array.dtype, (gates * hidden, hidden))
    return length, batch, hidden


# --------------------------------------------------------------------------- CPU helpers


def chunk_count(n_items):
    """How many chunks a parallel driver should split ``n_items`` into: one per thread."""
    return max(1, min(numba.get_num_threads(), n_items))


def step_chunk_count(n_items):
    """Chunks for the parallel part of every time step of a compiled recurrent loop.

    A step's cell is far below ``PARALLEL_MIN_WORK`` (LSTM: (32, 4 * 256)), but
    it runs between two OpenBLAS products on the same threads. Where they spin
    between regions (the shared pool) splitting its rows pays; where they sleep
    at once, waking them at every step costs more than the cell.
    ``PARALLEL_MIN_WORK = 0`` (``testing.parallel_drivers``) splits always.
    With one chunk the loops call the rows serially and enter no parallel region
    at all: even a region of one chunk costs something at every step (measured:
    docs/performance.md, "Recurrent loops in compiled code").
    """
    from .threads import parallel_regions_are_cheap

    if PARALLEL_MIN_WORK == 0 or parallel_regions_are_cheap():
        return chunk_count(n_items)
    return 1


@jit
def chunk_bounds(n_items, n_chunks, chunk):
    """``(start, stop)`` of chunk number ``chunk`` when ``n_items`` are split evenly."""
    return chunk * n_items // n_chunks, (chunk + 1) * n_items // n_chunks


@jit
def add_rows(total, addend, start, stop):
    """``total[start:stop] += addend[start:stop]`` for 2-D arrays, row by row."""
    for b in range(start, stop):
        total[b] += addend[b]


@reduction_jit
def lane_sum(values):
    """Sum of a 1-D array, vectorized: each lane of a vector register keeps a partial sum.

    A plain ``s += v[j]`` loop is one chain of dependent additions (4 cycles
    each) unless LLVM may reorder it; ``reduction_jit`` allows that, and the
    loop vectorizer then runs several vector accumulators side by side. The
    order is fixed by the compiled code, so results repeat exactly on one
    machine; rounding error is smaller than the sequential sum's. It is several
    times as fast as eight scalar accumulators, what this was before (measured:
    docs/performance.md, "Loops that vectorize").
    """
    total = values.dtype.type(0)
    for j in range(values.shape[0]):
        total += values[j]
    return total


@jit
def lane_max(values):
    """Largest element of a non-empty 1-D array, with eight running maxima.

    Eight independent chains, as the CPU can run side by side; a vectorized
    max reduction would need ``nnan``, which would lose NaN inputs.
    """
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = values[0]
    n = values.shape[0]
    n8 = n - n % 8
    for j in range(0, n8, 8):
        m0 = max(m0, values[j])
        m1 = max(m1, values[j + 1])
        m2 = max(m2, values[j + 2])
        m3 = max(m3, values[j + 3])
        m4 = max(m4, values[j + 4])
        m5 = max(m5, values[j + 5])
        m6 = max(m6, values[j + 6])
        m7 = max(m7, values[j + 7])
    for j in range(n8, n):
        m0 = max(m0, values[j])
    return max(max(max(m0, m4), max(m1, m5)), max(max(m2, m6), max(m3, m7)))


@reduction_jit
def lane_dot(a, b):
    """``sum(a * b)`` of two 1-D arrays, vectorized like ``lane_sum``."""
    total = a.dtype.type(0)
    for j in range(a.shape[0]):
        total += a[j] * b[j]
    return total


def sigmoid_reference(x):
    """NumPy logistic function, stable for large ``|x|``, in ``x``'s dtype."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------- CUDA


def block_size_for(n, limit=CUDA_MAX_BLOCK):
    """The smallest power of two >= ``n``, capped at ``limit`` (at least 1).

    Row kernels reduce with a power-of-two tree in shared memory, and a row of 8
    values needs no block of 256 threads (which also keeps the CUDA simulator fast).
    """
    size = 1
    while size < min(n, limit):
        size *= 2
    return size


def elementwise_launch(n, limit=CUDA_MAX_BLOCK):
    """``(blocks, threads)`` covering ``n`` elements with one thread each."""
    threads = block_size_for(n, limit)
    return max(1, (n + threads - 1) // threads), threads


@cuda.jit(device=True)
def cuda_unit_index(batch, hidden):
    """This thread's (row b, hidden unit j) in a (batch, hidden) grid launched with
    ``elementwise_launch(batch * hidden)``; b is -1 for the threads past its end."""
    k = cuda.grid(1)
    if k >= batch * hidden:
        return -1, 0
    b = k // hidden
    return b, k - b * hidden


@cuda.jit(device=True)
def cuda_sigmoid(v):
    one = type(v)(1)
    if v >= 0:
        return one / (one + math.exp(-v))
    e = math.exp(v)
    return e / (one + e)


@cuda.jit(device=True)
def cuda_block_sum(scratch, value):
    """Sum of ``value`` over the threads of a block (blockDim a power of two).

    Every thread of the block must call it; every thread gets the total.
    """
    t = cuda.threadIdx.x
    scratch[t] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride:
            scratch[t] += scratch[t + stride]
        cuda.syncthreads()
        stride //= 2
    total = scratch[0]
    cuda.syncthreads()  # nobody may overwrite scratch[0] before everyone has read it
    return total


@cuda.jit(device=True)
def cuda_block_max(scratch, value):
    """Maximum of ``value`` over the threads of a block; same contract as ``cuda_block_sum``."""
    t = cuda.threadIdx.x
    scratch[t] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride:
            scratch[t] = max(scratch[t], scratch[t + stride])
        cuda.syncthreads()
        stride //= 2
    total = scratch[0]
    cuda.syncthreads()
    return total
