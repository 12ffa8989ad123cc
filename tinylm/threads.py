"""``torch.set_num_threads`` / ``get_num_threads``: the CPU threads of tinylm's kernels and of BLAS.

Both go to ``tinylm.kernels.configure_threads`` (Numba's thread pool and
OpenBLAS together; see ``kernels/threads.py`` for why). They import Numba when
called, never when ``tinylm`` is imported.
"""

import warnings


def set_num_threads(n):
    """Run tinylm's CPU kernels and NumPy's BLAS on ``n`` threads (an int from 1).

    More threads than Numba's pool holds (one per core) cannot be started:
    such a count is lowered to the pool's size, with a warning, where PyTorch
    would start them anyway.
    """
    import numba

    from tinylm.kernels import configure_threads

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: expected an int from 1, got {n!r}")
    most = numba.config.NUMBA_NUM_THREADS
    if n > most:
        warnings.warn(f"set_num_threads({n}): tinylm's thread pool holds {most} threads (one per core); using {most}",
                      stacklevel=2)  # fmt: skip
        n = most
    configure_threads(n)


def get_num_threads():
    """The number of threads tinylm's CPU kernels run on: the count in use once they run, else the
    count they will start with (one per core unless ``set_num_threads`` or NUMBA_NUM_THREADS said otherwise)."""
    import numba
    from numba.np.ufunc import parallel

    if parallel._is_initialized:
        return numba.get_num_threads()
    return numba.config.NUMBA_NUM_THREADS  # asking numba.get_num_threads() would start the pool
