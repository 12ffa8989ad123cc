"""docs/pytorch.md is true: every name it lists as supported (or as differing) is there after
``import tinylm``, every name it lists as refused raises NotInTinylmError naming it, and the
differences it states hold."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinylm

PAGE = Path(__file__).resolve().parents[1] / "docs" / "pytorch.md"


def _names(section):
    """The ``torch.…`` names in the first column of the table under the heading ``## <section>``."""
    text = PAGE.read_text(encoding="utf-8")
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in body.splitlines() if line.startswith("|") and not set(line) <= set("|- ")]
    first_cells = [row.split("|")[1] for row in rows[1:]]  # rows[0] is the header
    names = [name for cell in first_cells for name in re.findall(r"`(torch(?:\.\w+)+)`", cell)]
    assert names, f"no names found in the table of section {section!r}"
    return names


def _look_up(name):
    """The object that ``name`` ("torch.nn.functional.pad") names in tinylm."""
    found = tinylm
    for part in name.split(".")[1:]:
        found = getattr(found, part)
    return found


def test_the_page_opens_with_one_line_saying_what_it_is_for():
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[1] == "" and lines[2] and lines[3] == ""


@pytest.mark.parametrize("section", ["Supported", "What differs"])
def test_every_supported_name_is_there(section):
    missing = []
    for name in _names(section):
        try:
            _look_up(name)
        except AttributeError as error:
            missing.append(f"{name} ({error})")
    assert not missing, f"docs/pytorch.md lists as {section!r} names that tinylm lacks: {missing}"


def test_every_refused_name_raises_the_named_error():
    for name in _names("Refused"):
        parent, _, last = name.rpartition(".")
        owner = _look_up(parent)
        with pytest.raises(tinylm.NotInTinylmError, match=rf"^{re.escape(name)} is not in tinylm: \w") as refused:
            getattr(owner, last)
        assert isinstance(refused.value, NotImplementedError) and not hasattr(owner, last), name


def test_an_unknown_name_is_a_plain_attribute_error():
    for owner in (tinylm, tinylm.utils, tinylm.utils.data, tinylm.cuda, tinylm.nn, tinylm.nn.utils):
        with pytest.raises(AttributeError) as error:
            owner.no_such_name
        assert not isinstance(error.value, tinylm.NotInTinylmError)
        assert "has no attribute 'no_such_name'" in str(error.value)


def test_the_differences_are_as_stated():
    x = tinylm.ones(2, 3)
    assert isinstance(x.data, np.ndarray)
    assert tinylm.float32 == np.dtype("float32") and x.dtype == tinylm.float32 and str(x.dtype) == "float32"
    assert tinylm.device("cpu") == "cpu" and x.device == tinylm.device("cpu") and x.device.type == "cpu"
    assert type(x.shape) is tuple and type(x.size()) is tuple
    assert tinylm.empty(3).tolist() == [0.0, 0.0, 0.0]
    assert isinstance(tinylm.Generator().get_state(), dict)
    with tinylm.inference_mode():
        assert not tinylm.is_grad_enabled()
    # type promotion as PyTorch's
    assert (tinylm.ones(2, dtype=tinylm.int64) * tinylm.ones(2)).dtype == tinylm.float32
    assert (tinylm.ones(2) * 2.5).dtype == tinylm.float32


def test_namespaces_are_reachable_after_the_bare_import_and_load_on_first_use():
    code = (
        "import sys, tinylm as torch\n"
        "lazy = ['tinylm.nn', 'tinylm.optim', 'tinylm.utils', 'tinylm.cuda', 'tinylm.serialization']\n"
        "assert not [m for m in lazy if m in sys.modules], [m for m in lazy if m in sys.modules]\n"
        "torch.nn.functional.softmax, torch.optim.lr_scheduler, torch.utils.data.DataLoader\n"
        "torch.nn.utils.rnn.pad_sequence, torch.cuda.is_available, torch.save\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.stdout.strip() == "ok", result.stderr
    assert {"nn", "optim", "utils", "cuda", "save", "load", "set_num_threads", "tensor"} <= set(dir(tinylm))
