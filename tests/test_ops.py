"""Every public op, twice: forward values against NumPy, gradients against finite differences.

The examples come from ``tests/op_cases.py``; ``test_coverage.py`` makes sure
no public op or autograd Function goes without them.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinylm
from tests.coverage import trace_functions
from tests.devices import DEVICES
from tests.op_cases import CASES
from tests.strategies import as_tensor

# the NumPy references warn about the mean of an empty slice; tinylm itself is silent
pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")


def _case_id(case):
    return f"{case.op}-{'-'.join(f.__name__ for f in case.functions)}"


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _tensors(example, device, dtype=np.float64):
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in example.inputs]
    return [as_tensor(a, device) for a in arrays]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@given(data=st.data())
def test_forward_equals_numpy_in_float64(case, device, data):
    example = data.draw(case.examples)
    outputs = _as_tuple(example.fn(*_tensors(example, device)))
    expected = _as_tuple(example.reference(*example.inputs))
    assert len(outputs) == len(expected)
    for out, ref in zip(outputs, expected):
        assert out.shape == np.shape(ref)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@given(data=st.data())
def test_forward_in_float32_stays_float32_and_matches_float64(case, device, data):
    example = data.draw(case.examples)
    outputs = _as_tuple(example.fn(*_tensors(example, device, np.float32)))
    expected = _as_tuple(example.reference(*example.inputs))
    for out, ref in zip(outputs, expected):
        assert out.dtype == np.float32
        scale = np.max(np.abs(ref), initial=1.0)
        np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@given(data=st.data())
def test_gradient_matches_finite_differences(case, device, data):
    example = data.draw(case.examples)
    tensors = _tensors(example, device)
    with trace_functions() as seen:
        assert tinylm.gradcheck(example.fn, tensors)
    missing = set(case.functions) - seen
    assert not missing, f"the {case.op} examples never ran {missing}"
