"""The installed package: what importing it loads, and where ``tinylm.kernels`` comes from."""

import subprocess
import sys


def _run(code, cwd="/"):
    # run from outside the repository so the installed package (not the source folder) is imported
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True).stdout


def test_import_loads_neither_numba_nor_cupy():
    """Nor do the models, layers and the command's module: Numba loads with the first kernel."""
    for modules in ("tinylm", "tinylm.nn, tinylm.models, tinylm.cli"):
        loaded = _run(f"import sys, {modules}; "
                      "print(sorted(m for m in ('numba', 'cupy', 'matplotlib') if m in sys.modules))")
        assert loaded.strip() == "[]", modules


def test_kernels_install_as_tinylm_kernels():
    path = _run("import tinylm.kernels as k; print(k.__file__)")
    assert path.strip().endswith("kernels/__init__.py")
    assert "tinylm/kernels" not in path  # the top-level kernels/ folder, mapped by setup.py
