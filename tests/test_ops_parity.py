"""The ops PyTorch programs use, against PyTorch itself: forward values and gradients.

Every example in ``tests/op_cases.py`` that says how PyTorch spells it
(``Example.torch``) runs both ways on the same inputs: in float64 the two must
agree to 1e-9 relative, and tinylm in float32 must agree with PyTorch in
float64 to 1e-5 of the largest magnitude (``tests/parity.py``). Gradients are
those of ``sum(v * y)`` for one random ``v``, so every output element counts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinylm
from tests.op_cases import CASES
from tests.parity import assert_close

pytestmark = [pytest.mark.parity, pytest.mark.filterwarnings("ignore:invalid value encountered")]

PARITY_CASES = [case for case in CASES if case.op in {
    "sin", "cos", "clamp", "clip", "triu", "tril", "sort", "topk", "bmm", "einsum", "repeat",
    "index_select", "var", "std", "norm", "t",
}]  # fmt: skip


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", PARITY_CASES, ids=lambda c: f"{c.op}-{'-'.join(f.__name__ for f in c.functions)}")
@given(data=st.data())
def test_matches_pytorch(torch, case, dtype, data):
    example = data.draw(case.examples)
    assert example.torch is not None, f"the {case.op} example does not say how PyTorch computes it"
    ours = [tinylm.tensor(a.astype(dtype) if a.dtype.kind == "f" else a, requires_grad=a.dtype.kind == "f")
            for a in example.inputs]
    theirs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in example.inputs]  # float64 always
    outputs = _as_tuple(example.fn(*ours))
    expected = _as_tuple(example.torch(torch, *theirs))
    assert len(outputs) == len(expected)
    rng = np.random.default_rng(0)
    directions = [rng.standard_normal(tuple(out.shape)) for out in expected]
    for out, ref in zip(outputs, expected):
        assert out.dtype == dtype
        assert tuple(out.shape) == tuple(ref.shape)
        assert_close(out, ref, dtype, f"{case.op} forward")
    float_leaves = [(a, b) for a, b in zip(ours, theirs) if b.requires_grad]
    ours_loss = sum((out * tinylm.tensor(v.astype(dtype))).sum() for out, v in zip(outputs, directions))
    theirs_loss = sum((ref * torch.tensor(v)).sum() for ref, v in zip(expected, directions))
    if not any(ref.requires_grad for ref in expected):
        return
    ours_loss.backward()
    theirs_loss.backward()
    for i, (mine, reference) in enumerate(float_leaves):
        assert reference.grad is not None or mine.grad is None
        if reference.grad is None:
            continue
        assert mine.grad is not None, f"{case.op}: input {i} got no gradient"
        assert mine.grad.dtype == dtype
        assert_close(mine.grad, reference.grad, dtype, f"{case.op} gradient of input {i}")
