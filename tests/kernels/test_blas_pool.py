"""OpenBLAS's parallel work on Numba's threads (kernels/blas_pool.py, set up by configure_threads).

Each test runs in a fresh interpreter: the pool and OpenMP's waiting are chosen once
per process, before Numba's threads start, and a deadlock must fail the test (by its
timeout) rather than hang the suite.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from tinylm.kernels.threads import blas_threads


def _run_python(code, prelude="", **env):
    """Run ``prelude`` then ``code`` (each dedented) in a fresh interpreter."""
    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    # A pool of two even on a one-core machine. Being the user's choice, the variable also keeps
    # the first kernel from configuring the threads itself (threads.configure_default_threads).
    environment.update(NUMBA_NUM_THREADS="2", **env)
    source = textwrap.dedent(prelude) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=180,
                          env=environment)


def _assert_printed_ok(result, case=""):
    """The child exited cleanly and printed "ok" (its last line, once every check passed)."""
    assert result.returncode == 0, (f"{case}: {result.stderr}" if case else result.stderr)
    assert result.stdout.strip() == "ok"


def _has_callback():
    from tinylm.kernels import blas_pool

    return blas_pool.available()


pytestmark = pytest.mark.skipif(
    blas_threads() is None or not _has_callback(),
    reason="NumPy here has no OpenBLAS that hands its threading over (0.3.27 or later)",
)

# Products big enough for OpenBLAS to split between threads, checked against float64 einsum.
# At 1024 x 1024 its jobs wait for one another (run one after the other, they never finish).
_PRODUCTS = """
import numpy as np
rng = np.random.default_rng(0)
def check_products():
    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-12)):
        a = rng.standard_normal((1024, 1024)).astype(dtype)
        b = rng.standard_normal((1024, 1024)).astype(dtype)
        v = rng.standard_normal(1024).astype(dtype)
        want = np.einsum("ik,kj->ij", a.astype(np.float64), b.astype(np.float64))
        np.testing.assert_allclose(a @ b, want, rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(a.T.copy().T @ v, a.astype(np.float64) @ v, rtol=tol, atol=tol * 10)
"""


def test_configure_threads_runs_openblas_on_numbas_threads():
    result = _run_python(prelude=_PRODUCTS, code="""
        import ctypes, os
        import numba
        from tinylm.kernels import configure_threads
        from tinylm.kernels.threads import parallel_regions_are_cheap
        assert not parallel_regions_are_cheap()  # no threads yet
        info = configure_threads(2)
        assert info["blas_pool"] == "numba", info
        assert os.environ.get("GOMP_SPINCOUNT") == "30000" and "OMP_WAIT_POLICY" not in os.environ
        from tinylm.kernels import blas_pool
        assert blas_pool.is_shared()
        assert parallel_regions_are_cheap()  # the threads spin: recurrent cells split at every step
        numba.set_num_threads(1)
        assert not parallel_regions_are_cheap()
        numba.set_num_threads(2)
        # Watch the callback: a spy in front of it counts the calls and their jobs.
        signature = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t,
                                     ctypes.c_void_p, ctypes.c_int)
        callback = signature(blas_pool._callback().address)
        jobs = []
        def spy(sync, dojob, numjobs, size, data, index):
            jobs.append(numjobs)
            callback(sync, dojob, numjobs, size, data, index)
        spy_pointer = signature(spy)
        (setter,) = blas_pool._shared.values()
        setter(ctypes.cast(spy_pointer, ctypes.c_void_p).value)
        check_products()
        assert jobs and set(jobs) == {2}, jobs
        small = np.ones((4, 4), np.float32)
        count = len(jobs)
        small @ small  # too small to split: OpenBLAS runs it on the calling thread
        assert len(jobs) == count
        setter(blas_pool._callback().address)
        print("ok")
    """)
    _assert_printed_ok(result)


def test_products_finish_when_numba_is_set_to_fewer_threads_than_openblas():
    # The jobs of a product wait for one another: on one thread they would never finish.
    result = _run_python(prelude=_PRODUCTS, code="""
        import numba
        from tinylm.kernels import configure_threads
        assert configure_threads(2)["blas_pool"] == "numba"
        numba.set_num_threads(1)
        check_products()
        assert numba.get_num_threads() == 1
        print("ok")
    """)
    _assert_printed_ok(result)


def test_a_forked_child_gets_openblas_own_threads_back():
    result = _run_python(prelude=_PRODUCTS, code="""
        import os
        from tinylm.kernels import configure_threads, blas_pool
        assert configure_threads(2)["blas_pool"] == "numba"
        check_products()
        pid = os.fork()
        if pid == 0:
            try:
                assert not blas_pool.is_shared()
                check_products()
            except BaseException:
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert blas_pool.is_shared()
        print("ok")
    """)
    _assert_printed_ok(result)


def test_openblas_cannot_be_set_beyond_numbas_pool_while_shared():
    result = _run_python("""
        from tinylm.kernels import configure_threads
        from tinylm.kernels.threads import set_blas_threads
        assert configure_threads(1)["blas_pool"] == "numba"
        set_blas_threads(2)
        try:
            set_blas_threads(3)
        except ValueError as error:
            print(error)
        else:
            raise AssertionError("3 BLAS threads were accepted with a pool of 2")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "set_blas_threads: OpenBLAS runs on Numba's pool of 2 threads; got 3 threads"


@pytest.mark.parametrize("case, code, env", [
    ("the user chose to sleep at once", "info = configure_threads(2)", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("blas=False", "info = configure_threads(2, blas=False)", {}),
    ("a kernel started the threads first", (
        "import numpy as np\n"
        "from tinylm.kernels import get_kernel, testing\n"
        "with testing.parallel_drivers():\n"
        "    get_kernel('gelu_forward')(np.ones(8, np.float32))\n"
        "info = configure_threads(2)"), {}),
])
def test_openblas_keeps_its_own_threads(case, code, env):
    result = _run_python(prelude=_PRODUCTS, code="from tinylm.kernels import configure_threads, blas_pool\n" + code + """
assert info["blas_pool"] in ("openblas", None), info
assert not blas_pool.is_shared()
from tinylm.kernels.threads import parallel_regions_are_cheap
assert not parallel_regions_are_cheap()  # the threads sleep at once: no region at every recurrent step
check_products()
print("ok")
""", **env)
    _assert_printed_ok(result, case)


def test_a_users_spin_count_is_kept_and_the_pool_shared():
    result = _run_python("""
        import os
        from tinylm.kernels import configure_threads
        info = configure_threads(2)
        print(info["blas_pool"], os.environ["GOMP_SPINCOUNT"], os.environ.get("OMP_WAIT_POLICY"))
    """, GOMP_SPINCOUNT="1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numba", "1000", "None"]


def test_an_openblas_without_the_callback_keeps_its_own_threads():
    # OpenBLAS before 0.3.27 has no setter: nothing changes (OpenMP's threads still sleep at
    # once, not to take the cores from OpenBLAS's), and configure_threads says so.
    result = _run_python(prelude=_PRODUCTS, code="""
        import os
        from tinylm.kernels import blas_pool, configure_threads
        blas_pool._SETTERS = ("no_such_function",)
        info = configure_threads(2)
        assert info["blas_pool"] == "openblas" and not blas_pool.is_shared(), info
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ
        check_products()
        print("ok")
    """)
    _assert_printed_ok(result)


def test_products_from_several_python_threads_at_once():
    # NumPy lets go of the GIL in a product: each thread's call opens its own OpenMP region.
    result = _run_python(prelude=_PRODUCTS, code="""
        import threading
        from tinylm.kernels import configure_threads
        assert configure_threads(2)["blas_pool"] == "numba"
        failures = []
        def work():
            try:
                for _ in range(3):
                    check_products()
            except BaseException as error:
                failures.append(error)
        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures, failures
        print("ok")
    """)
    _assert_printed_ok(result)
