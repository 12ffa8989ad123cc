"""OpenBLAS's parallel work run on Numba's OpenMP threads: one pool of threads, not two.

NumPy's OpenBLAS keeps its own threads. After a parallel product they poll
for new work for a long while, so when a Numba kernel runs next, its second
thread and OpenBLAS's polling one take turns on the same core; and Numba's
threads, told to sleep at once (``OMP_WAIT_POLICY=PASSIVE``, so as not to do
the same to OpenBLAS), must be woken for every kernel (both measured:
docs/performance.md, "Threads and OpenBLAS: the smaller costs"). PyTorch has
neither cost: its BLAS and its own kernels share one OpenMP pool.

OpenBLAS 0.3.27 and later let a program take its threading over
(``openblas_set_threads_callback_function``): a parallel call then hands the
callback its jobs, ``dojob(i, jobdata + i * elsize, dojob_data)`` for i below
``numjobs``, and returns when they are done. The callback here is a Numba
``cfunc`` that runs the jobs with ``prange``, one per thread of Numba's pool,
so BLAS and the kernels use the same threads, which may then spin briefly
between calls (``threads.configure_threads`` sets ``GOMP_SPINCOUNT``).

A GPT training step is faster so than with OpenBLAS on its own threads and
Numba's sleeping between kernels, and Numba's parallel drivers pay down to
smaller kernels; the figures are in ``docs/performance.md`` ("Threads and
BLAS: what was measured").

What the callback must guarantee, and how:

- **All jobs of a call run at once.** The jobs of a matrix product wait for
  one another (each packs a block of B the others read), so two jobs queued on
  one thread would wait forever. Numba's ``prange`` gives each of its threads
  one equal share of the iterations: with ``numjobs`` iterations on
  ``numjobs`` threads, one job each. OpenBLAS's thread count is kept at
  Numba's (``configure_threads`` sets both), and should OpenBLAS still ask for
  more jobs than Numba's current count, the callback raises Numba's count for
  the call; :func:`share` refuses a library that could ask for more than
  Numba's whole pool.
- **No parallel BLAS call from inside a parallel region.** A nested OpenMP
  region gets a team of one thread, which would run the jobs in turn (and
  wait forever). Kernels that call BLAS from ``prange`` set OpenBLAS to one
  thread around it (``causal_attention.py``).
- **One call's jobs at a time.** OpenBLAS hands each call the same
  ``dojob_data`` (0) and its jobs pick their work buffers by job number, so
  the jobs of two calls at once (two Python threads, each in a product:
  NumPy lets go of the GIL) would write into each other's buffers; tested,
  1024 x 1024 products then came out wrong. The callback takes turns on a
  flag (an atomic compare-and-swap, yielding the core while it waits), as
  OpenBLAS's own threads take one call's jobs at a time.
- **Fork.** GNU OpenMP does not work in a forked child, so the child gets
  OpenBLAS's own threading back (``os.register_at_fork``).

Only the OpenBLAS that NumPy uses is changed; another one loaded in the
process (SciPy's) keeps its own threads.
"""

import ctypes
import functools
import os

import numba
import numpy as np
from llvmlite import ir
from numba import cfunc, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .threads import _function_named, blas_threads, numpy_openblas

# The names under which OpenBLAS builds export the setter (NumPy 2's wheels prefix theirs).
_SETTERS = (
    "scipy_openblas_set_threads_callback_function64_",
    "scipy_openblas_set_threads_callback_function",
    "openblas_set_threads_callback_function64_",
    "openblas_set_threads_callback_function",
)

#: Numba's pool size: the most jobs the callback can run at once.
POOL_SIZE = numba.config.NUMBA_NUM_THREADS


@intrinsic
def _call_job(typingctx, dojob, index, job, dojob_data):
    """Call OpenBLAS's ``void dojob(int thread_num, void *job, int dojob_data)`` at address ``dojob``."""

    def codegen(context, builder, signature, args):
        address, index_v, job_v, data_v = args
        int32, pointer = ir.IntType(32), ir.IntType(8).as_pointer()
        function_type = ir.FunctionType(ir.VoidType(), [int32, pointer, int32])
        function = builder.inttoptr(address, function_type.as_pointer())
        builder.call(function, [builder.trunc(index_v, int32), builder.inttoptr(job_v, pointer),
                                builder.trunc(data_v, int32)])
        return context.get_dummy_value()

    return types.void(types.intp, types.intp, types.intp, types.intp), codegen


@intrinsic
def _numba_thread_count(typingctx):
    """Numba's thread count for the calling thread, from the threading layer's
    ``get_num_threads`` (linked by name, as Numba's own parallel loops are, so the
    callback stays cacheable; ``numba.get_num_threads()`` would bake in an address)."""

    def codegen(context, builder, signature, args):
        # Declared as Numba's parallel loops declare it (returning intp): one module holds both.
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                                  "get_num_threads")
        return builder.call(function, [])

    return types.int64(), codegen


@intrinsic
def _set_numba_thread_count(typingctx, count):
    """``numba.set_num_threads(count)`` for the calling thread, linked by name as above."""

    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]),
                                                  "set_num_threads")
        builder.call(function, [builder.trunc(args[0], ir.IntType(32))])
        return context.get_dummy_value()

    return types.void(types.int64), codegen


def _busy_flag(module):
    """The module's ``int32`` flag, 1 while a call runs its jobs (see :func:`_run_openblas_jobs`)."""
    flag = module.globals.get("tinylm_blas_pool_busy")
    if flag is None:
        flag = ir.GlobalVariable(module, ir.IntType(32), name="tinylm_blas_pool_busy")
        flag.initializer = ir.Constant(ir.IntType(32), 0)
        flag.linkage = "internal"
    return flag


@intrinsic
def _take_turn(typingctx):
    """Wait until no other call runs its jobs, then mark this one as running: an atomic
    compare-and-swap of the flag from 0 to 1, yielding the core between tries."""

    def codegen(context, builder, signature, args):
        int32 = ir.IntType(32)
        flag = _busy_flag(builder.module)
        sched_yield = cgutils.get_or_insert_function(builder.module, ir.FunctionType(int32, []), "sched_yield")
        attempt = builder.append_basic_block("turn.attempt")
        wait = builder.append_basic_block("turn.wait")
        taken = builder.append_basic_block("turn.taken")
        builder.branch(attempt)
        builder.position_at_end(attempt)
        swap = builder.cmpxchg(flag, ir.Constant(int32, 0), ir.Constant(int32, 1), "acquire", "monotonic")
        builder.cbranch(builder.extract_value(swap, 1), taken, wait)
        builder.position_at_end(wait)
        builder.call(sched_yield, [])
        builder.branch(attempt)
        builder.position_at_end(taken)
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _end_turn(typingctx):
    """Let the next call run its jobs."""

    def codegen(context, builder, signature, args):
        builder.store_atomic(ir.Constant(ir.IntType(32), 0), _busy_flag(builder.module), "release", 4)
        return context.get_dummy_value()

    return types.void(), codegen


# Pointers arrive as intp (the same register as a pointer in the C calling convention).
_CALLBACK_SIGNATURE = types.void(types.int32, types.intp, types.int32, types.uintp, types.intp, types.int32)


def _run_openblas_jobs(sync, dojob, numjobs, job_size, jobs, dojob_data):
    """The callback's body; compiled by :func:`_callback`."""
    threads = _numba_thread_count()
    wanted = min(np.int64(numjobs), POOL_SIZE)
    if wanted > threads:  # numba.set_num_threads(1) after configure_threads(2), say
        _set_numba_thread_count(wanted)
    _take_turn()  # one call's jobs at a time: the jobs of two calls would share buffers
    for index in prange(numjobs):  # one iteration per thread: numjobs <= Numba's thread count
        _call_job(dojob, index, jobs + index * job_size, dojob_data)
    _end_turn()
    if wanted > threads:
        _set_numba_thread_count(threads)


@functools.cache
def _callback():
    """The compiled callback (a Numba ``cfunc``), made on first use: a parallel cfunc
    starts Numba's threads as it is compiled or loaded from the cache, which must wait
    until ``configure_threads`` has chosen how they wait. ``parallel=True`` is on the
    cfunc itself: calling a parallel function from a cfunc would make it uncacheable,
    compiled anew in every process (measured: docs/performance.md, "Threads and
    OpenBLAS: the smaller costs")."""
    return cfunc(_CALLBACK_SIGNATURE, cache=True, parallel=True)(_run_openblas_jobs)


_shared = {}  # library path -> its setter, for the libraries now running on Numba's pool


def _numpy_setter():
    """``(path, setter)``: NumPy's OpenBLAS and its callback setter; None for what it lacks."""
    path = numpy_openblas()
    setter = None if path is None else _function_named(ctypes.CDLL(path), _SETTERS)
    if setter is not None:
        setter.argtypes = [ctypes.c_void_p]
        setter.restype = None
    return path, setter


def available():
    """Whether NumPy's OpenBLAS can hand its threading over (0.3.27 and later)."""
    return _numpy_setter()[1] is not None


def share():
    """Run NumPy's OpenBLAS's parallel work on Numba's threads from now on.

    Returns the library's path, or None (and nothing changes) where NumPy has
    no OpenBLAS with the callback (older than 0.3.27, MKL, Accelerate) or where
    OpenBLAS is set to more threads than Numba's pool has. Only for Numba's
    "omp" threading layer, which the caller checks: "workqueue" cannot run
    two parallel regions at once (two Python threads each calling BLAS).
    """
    path, setter = _numpy_setter()
    if setter is None or (blas_threads() or 1) > POOL_SIZE:
        return None
    if path not in _shared:
        setter(_callback().address)
        _shared[path] = setter
    return path


def unshare():
    """Give OpenBLAS its own threads back."""
    for setter in _shared.values():
        setter(None)
    _shared.clear()


def is_shared():
    """Whether NumPy's OpenBLAS now runs its parallel work on Numba's threads."""
    return bool(_shared)


os.register_at_fork(after_in_child=unshare)  # GNU OpenMP does not work in a forked child
