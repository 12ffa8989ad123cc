"""Bad input stops with a message naming the op, what was given and what was expected."""

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tinylm
from tinylm import backend, nn


def t(*shape):
    return tinylm.zeros(*shape)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: t(2, 3) @ t(4, 5), r"matmul: shapes \(2, 3\) and \(4, 5\) cannot be multiplied"),
        (lambda: t(2, 2, 3) @ t(3, 3, 4), r"matmul \(batch dimensions\): shapes \(2,\) and \(3,\)"),
        (lambda: t(3) @ t(2), r"matmul: shapes \(3,\) and \(2,\)"),
        (lambda: tinylm.tensor(1.0) @ t(2), r"matmul: both operands need at least one dimension"),
        (lambda: t(2, 3) + t(4), r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast"),
        (lambda: t(2, 3) * t(3, 2), r"mul: shapes \(2, 3\) and \(3, 2\) cannot be broadcast"),
        (lambda: t(2, 3) / t(2, 2), r"div: shapes \(2, 3\) and \(2, 2\)"),
        (lambda: t(2) < t(3), r"lt: shapes \(2,\) and \(3,\)"),
        (lambda: tinylm.cat([t(2, 3), t(2, 4)], dim=0), r"cat: .*tensor 0 has shape \(2, 3\) and tensor 1 has shape \(2, 4\)"),
        (lambda: tinylm.cat([t(2, 3), t(2)], dim=0), r"cat: .*tensor 1 has shape \(2,\)"),
        (lambda: tinylm.cat([]), r"cat: expected a non-empty sequence"),
        (lambda: tinylm.stack([t(2), t(3)]), r"stack: expected tensors of the same shape"),
        (lambda: t(2, 3).reshape(4), r"reshape: cannot view a tensor of shape \(2, 3\) \(6 elements\) as shape \(4,\)"),
        (lambda: t(2, 3).sum(dim=2), r"sum: dim 2 is out of range for a tensor with 2 dimensions"),
        (lambda: t(2, 3).permute(0, 0), r"permute: dims \(0, 0\)"),
        (lambda: t(2, 3).expand(4, 3, 2), r"expand: cannot expand dimension"),
        (lambda: t(0, 3).max(dim=0), r"max: cannot reduce over dimension 0 of size 0"),
        (lambda: t(3)[5], r"getitem: index 5 is out of bounds .*tensor shape \(3,\)"),
        (lambda: t(2, 3).split([1, 2]), r"split: sections \[1, 2\] must .* sum to 2"),
        (lambda: t(2, 3).masked_fill(t(2, 3), 0.0), r"masked_fill: the mask must be a boolean tensor"),
        (lambda: t(2, 3).masked_fill(tinylm.ones(4, dtype=bool), 0.0), r"masked_fill: mask of shape \(4,\)"),
        (lambda: tinylm.where(tinylm.ones(2, dtype=bool), t(3), t(2)), r"where: shapes \(2,\) and \(3,\) and \(2,\)"),
        (lambda: t(2).gather(0, tinylm.tensor([[0]])), r"gather: index has 2 dimensions but the input has 1"),
        # exp/log/... of an integer tensor give float32, as in PyTorch (tests/test_pytorch_gaps.py); mean refuses
        (lambda: tinylm.arange(3).mean(), r"mean: expected a floating-point tensor, got int64"),
        (lambda: t(2) + "a", r"add: expected a Tensor, an array or a number, got str"),
        (lambda: tinylm.zeros(2, device="tpu"), r"unknown device 'tpu'"),
    ],
)
def test_bad_input_names_the_op_and_the_shapes(call, pattern):
    with pytest.raises((ValueError, IndexError, TypeError)) as error:
        call()
    assert re.search(pattern, str(error.value)), str(error.value)


_ACCEPTED_DATA = r"expected numbers or bools, \(nested, rectangular\) lists or tuples of them, NumPy .* or Tensors"


@pytest.mark.parametrize(
    "data, error, pattern",
    [
        (["a", "b"], TypeError, r"tensor: got list whose element data\[0\] is str 'a'; " + _ACCEPTED_DATA),
        ([[1, 2], [3, None]], TypeError, r"tensor: got list whose element data\[1\]\[1\] is NoneType None"),
        ([1, {"a": 1}], TypeError, r"tensor: got list whose element data\[1\] is dict \{'a': 1\}"),
        ("abc", TypeError, r"tensor: got str 'abc'; " + _ACCEPTED_DATA),
        (None, TypeError, r"tensor: got NoneType None; " + _ACCEPTED_DATA),
        ({"a": 1}, TypeError, r"tensor: got dict \{'a': 1\}"),
        (object(), TypeError, r"tensor: got object <object object"),
        (b"ab", TypeError, r"tensor: got bytes b'ab'"),
        (np.array(["a", "b"]), TypeError, r"tensor: got ndarray of dtype <U1; " + _ACCEPTED_DATA),
        (np.array([1, None], dtype=object), TypeError, r"tensor: got ndarray of dtype object"),
        (np.array(["2020-01-01"], dtype="datetime64[D]"), TypeError, r"tensor: got ndarray of dtype datetime64\[D\]"),
        ([[1], [2, 3]], ValueError, r"tensor: got ragged nested lists \(data\[0\] has 1 element but data\[1\] has 2"),
        ([[[1, 2], [3, 4]], [[5, 6], [7]]], ValueError, r"data\[1\]\[0\] has 2 elements but data\[1\]\[1\] has 1"),
        ([1, [2, 3]], ValueError, r"data\[0\] is not a list but data\[1\] has 2 elements"),
    ],
)
def test_non_numeric_tensor_data_names_its_type_and_the_accepted_kinds(data, error, pattern):
    with pytest.raises(error, match=pattern):
        tinylm.tensor(data)


def test_strings_are_refused_even_with_a_dtype_that_could_parse_them():
    with pytest.raises(TypeError, match=r"tensor: got list whose element data\[0\] is str '1.5'"):
        tinylm.tensor(["1.5"], dtype="float32")


_ACCEPTED_INDICES = r"expected integers, slices, None, Ellipsis, integer or boolean tensors, arrays or lists"


@pytest.mark.parametrize(
    "index, pattern",
    [
        (1.5, r"getitem: index 1.5 \(float\) is not valid; " + _ACCEPTED_INDICES),
        ("a", r"getitem: index 'a' \(str\) is not valid"),
        ((0, 1.0), r"getitem: index 1.0 \(float\) is not valid"),
        ({0}, r"getitem: index \{0\} \(set\) is not valid"),
        (np.float64(1.0), r"getitem: index .*1.0.* \(float64\) is not valid"),
        ([0.5], r"getitem: index \[0.5\] holds float64 values, which cannot index; " + _ACCEPTED_INDICES),
        (["a"], r"getitem: index \['a'\] holds <U1 values"),
        ([[0, 1], [2]], r"getitem: index \[\[0, 1\], \[2\]\] is a ragged list"),
        (np.array([0.0]), r"getitem: index \(ndarray of shape \(1,\)\) holds float64 values"),
    ],
)
def test_indexing_with_a_float_or_a_string_is_an_index_error_naming_it(index, pattern):
    with pytest.raises(IndexError, match=pattern):
        tinylm.zeros(3, 3)[index]


def test_indexing_with_a_float_tensor_names_its_dtype():
    with pytest.raises(IndexError, match=r"getitem: index \(Tensor of shape \(2,\)\) holds float32 values"):
        tinylm.zeros(3)[tinylm.tensor([0.0, 1.0])]
    with pytest.raises(IndexError, match=r"setitem: index 1.5 \(float\) is not valid"):
        tinylm.zeros(3)[1.5] = 1.0


@pytest.mark.parametrize("state", [[("weight", np.zeros((4, 3)))], tinylm.zeros(4, 3), None, "weight"])
def test_load_state_dict_refuses_what_is_not_a_mapping_naming_its_type(state):
    layer = nn.Embedding(4, 3)
    with pytest.raises(TypeError, match=rf"load_state_dict into Embedding: expected a mapping .*got {type(state).__name__}$"):
        layer.load_state_dict(state)


class _NotAnArray:
    """Stands for a foreign tensor type (such as torch.Tensor) that has no NumPy dtype."""


@pytest.mark.parametrize(
    "value, pattern",
    [
        ([[0.0] * 3] * 4, r"the value of 'weight' is a list; expected a tinylm Tensor or a NumPy or CuPy array"),
        (_NotAnArray(), r"the value of 'weight' is a tests.test_errors._NotAnArray; expected a tinylm Tensor"),
        (np.full((4, 3), "a"), r"the value of 'weight' has dtype <U1, which cannot be cast to the parameter's float32"),
        (np.zeros((4, 3), dtype=complex), r"has dtype complex128, which cannot be cast"),
    ],
)
def test_load_state_dict_refuses_values_that_are_not_numeric_arrays(value, pattern):
    layer = nn.Linear(3, 4)
    before = layer.bias.numpy().copy()
    with pytest.raises(TypeError, match=pattern):
        layer.load_state_dict({"weight": value, "bias": np.ones(4)})
    np.testing.assert_array_equal(layer.bias.numpy(), before)  # nothing was written


def test_load_state_dict_casts_an_int32_array_keeping_its_values():
    # An int32 embedding is not an error (PyTorch's copy_ casts it too); the values must
    # arrive as they were, not as zeros.
    layer = nn.Embedding(4, 3)
    values = np.arange(-6, 6, dtype=np.int32).reshape(4, 3)
    layer.load_state_dict({"weight": values})
    assert layer.weight.dtype == np.float32
    np.testing.assert_array_equal(layer.weight.numpy(), values.astype(np.float32))
    layer.load_state_dict({"weight": tinylm.tensor(values.astype(np.int64) * 3)})
    np.testing.assert_array_equal(layer.weight.numpy(), values * 3.0)


class _PretendGPUArray(np.ndarray):
    """A NumPy array that ``backend.device_of`` is made to report as living on the GPU."""


def test_mixing_devices_names_both(monkeypatch):
    real_device_of = backend.device_of
    monkeypatch.setattr(
        backend, "device_of", lambda a: "cuda" if isinstance(a, _PretendGPUArray) else real_device_of(a)
    )
    on_cpu = tinylm.ones(2)
    on_gpu = tinylm.Tensor(np.ones(2, dtype=np.float32).view(_PretendGPUArray))
    with pytest.raises(RuntimeError, match="input 0 is on cpu and input 1 is on cuda"):
        on_cpu + on_gpu


@pytest.mark.skipif(not backend.cuda_is_available(), reason="needs a GPU")
def test_mixing_real_devices_names_both():
    with pytest.raises(RuntimeError, match="cpu.*cuda"):
        tinylm.ones(2) + tinylm.ones(2, device="cuda")


@pytest.fixture
def fresh_probe(monkeypatch):
    """Forget what the backend learnt about CUDA, so the probe runs again under the test's rules."""
    monkeypatch.setattr(backend, "_probed", False)
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.setattr(backend, "_cuda_problem", None)


def test_cuda_without_cupy_is_one_clear_runtime_error(monkeypatch, fresh_probe):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(RuntimeError, match=r"'cuda' was requested, but CuPy is not installed"):
        tinylm.zeros(3, device="cuda")
    assert not tinylm.cuda_is_available()


def test_cuda_without_a_gpu_is_one_clear_runtime_error(monkeypatch, fresh_probe):
    fake_cupy = types.ModuleType("cupy")
    fake_cupy.is_available = lambda: False
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    with pytest.raises(RuntimeError, match=r"CuPy is installed but it sees no usable CUDA GPU"):
        tinylm.ones(2).to("cuda")


def test_only_backend_imports_cupy():
    package = Path(tinylm.__file__).resolve().parent
    sources = list(package.rglob("*.py")) + list((package.parent / "kernels").rglob("*.py"))
    offenders = [
        str(path)
        for path in sources
        if path.name != "backend.py" and re.search(r"^\s*(import cupy|from cupy)", path.read_text(), re.M)
    ]
    assert not offenders
