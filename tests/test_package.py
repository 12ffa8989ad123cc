"""The installed package: what importing it loads, and where ``tinylm.kernels`` comes from."""

import subprocess
import sys
from pathlib import Path

import tinylm

REPOSITORY = Path(__file__).resolve().parents[1]


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
    """``tinylm.kernels`` is the top-level ``kernels/`` folder (mapped by setup.py), not a
    ``tinylm/kernels`` folder, wherever the repository was cloned (also into a folder named tinylm)."""
    path = Path(_run("import tinylm.kernels as k; print(k.__file__)").strip()).resolve()
    package = Path(tinylm.__file__).resolve().parent
    assert path.name == "__init__.py" and path.parent.name == "kernels"
    assert path.parent.parent != package  # not inside the tinylm package
    if (REPOSITORY / "kernels" / "__init__.py").is_file() and package.parent == REPOSITORY:  # an editable install
        assert path.parent == REPOSITORY / "kernels"
