"""Thread settings for the CPU kernels (Numba) and for NumPy's BLAS (OpenBLAS).

A program calls :func:`configure_threads` once, early (the CLI from its
``--threads`` option), and the benchmarks do the same. The one thing done at
import (of ``tinylm.kernels``) is :func:`use_passive_openmp_waiting`, see there.

Why these settings (the measurements are in ``docs/performance.md``, section
"Threads and BLAS: what was measured"):

- Installed layers: ``omp`` (GNU OpenMP) and ``workqueue``; ``tbb`` is not
  installed. ``omp`` is the faster and the steadier of the two (a parallel
  region costs a few microseconds; workqueue's cost tens, so it only pays on
  large kernels), hence :data:`LAYER_PREFERENCE`.
- On an idle machine two threads pay on the larger kernels at the shapes of a
  small GPT; the kernels stay serial below ``PARALLEL_MIN_WORK``
  (``_common.py``), where they lose.
- When another process keeps a core busy, a parallel call now and then waits
  a whole scheduler time slice for its descheduled second thread, and two
  threads become *slower* than one, for Numba and OpenBLAS alike; a whole
  training step several times slower. So the trainer chooses the count as it
  goes (``tinylm/training/thread_tuner.py``), by measuring its steps;
  ``configure_threads(1)`` pins one thread.

Caveats of the layers (from Numba's documentation): GNU OpenMP is not
fork-safe (a process forked after a parallel kernel ran must not run one
itself; use the "spawn" start method for worker processes), and workqueue is
not thread-safe (two Python threads must not run parallel kernels at once).

``configure_threads(n)`` sets OpenBLAS to ``n`` threads as well, through its C
API, found among the libraries loaded in the process (no environment variable,
no extra package). PyTorch, when a benchmark uses it, has its own setting
(``torch.set_num_threads``).

One pool for both. Where NumPy's OpenBLAS can hand its parallel work to the
program (0.3.27 and later) and Numba runs the "omp" layer,
``configure_threads`` makes OpenBLAS run it on Numba's threads
(``blas_pool.py``). The threads can then spin briefly after each call
(``GOMP_SPINCOUNT=30000``, a fraction of a millisecond) instead of going to
sleep at once, as no other pool waits for the cores; a GPT step is faster so
than with two pools, or with longer or no spinning.
This needs ``configure_threads`` before the first parallel kernel (GNU OpenMP
reads the setting when it starts); called later, or with ``blas=False``, it
leaves OpenBLAS its own threads.

Without asking. A program that never calls ``configure_threads`` gets it at the
first use of a CPU kernel (:func:`configure_default_threads`, called by the
registry), so that a user's own training loop runs as fast as ``tinylm
train``, unless the user chose threads some other way (see there).

Results depend on the thread count: OpenBLAS's float32 products that reduce
over many rows (the weight gradients) and the kernels that add partial sums
per thread (a bias's gradient) round differently on one thread and on two.
A run is reproducible bit for bit with a pinned count (``--threads N``).
"""

import ctypes
import functools
import os
import sys
from contextlib import contextmanager

#: GNU OpenMP's spin count (pause instructions, ~100,000 per ms) when the pool is shared.
SHARED_POOL_SPIN_COUNT = "30000"

# Whether OMP_WAIT_POLICY=PASSIVE came from use_passive_openmp_waiting (and so may be changed).
_passive_by_default = False


def use_passive_openmp_waiting():
    """Ask GNU OpenMP to put idle threads to sleep (``OMP_WAIT_POLICY=PASSIVE``), unless the user chose.

    By default an OpenMP thread spins for a while after each parallel region.
    In a training step Numba's kernels and OpenBLAS's matmuls take turns, so
    Numba's spinning threads steal both cores from the OpenBLAS threads that
    come next, and a GPT step takes several times as long (``docs/performance.md``).
    GNU OpenMP reads the setting once, when Numba's "omp" layer loads it (the
    first parallel kernel), which is why it must be set before then; an
    environment variable is the only interface it has.
    """
    global _passive_by_default
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        _passive_by_default = True


def _spin_briefly_if_ours_to_choose():
    """Before GNU OpenMP starts: brief spinning (``GOMP_SPINCOUNT``) in place of our
    PASSIVE default. A user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT stays."""
    global _passive_by_default
    if _passive_by_default and os.environ.get("OMP_WAIT_POLICY") == "PASSIVE":
        del os.environ["OMP_WAIT_POLICY"]
        _passive_by_default = False
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SHARED_POOL_SPIN_COUNT)


def _sleeps_at_once():
    """Whether GNU OpenMP's idle threads go to sleep at once, as the environment says
    (a GOMP_SPINCOUNT, when given, overrides OMP_WAIT_POLICY's spin count)."""
    spin_count = os.environ.get("GOMP_SPINCOUNT")
    if spin_count is not None:
        return spin_count.strip() == "0"
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def parallel_regions_are_cheap():
    """Whether a Numba parallel region now costs a few microseconds rather than a wake-up:
    GNU OpenMP's threads are running, two or more, and spin between regions (as they do
    with the shared pool) instead of sleeping at once."""
    import numba
    from numba.np.ufunc import parallel

    if not parallel._is_initialized or numba.get_num_threads() < 2:
        return False
    return numba.threading_layer() == "omp" and not _sleeps_at_once()


#: The order in which threading layers are tried when none is named.
LAYER_PREFERENCE = ("omp", "workqueue", "tbb")

# The names under which OpenBLAS builds export their thread setter.
_BLAS_SETTERS = (
    "openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
)
_BLAS_GETTERS = (
    "openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
)
_BLAS_CORE_NAMES = (
    "openblas_get_corename",
    "openblas_get_corename64_",
    "scipy_openblas_get_corename64_",
    "scipy_openblas_get_corename",
)


# True once threads were configured: by configure_threads (the user's call, the
# trainer's, or configure_default_threads's), or left to the user's own setting.
_configured = False

#: Environment variables by which a user chooses the threads; with any of them set,
#: :func:`configure_default_threads` leaves everything as the user set it.
USER_THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def configure_default_threads():
    """:func:`configure_threads` with its defaults, once per process, unless the user chose.

    The registry calls it when a CPU (Numba) kernel is first asked for, so that a
    program that never calls ``configure_threads`` (a user's own training loop)
    still runs OpenBLAS on Numba's threads, as fast as ``tinylm train``. It does
    nothing when the threads were configured before (by ``configure_threads``),
    when the environment holds the user's choice (one of
    :data:`USER_THREAD_VARIABLES`, or an ``OMP_WAIT_POLICY`` not set by
    :func:`use_passive_openmp_waiting`), or when Numba's threads already run
    (started by the user's own parallel code, perhaps on another layer).
    Returns ``configure_threads``'s answer, or None when it left things alone.
    """
    global _configured
    if _configured:
        return None
    _configured = True
    user_wait_policy = "OMP_WAIT_POLICY" in os.environ and not _passive_by_default
    if user_wait_policy or any(name in os.environ for name in USER_THREAD_VARIABLES):
        return None
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        return None
    return configure_threads()


def configure_threads(n=None, *, layer=None, blas=True):
    """Use ``n`` threads in Numba's parallel kernels (and in OpenBLAS if ``blas``).

    ``n=None`` means one per core (Numba's pool size). ``layer`` names Numba's threading layer
    ("omp", "workqueue" or "tbb"); by default the one in ``NUMBA_THREADING_LAYER``
    if the user set it, else the first installed one of :data:`LAYER_PREFERENCE`.
    The layer is fixed once Numba starts its threads
    (the first parallel kernel, or the first call of this function), so a later
    call can change the count but not the layer; asking for a different layer
    then raises RuntimeError.

    With ``blas``, OpenBLAS also runs its parallel work on Numba's threads where
    it can (see the module's notes: the first call, before any parallel kernel,
    decides).

    Returns what is now in effect: ``{"threads", "layer", "blas_threads", "blas_library",
    "blas_pool"}``; the BLAS entries are None when no OpenBLAS is loaded, and
    ``blas_pool`` is "numba" when OpenBLAS runs on Numba's threads, "openblas" when on its own.
    """
    global _configured
    import numba
    from numba.np.ufunc import parallel

    if layer is not None and layer not in LAYER_PREFERENCE:
        raise ValueError(f"configure_threads: layer must be one of {LAYER_PREFERENCE}, got {layer!r}")
    most = numba.config.NUMBA_NUM_THREADS
    n = most if n is None else int(n)
    if not 1 <= n <= most:
        raise ValueError(f"configure_threads: n must be between 1 and {most} (Numba's thread pool), got {n}")
    _configured = True
    if not parallel._is_initialized:  # the layer (and OpenMP's waiting) can still be chosen
        if layer is None and "NUMBA_THREADING_LAYER" in os.environ:
            pass  # the user's layer, which Numba read from the environment
        elif layer is None:
            numba.config.THREADING_LAYER = "default"
            numba.config.THREADING_LAYER_PRIORITY = list(LAYER_PREFERENCE)
        else:
            numba.config.THREADING_LAYER = layer
        if blas and layer in (None, "omp"):
            from . import blas_pool

            if blas_pool.available():  # else OpenBLAS keeps its threads, and ours must not spin
                _spin_briefly_if_ours_to_choose()
    numba.set_num_threads(n)  # starts the threads (and so fixes the layer) on the first call
    active = numba.threading_layer()
    if layer is not None and active != layer:
        raise RuntimeError(
            f"configure_threads: Numba already runs the {active!r} threading layer; "
            f"{layer!r} can only be chosen before the first parallel kernel runs"
        )
    blas_library = set_blas_threads(n) if blas else None
    if blas_library and active == "omp" and not _sleeps_at_once():
        from . import blas_pool

        blas_pool.share()
    pool = sys.modules.get(f"{__package__}.blas_pool")
    return {
        "threads": numba.get_num_threads(),
        "layer": active,
        "blas_threads": blas_threads() if blas_library else None,
        "blas_library": blas_library,
        "blas_pool": "numba" if pool is not None and pool.is_shared() else ("openblas" if blas_library else None),
    }


def _loaded_openblas():
    """Paths of the OpenBLAS libraries loaded in this process (Linux: /proc/self/maps)."""
    paths = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def _inside_numpy(path):
    """Whether ``path`` lies in NumPy's package folder (or ``numpy.libs`` beside it, for its wheels)."""
    import numpy

    return os.path.abspath(path).startswith(os.path.dirname(os.path.abspath(numpy.__file__)))


@functools.cache  # NumPy's library is loaded with NumPy and stays
def numpy_openblas():
    """The path of the OpenBLAS library NumPy's own products call, or None if it has none.

    Of the OpenBLAS libraries loaded in the process (SciPy bundles another), the
    one inside NumPy's package folder; failing that, the only one loaded.
    """
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS, before the answer is kept)

    paths = _loaded_openblas()
    for path in paths:
        if _inside_numpy(path):
            return path
    return paths[0] if len(paths) == 1 else None


def _function_named(library, names):
    """The first of ``names`` that ``library`` (a ctypes.CDLL) exports, or None."""
    for name in names:
        function = getattr(library, name, None)
        if function is not None:
            return function
    return None


# (names) -> (path, function) once found: reading /proc/self/maps is slow where torch
# is loaded, and generate() asks three times per call (measured: docs/performance.md,
# "Threads and OpenBLAS: the smaller costs"). A library that is not loaded yet is
# looked for again next time.
_found_blas_functions = {}


def _blas_function(names):
    """``(path, function)``: the first of ``names`` in a loaded OpenBLAS, NumPy's own
    looked at first (so that with SciPy's loaded too, NumPy's is the one set)."""
    found = _found_blas_functions.get(names)
    if found is not None:
        return found
    for path in sorted(_loaded_openblas(), key=lambda path: not _inside_numpy(path)):
        function = _function_named(ctypes.CDLL(path), names)
        if function is not None:
            _found_blas_functions[names] = path, function
            return path, function
    return None, None


def set_blas_threads(n):
    """Set OpenBLAS's thread count now; returns the library's path, or None if none is loaded.

    While OpenBLAS runs on Numba's threads (``blas_pool``) the count cannot exceed Numba's pool.
    """
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS, if it has one)

    pool = sys.modules.get(f"{__package__}.blas_pool")  # loaded by configure_threads, if at all
    if pool is not None and pool.is_shared() and n > pool.POOL_SIZE:
        raise ValueError(
            f"set_blas_threads: OpenBLAS runs on Numba's pool of {pool.POOL_SIZE} threads; got {n} threads"
        )

    path, setter = _blas_function(_BLAS_SETTERS)
    if setter is None:
        return None
    setter.argtypes = [ctypes.c_int]
    setter.restype = None
    setter(int(n))
    return path


def blas_threads():
    """OpenBLAS's current thread count, or None if no OpenBLAS is loaded."""
    _, getter = _blas_function(_BLAS_GETTERS)
    if getter is None:
        return None
    getter.restype = ctypes.c_int
    return getter()


def blas_core():
    """The kernel family NumPy's OpenBLAS runs ("Haswell", "SkylakeX", "Zen", ...), or None without OpenBLAS.

    OpenBLAS chooses it from the processor when it loads, unless the
    environment variable ``OPENBLAS_CORETYPE`` names one. Some machines set
    that variable to an older family for the sake of old OpenBLAS builds; on
    this project's AVX-512 machine it pins NumPy's OpenBLAS 0.3.31 to
    "Haswell" (AVX2), where float32 products run at about half the speed of
    its own choice, "SkylakeX" (``benchmarks/blas_env.py``).
    """
    _, getter = _blas_function(_BLAS_CORE_NAMES)
    if getter is None:
        return None
    getter.restype = ctypes.c_char_p
    return getter().decode()


@contextmanager
def blas_threads_at_most(n):
    """Run a block with OpenBLAS on at most ``n`` threads, then restore the previous count.

    For work made of many tiny matmuls, such as decoding one token at a time:
    there a second BLAS thread saves nothing, and when another process keeps a
    core busy each call may wait a whole time slice for it (measured:
    docs/performance.md, "Threads and BLAS: what was measured").
    """
    configure_default_threads()  # now, not at the block's first kernel, where it would undo the limit
    previous = blas_threads()
    if previous is None or previous <= n:
        yield
        return
    set_blas_threads(n)
    try:
        yield
    finally:
        set_blas_threads(previous)
