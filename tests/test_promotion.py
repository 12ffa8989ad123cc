"""Type promotion as PyTorch's: the dtype of a binary op's result, and of its gradients.

A table over every pair of {bool, int32, int64, float32, float64} tensors (with
dimensions, and 0-d), Python ints and Python floats, for add, sub, mul, div,
comparisons and where, checked against PyTorch's own answer.
"""

import itertools

import numpy as np
import pytest

import tinylm
from tinylm import ops

DTYPES = ["bool", "int32", "int64", "float32", "float64"]
OPERANDS = [f"{d}[2]" for d in DTYPES] + [f"{d}[]" for d in DTYPES] + ["int", "float"]
OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "lt": lambda a, b: a < b,
}


def _make(spec, library):
    """An operand from its spec: 'int64[2]' a tensor of two elements, 'float32[]' a 0-d one,
    'int' and 'float' Python numbers."""
    if spec == "int":
        return 3
    if spec == "float":
        return 1.5
    dtype, shape = spec.split("[")
    values = (np.array([2, 1]) if shape == "2]" else np.array(2)).astype(dtype)
    if library is tinylm:
        return tinylm.tensor(values)
    return library.from_numpy(values)


NUMBERS = ("int", "float")
PAIRS = [(a, b) for a, b in itertools.product(OPERANDS, repeat=2) if a not in NUMBERS or b not in NUMBERS]
CASES = [
    (op, a, b) for op in sorted(OPS) for a, b in PAIRS
    if not (op == "pow" and a.startswith("bool") and b.startswith("bool"))  # PyTorch has no bool ** bool kernel
]  # fmt: skip


@pytest.mark.parity
@pytest.mark.parametrize("op, left, right", CASES, ids=[f"{a}-{op}-{b}" for op, a, b in CASES])
def test_result_dtype_is_pytorchs(torch, op, left, right):
    fn = OPS[op]
    try:
        expected = fn(_make(left, torch), _make(right, torch))
    except RuntimeError:  # PyTorch refuses (bool - bool): tinylm must refuse too
        with pytest.raises((TypeError, RuntimeError, ValueError)):
            fn(_make(left, tinylm), _make(right, tinylm))
        return
    result = fn(_make(left, tinylm), _make(right, tinylm))
    assert result.dtype == np.dtype(str(expected.dtype).replace("torch.", "")), (
        f"{left} {op} {right}: tinylm gives {result.dtype}, PyTorch {expected.dtype}"
    )
    assert result.shape == tuple(expected.shape)
    np.testing.assert_allclose(result.numpy().astype(np.float64), expected.numpy().astype(np.float64), rtol=1e-6)


@pytest.mark.parity
@pytest.mark.parametrize("left, right", [("bool[2]", "float32[2]"), ("int64[2]", "float64[]"), ("int32[]", "int64[2]"),
                                         ("float32[2]", "int64[]"), ("bool[2]", "int32[]")])
def test_where_promotes_as_pytorch(torch, left, right):
    condition = np.array([True, False])
    expected = torch.where(torch.from_numpy(condition), _make(left, torch), _make(right, torch))
    result = ops.where(tinylm.tensor(condition), _make(left, tinylm), _make(right, tinylm))
    assert result.dtype == np.dtype(str(expected.dtype).replace("torch.", ""))


def test_rules_stated_in_the_issue():
    ints, floats = tinylm.arange(3), tinylm.ones(3)
    assert (ints * floats).dtype == np.float32  # NumPy alone says float64
    assert (floats * 2.5).dtype == np.float32
    assert (ints * 2.5).dtype == np.float32
    assert (tinylm.tensor([True, False]) + 1).dtype == np.int64
    assert (ints.to(tinylm.int32) + ints).dtype == np.int64
    assert (floats * tinylm.tensor(2.0, dtype=tinylm.float64)).dtype == np.float32  # a 0-d tensor ranks lower
    assert (ints * tinylm.tensor(2.0, dtype=tinylm.float64)).dtype == np.float64  # but a higher category counts
    assert (floats + np.ones(3)).dtype == np.float64  # an array counts as a tensor with dimensions
    assert (ints @ floats).dtype == np.float32
    assert ops.bmm(ints.reshape(1, 1, 3), floats.reshape(1, 3, 1)).dtype == np.float32
    assert ops.einsum("i,i->", ints, floats).dtype == np.float32


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
def test_gradients_keep_each_inputs_dtype(op):
    single = tinylm.tensor([1.5, 2.0], requires_grad=True)
    double = tinylm.tensor([0.5, 3.0], dtype=tinylm.float64, requires_grad=True)
    scalar = tinylm.tensor(1.25, dtype=tinylm.float64, requires_grad=True)
    out = OPS[op](single, double)
    assert out.dtype == np.float64
    out.sum().backward()
    assert single.grad.dtype == np.float32 and double.grad.dtype == np.float64
    single.grad = None
    out = OPS[op](single, scalar)
    assert out.dtype == np.float32
    out.sum().backward()
    assert single.grad.dtype == np.float32 and scalar.grad.dtype == np.float64 and scalar.grad.shape == ()


def test_gradients_across_dtypes_match_float64_finite_differences():
    # the float64 input's gradient through a float32 product is exact to float32's precision
    a = tinylm.tensor([1.5, -2.0], requires_grad=True)
    b = tinylm.tensor([0.5, 3.0], dtype=tinylm.float64, requires_grad=True)
    (a * b * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0.25, 9.0])
    np.testing.assert_allclose(b.grad.numpy(), [1.5, -12.0])


@pytest.mark.parity
@pytest.mark.parametrize("join", ["cat", "stack"])
@pytest.mark.parametrize("dtypes", [("int64", "float32"), ("bool", "int32"), ("int32", "int64", "float64"), ("float32",)],
                         ids=str)
def test_cat_and_stack_promote_as_pytorch(torch, join, dtypes):
    arrays = [np.array([1, 0]).astype(d) for d in dtypes]
    expected = getattr(torch, join)([torch.from_numpy(a) for a in arrays])
    result = getattr(ops, join)([tinylm.tensor(a) for a in arrays])
    assert result.dtype == np.dtype(str(expected.dtype).replace("torch.", ""))
    np.testing.assert_array_equal(result.numpy(), expected.numpy())


def test_cat_gives_each_input_its_gradient_in_its_own_dtype():
    single = tinylm.ones(2, requires_grad=True)
    double = tinylm.ones(3, dtype=tinylm.float64, requires_grad=True)
    joined = ops.cat([single, double])
    assert joined.dtype == np.float64
    (joined * tinylm.arange(5)).sum().backward()
    assert single.grad.dtype == np.float32 and single.grad.tolist() == [0.0, 1.0]
    assert double.grad.dtype == np.float64 and double.grad.tolist() == [2.0, 3.0, 4.0]
