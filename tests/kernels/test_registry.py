"""The registry (get_kernel, kernel_for), lazy imports, and thread configuration."""

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from tinylm.kernels import BACKENDS, CPU_DEFAULT, KERNELS, get_kernel, kernel_for


def _run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", KERNELS)
def test_every_kernel_exists_on_every_backend(name):
    functions = [get_kernel(name, backend) for backend in BACKENDS]
    for function, suffix in zip(functions, ("reference", "numba", "cuda")):
        assert callable(function) and function.__name__ == f"{name}_{suffix}"
    # the three take the same arguments
    parameters = [list(inspect.signature(f).parameters) for f in functions]
    assert parameters[0] == parameters[1] == parameters[2]
    assert get_kernel(name) is functions[1]  # numba is the default backend


def test_kernel_for_picks_by_array_type():
    x = np.zeros((2, 3), np.float32)
    for name in KERNELS:
        assert kernel_for(name, x) is get_kernel(name, CPU_DEFAULT[name])


def test_unknown_names_are_reported():
    with pytest.raises(ValueError, match="unknown kernel 'softmax'; known kernels: cross_entropy_forward"):
        get_kernel("softmax")
    with pytest.raises(ValueError, match="unknown backend 'torch' for kernel 'gelu_forward'"):
        get_kernel("gelu_forward", "torch")


def test_importing_the_package_does_not_import_numba():
    result = _run_python(
        "import sys, tinylm.kernels\n"
        "assert 'numba' not in sys.modules, 'tinylm.kernels imported numba'\n"
        "from tinylm.kernels import get_kernel\n"
        "get_kernel('gelu_forward', 'numpy')\n"
        "assert 'numba' in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr


def test_configure_threads_sets_numba_and_blas():
    result = _run_python(
        "import numba\n"
        "from tinylm.kernels import configure_threads\n"
        "info = configure_threads(1)\n"
        "assert info['threads'] == 1 == numba.get_num_threads(), info\n"
        "assert info['layer'] in ('omp', 'workqueue', 'tbb'), info\n"
        "assert info['blas_library'] is None or info['blas_threads'] == 1, info\n"
        "most = numba.config.NUMBA_NUM_THREADS\n"
        "assert configure_threads()['threads'] == most\n"
        "try:\n"
        "    configure_threads(most + 1)\n"
        "except ValueError as error:\n"
        "    assert 'configure_threads: n must be between 1 and' in str(error)\n"
        "else:\n"
        "    raise AssertionError('too many threads were accepted')\n"
        "other = 'workqueue' if info['layer'] != 'workqueue' else 'omp'\n"
        "try:\n"
        "    configure_threads(1, layer=other)\n"
        "except RuntimeError as error:\n"
        "    assert 'can only be chosen before' in str(error)\n"
        "else:\n"
        "    raise AssertionError('the layer changed after the threads started')\n"
        "print(info)\n"
    )
    assert result.returncode == 0, result.stderr


def test_a_chosen_threading_layer_is_used():
    result = _run_python(
        "from tinylm.kernels import configure_threads\n"
        "print(configure_threads(2, layer='workqueue', blas=False)['layer'])\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "workqueue"


def test_blas_threads_at_most_limits_the_count_inside_and_restores_it_after():
    from tinylm.kernels import blas_threads_at_most
    from tinylm.kernels.threads import blas_threads, set_blas_threads

    before = blas_threads()
    if before is None:
        pytest.skip("NumPy here does not use OpenBLAS")
    set_blas_threads(2)
    try:
        start = blas_threads()  # 2, or 1 where OpenBLAS was built for one core
        with blas_threads_at_most(1):
            assert blas_threads() == 1
        assert blas_threads() == start
    finally:
        set_blas_threads(before)


def test_blas_core_names_the_kernel_family_that_openblas_chose():
    import platform

    from tinylm.kernels.threads import blas_core, blas_threads

    if blas_threads() is None:
        pytest.skip("NumPy here does not use OpenBLAS")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("Haswell is an x86-64 kernel family")
    code = "from tinylm.kernels.threads import blas_core; print(blas_core())"
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, OPENBLAS_CORETYPE="Haswell"))
    assert pinned.returncode == 0, pinned.stderr
    assert pinned.stdout.strip() == "Haswell"  # NumPy's wheels pick the family at load (DYNAMIC_ARCH)
    assert isinstance(blas_core(), str) and blas_core()


def test_numba_cache_directory_is_per_version_of_the_kernel_sources(tmp_path):
    # Numba checks a cached kernel against its own file only; a directory named
    # by a hash of all kernel sources keeps a helper's change from being missed.
    import hashlib
    from pathlib import Path

    import tinylm.kernels

    digest = hashlib.sha256()
    for source in sorted(Path(tinylm.kernels.__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    code = "import os, numba, tinylm.kernels._common; print(os.environ['NUMBA_CACHE_DIR'], numba.config.CACHE_DIR)"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    expected = tmp_path / "tinylm" / "numba" / digest.hexdigest()[:16]
    assert result.stdout.split() == [str(expected)] * 2, result.stderr
    assert expected.is_dir()

    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")  # the user's choice stands
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.stdout.split() == [str(tmp_path / "mine")] * 2, result.stderr


def test_blas_threads_are_set_in_numpys_openblas_when_another_is_loaded_first(tmp_path):
    # A second OpenBLAS (SciPy bundles one): here a copy of NumPy's, loaded from another
    # path and listed first. The thread count must still go to the one NumPy calls.
    from tinylm.kernels.threads import numpy_openblas

    path = numpy_openblas()
    if path is None:
        pytest.skip("NumPy here does not use OpenBLAS")
    copy = tmp_path / "libopenblas_other.so"
    copy.write_bytes(open(path, "rb").read())
    result = _run_python(
        "import ctypes, numpy\n"
        "from tinylm.kernels import threads\n"
        f"other = ctypes.CDLL({str(copy)!r})\n"
        f"threads._loaded_openblas = lambda: [{str(copy)!r}, {path!r}]\n"
        "getter = threads._function_named(other, threads._BLAS_GETTERS)\n"
        "before = getter()\n"
        "assert threads.set_blas_threads(1) == threads.numpy_openblas(), 'set in the other library'\n"
        "assert threads.blas_threads() == 1\n"
        "assert getter() == before, (getter(), before)\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _run_fresh(code, **env):
    """Run ``code`` in a fresh interpreter whose environment holds no thread setting but ``env``."""
    from tinylm.kernels.threads import USER_THREAD_VARIABLES

    left_out = (*USER_THREAD_VARIABLES, "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    environment = {k: v for k, v in os.environ.items() if k not in left_out}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=environment)


_STATE = (
    "import os, numba\n"
    "from tinylm.kernels import blas_pool, threads\n"
    "print(numba.get_num_threads(), numba.threading_layer(), blas_pool.is_shared(), threads.blas_threads(),\n"
    "      os.environ.get('OMP_WAIT_POLICY'), blas_pool.available())\n"
)


def test_the_first_cpu_kernel_configures_the_threads_as_configure_threads_does():
    # A user's loop calls no tinylm.kernels function: the first kernel sets up what the trainer would.
    result = _run_fresh(
        "import sys, numpy as np, tinylm, tinylm.nn.functional\n"
        "from tinylm.kernels import get_kernel\n"
        "assert 'numba' not in sys.modules\n"
        "get_kernel('gelu_forward', 'numpy')  # the reference: nothing set up yet\n"
        "from numba.np.ufunc import parallel\n"
        "assert not parallel._is_initialized\n"
        "y = tinylm.nn.functional.gelu(tinylm.tensor(np.ones((4, 4), np.float32)))  # kernel_for -> Numba\n"
        "assert parallel._is_initialized\n" + _STATE
    )
    assert result.returncode == 0, result.stderr
    threads, layer, shared, blas, wait_policy, available = result.stdout.split()
    most = subprocess.run([sys.executable, "-c", "import numba; print(numba.config.NUMBA_NUM_THREADS)"],
                          capture_output=True, text=True, timeout=120).stdout.strip()
    assert threads == most and layer == "omp"
    if available == "True":  # OpenBLAS 0.3.27 or later: one pool, whose threads spin briefly
        assert shared == "True" and blas == most and wait_policy == "None"


def test_an_earlier_configure_threads_is_kept():
    result = _run_fresh(
        "from tinylm.kernels import configure_threads, get_kernel\n"
        "import numpy as np\n"
        "configure_threads(1)\n"
        "get_kernel('layernorm_forward')(np.ones((4, 8), np.float32), np.ones(8, np.float32), None, 1e-5)\n"
        + _STATE
    )
    assert result.returncode == 0, result.stderr
    threads, _, _, blas, _, _ = result.stdout.split()
    assert threads == "1" and blas in ("1", "None")


@pytest.mark.parametrize("variable, value", [("NUMBA_NUM_THREADS", "1"), ("OPENBLAS_NUM_THREADS", "1"),
                                             ("OMP_WAIT_POLICY", "PASSIVE")])
def test_a_users_thread_setting_in_the_environment_is_left_alone(variable, value):
    result = _run_fresh(
        "import numpy as np\n"
        "from tinylm.kernels import get_kernel, threads\n"
        "assert threads.configure_default_threads is not None\n"
        "get_kernel('gelu_forward')(np.ones(8, np.float32))\n"
        "assert threads.configure_default_threads() is None\n" + _STATE,
        **{variable: value},
    )
    assert result.returncode == 0, result.stderr
    _, _, shared, _, wait_policy, _ = result.stdout.split()
    assert shared == "False" and wait_policy == "PASSIVE"  # OpenBLAS kept its threads; Numba's sleep at once


def test_threads_started_by_the_users_own_parallel_code_are_left_alone():
    result = _run_fresh(
        "import numba, numpy as np\n"
        "@numba.njit(parallel=True)\n"
        "def total(x):\n"
        "    s = 0.0\n"
        "    for i in numba.prange(x.shape[0]):\n"
        "        s += x[i]\n"
        "    return s\n"
        "total(np.ones(1000))\n"
        "from tinylm.kernels import get_kernel\n"
        "get_kernel('gelu_forward')(np.ones(8, np.float32))\n" + _STATE
    )
    assert result.returncode == 0, result.stderr
    _, _, shared, _, _, _ = result.stdout.split()
    assert shared == "False"


def test_the_first_kernel_inside_blas_threads_at_most_keeps_the_limit():
    # Decoding (GPT.generate) may be a program's first use of a kernel: the automatic
    # set-up must not raise OpenBLAS's count again inside the block.
    result = _run_fresh(
        "import numpy as np\n"
        "from tinylm.kernels import blas_threads_at_most, get_kernel\n"
        "from tinylm.kernels.threads import blas_threads\n"
        "with blas_threads_at_most(1):\n"
        "    get_kernel('gelu_forward')(np.ones(8, np.float32))\n"
        "    inside = blas_threads()\n"
        "print(inside, blas_threads())\n"
    )
    assert result.returncode == 0, result.stderr
    inside, after = result.stdout.split()
    if inside != "None":
        assert inside == "1" and int(after) >= 1
