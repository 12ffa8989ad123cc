"""The Tensor methods PyTorch programs call that are not ops of their own: type, new_*,
is_cuda, comparisons as methods; and the index outputs of sort/topk, which carry no gradient."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinylm
from tests import strategies as S
from tinylm import ops


def test_type_names_and_converts_as_pytorch():
    x = tinylm.ones(2)
    assert x.type() == "torch.FloatTensor"
    assert x.long().type() == "torch.LongTensor" and x.bool().type() == "torch.BoolTensor"
    assert x.type(tinylm.float64).dtype == np.float64
    assert x.type("torch.LongTensor").dtype == np.int64
    assert x.type(tinylm.float32) is x
    with pytest.raises(ValueError, match="unknown tensor type"):
        x.type("torch.NoSuchTensor")


def test_new_tensors_take_this_ones_dtype_and_device():
    x = tinylm.ones(2, dtype=tinylm.float64)
    zeros, ones = x.new_zeros(2, 3), x.new_ones((4,))
    assert zeros.shape == (2, 3) and zeros.dtype == np.float64 and not zeros.numpy().any()
    assert ones.tolist() == [1.0] * 4 and ones.dtype == np.float64
    assert x.new_full((2,), 7).tolist() == [7.0, 7.0]
    assert x.new_tensor([1, 2]).dtype == np.float64 and x.new_zeros(1, dtype=tinylm.int64).dtype == np.int64
    assert x.new_ones(2, requires_grad=True).requires_grad
    assert x.new_empty(3).shape == (3,)


def test_sizes_and_device_flags():
    x = tinylm.zeros(2, 3)
    assert not x.is_cuda and x.numel() == 6 and x.nelement() == 6 and x.dim() == 2 and x.ndimension() == 2


@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparison_methods_equal_the_functions(op):
    a, b = tinylm.tensor([1.0, 2.0, 3.0]), tinylm.tensor([2.0, 2.0, 2.0])
    method = getattr(a, op)(b)
    assert method.dtype == np.bool_
    assert method.tolist() == getattr(ops, op)(a, b).tolist()
    assert getattr(a, op)(2.0).tolist() == getattr(ops, op)(a, b).tolist()


def test_t_transposes_matrices_and_leaves_vectors():
    x = tinylm.tensor([1.0, 2.0])
    assert x.t() is x and ops.t(tinylm.tensor(3.0)).shape == ()
    assert tinylm.zeros(2, 3).t().shape == (3, 2)
    with pytest.raises(ValueError, match="at most 2 dimensions"):
        tinylm.zeros(2, 3, 4).t()


@pytest.mark.parity
@given(data=st.data())
def test_sort_and_topk_indices_equal_pytorchs(torch, data):
    x = data.draw(S.distinct_arrays(data.draw(S.shapes(min_dims=1, min_side=1))))
    dim = data.draw(S.dims(x.ndim))
    descending = data.draw(st.booleans())
    k = data.draw(st.integers(0, x.shape[dim]))
    ours, theirs = tinylm.tensor(x), torch.tensor(x)
    for mine, reference in [(ours.sort(dim, descending).indices, theirs.sort(dim, descending).indices),
                            (ours.argsort(dim, descending), theirs.argsort(dim, descending))]:
        np.testing.assert_array_equal(mine.numpy(), reference.numpy())
    result, expected = ours.topk(k, dim, largest=descending), theirs.topk(k, dim, largest=descending)
    np.testing.assert_array_equal(result.indices.numpy(), expected.indices.numpy())
    assert result.indices.dtype == np.int64 and not result.indices.requires_grad


def test_sort_is_stable_and_puts_nan_where_pytorch_does():
    x = tinylm.tensor([2.0, np.nan, 1.0, 2.0])
    assert x.sort().indices.tolist() == [2, 0, 3, 1]  # ties in their order, NaN last
    assert x.sort(descending=True).indices.tolist() == [1, 0, 3, 2]  # NaN first


@pytest.mark.parity
def test_var_std_and_norm_spellings_match_pytorch(torch):
    x = np.random.default_rng(0).standard_normal((3, 4))
    calls = [
        lambda t: t.var(), lambda t: t.var(False), lambda t: t.std(1, True, True), lambda t: t.var(0, correction=0),
        lambda t: t.std(dim=(0, 1), unbiased=False), lambda t: t.norm(), lambda t: t.norm(0),
        lambda t: t.norm(0, dim=1), lambda t: t.norm(float("inf"), dim=(0, 1)),
        lambda t: t.norm(float("-inf"), dim=(0, 1), keepdim=True), lambda t: t.norm(3, dim=0),
    ]  # fmt: skip
    for call in calls:
        mine, reference = call(tinylm.tensor(x)), call(torch.tensor(x))
        assert mine.shape == tuple(reference.shape)
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="nuclear"):
        tinylm.tensor(x).norm("nuc")


@pytest.mark.parity
def test_norm_gradient_at_zero_is_zero_as_in_pytorch(torch):
    x = tinylm.zeros(3, dtype=tinylm.float64, requires_grad=True)
    x.norm().backward()
    reference = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    reference.norm().backward()
    np.testing.assert_array_equal(x.grad.numpy(), reference.grad.numpy())


@pytest.mark.parametrize("call, message", [
    (lambda: ops.einsum("ij,jk->ik", tinylm.zeros(2, 3)), "2 operands, but 1 were given"),
    (lambda: ops.einsum("ijk->i", tinylm.zeros(2, 3)), "do not fit an operand of shape"),
    (lambda: ops.einsum("ij->ix", tinylm.zeros(2, 3)), "appears in no operand"),
    (lambda: ops.bmm(tinylm.zeros(2, 3), tinylm.zeros(2, 3)), "3-d"),
    (lambda: ops.bmm(tinylm.zeros(2, 2, 3), tinylm.zeros(3, 3, 2)), "cannot be multiplied"),
    (lambda: tinylm.zeros(3).triu(), "at least 2 dimensions"),
    (lambda: tinylm.zeros(3).topk(4), "k=4 is out of range"),
    (lambda: tinylm.zeros(3).index_select(0, tinylm.tensor([3])), "out of range"),
    (lambda: tinylm.zeros(3).index_select(0, tinylm.tensor([0.0])), "integer tensor"),
    (lambda: tinylm.zeros(2, 3).repeat(2), "at least one per dimension"),
    (lambda: tinylm.zeros(3).clamp(), "at least one of min and max"),
    (lambda: tinylm.arange(3).var(), "floating-point"),
])  # fmt: skip
def test_errors_name_the_op_and_what_was_given(call, message):
    with pytest.raises((ValueError, TypeError, IndexError), match=message):
        call()
