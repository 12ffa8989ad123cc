"""No public op and no autograd Function may go without a gradient test.

Adding a Function subclass anywhere in tinylm, or a name to
``tinylm.ops.__all__``, fails this module until a test checks its gradient.
"""

import importlib
import pkgutil
from pathlib import Path

import tinylm
from tinylm import ops
from tinylm.nn import functional
from tinylm.tensor import Function
from tests.coverage import COVERED, COVERED_OPS
from tests.op_cases import CASES

TESTS = Path(__file__).resolve().parent


def _import_everything():
    """Import every tinylm module (so every Function exists) and every test module
    (so every ``@covers`` declaration has run)."""
    for module in pkgutil.walk_packages(tinylm.__path__, "tinylm."):
        importlib.import_module(module.name)
    for path in TESTS.rglob("test_*.py"):
        importlib.import_module(".".join(("tests",) + path.relative_to(TESTS).with_suffix("").parts))


def _concrete_functions():
    found, stack = set(), [Function]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if sub.__module__.startswith("tinylm.") and not sub.__name__.startswith("_"):
                found.add(sub)
    return found


def test_every_differentiable_public_op_has_gradient_examples():
    _import_everything()
    differentiable = set(ops.__all__) - ops.NON_DIFFERENTIABLE
    tested = {case.op for case in CASES} | COVERED_OPS
    assert not differentiable - tested, f"public ops without a gradient test: {sorted(differentiable - tested)}"


def test_every_differentiable_functional_layer_has_a_gradient_test():
    _import_everything()
    fused = {name for name in functional.__all__ if name not in ops.__all__}  # others alias ops
    untested = {name for name in fused if f"F.{name}" not in COVERED_OPS}
    assert not untested, f"nn.functional names without a gradient test: {sorted(untested)}"


def test_every_function_has_its_backward_checked():
    _import_everything()
    checked = COVERED | {f for case in CASES for f in case.functions}
    missing = _concrete_functions() - checked
    assert not missing, f"Functions whose backward no test checks: {sorted(f.__qualname__ for f in missing)}"


def test_the_op_table_names_only_public_ops():
    assert {case.op for case in CASES} <= set(ops.__all__)
