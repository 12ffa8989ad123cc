"""Making tensors and the Tensor API around the ops: dtypes, devices, conversions,
randomness, and the non-differentiable ops compared with NumPy."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinylm
from tests import strategies as S
from tests.devices import DEVICES


@pytest.mark.parametrize(
    "data, dtype",
    [
        (1.5, np.float32),
        ([1.0, 2.0], np.float32),
        ([[1, 2], [3, 4]], np.int64),
        ([True, False], np.bool_),
        (np.array([1.0, 2.0]), np.float64),  # an array keeps its dtype
        (np.arange(3, dtype=np.uint16), np.uint16),
        (np.float64(2.0), np.float64),
    ],
)
def test_tensor_infers_dtypes_as_pytorch(data, dtype):
    t = tinylm.tensor(data)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))


@pytest.mark.parametrize(
    "data, expected",
    [
        (range(3), np.array([0, 1, 2])),
        (1 + 2j, np.array(1 + 2j)),
        ((True, 2), np.array([1, 2])),
        ([tinylm.ones(2), tinylm.zeros(2)], np.array([[1.0, 1.0], [0.0, 0.0]], dtype=np.float32)),
        ([], np.zeros(0, dtype=np.float32)),
    ],
)
def test_tensor_accepts_every_numeric_kind(data, expected):
    t = tinylm.tensor(data)
    assert t.dtype == expected.dtype
    np.testing.assert_array_equal(t.numpy(), expected)


@pytest.mark.parametrize(
    "index, numpy_index",
    [
        ([], np.zeros(0, dtype=int)),  # selects nothing, as in PyTorch (NumPy calls [] a float index)
        ([True, False, True, False], [True, False, True, False]),
        (np.True_, np.True_),
        ((Ellipsis, [0, 2]), (Ellipsis, [0, 2])),
        ((None, slice(1, 3)), (None, slice(1, 3))),
        (np.array([3, 0], dtype=np.uint8), [3, 0]),
        (tinylm.tensor([[1], [2]]), [[1], [2]]),
    ],
)
def test_every_accepted_index_kind_still_indexes(index, numpy_index):
    t = tinylm.arange(12).reshape(4, 3)
    expected = t.numpy()[numpy_index]
    assert t[index].shape == expected.shape
    np.testing.assert_array_equal(t[index].numpy(), expected)


def test_tensor_copies_its_data():
    source = np.zeros(3)
    t = tinylm.tensor(source)
    source[0] = 1.0
    assert t.numpy()[0] == 0.0
    shared = tinylm.from_numpy(source)
    source[1] = 2.0
    assert shared.numpy()[1] == 2.0


@pytest.mark.parametrize("device", DEVICES)
def test_factories_make_the_requested_dtype_and_device(device):
    for make in (tinylm.zeros, tinylm.ones, tinylm.randn, tinylm.rand):
        default = make(2, 3, device=device)
        assert default.dtype == tinylm.float32 and default.shape == (2, 3) and default.device == device
        assert make((2, 3), dtype=tinylm.float64, device=device).dtype == np.float64
    assert tinylm.arange(4, device=device).dtype == np.int64
    assert tinylm.arange(0.0, 1.0, 0.25, device=device).dtype == np.float32
    np.testing.assert_array_equal(tinylm.arange(2, 8, 2).numpy(), [2, 4, 6])
    assert tinylm.full((2,), 7, device=device).numpy().tolist() == [7, 7]
    assert tinylm.zeros_like(tinylm.ones(2, dtype=np.float64)).dtype == np.float64


def test_manual_seed_makes_random_tensors_reproducible():
    tinylm.manual_seed(123)
    a = tinylm.randn(5)
    tinylm.manual_seed(123)
    b = tinylm.randn(5)
    c = tinylm.randn(5)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(b.numpy(), c.numpy())


def test_one_seed_gives_the_same_values_in_every_dtype():
    tinylm.manual_seed(7)
    single = tinylm.randn(4)
    tinylm.manual_seed(7)
    double = tinylm.randn(4, dtype=tinylm.float64)
    np.testing.assert_array_equal(single.numpy(), double.numpy().astype(np.float32))


def test_rng_state_round_trips():
    tinylm.manual_seed(1)
    tinylm.rand(3)
    state = tinylm.get_rng_state()
    expected = tinylm.rand(3).numpy()
    tinylm.rand(10)
    tinylm.set_rng_state(state)
    np.testing.assert_array_equal(tinylm.rand(3).numpy(), expected)
    with pytest.raises(ValueError, match="set_rng_state"):
        tinylm.set_rng_state({"nonsense": 1})


@pytest.mark.parametrize("device", DEVICES)
def test_to_changes_dtype_and_device(device):
    x = tinylm.ones(2, device=device)
    assert x.to(tinylm.float64).dtype == np.float64
    assert x.to("cpu").device == "cpu"
    assert x.to(device) is x
    assert x.double().float().dtype == np.float32
    assert x.long().dtype == np.int64
    assert x.to(tinylm.zeros(1, dtype=tinylm.float64)).dtype == np.float64
    assert x.to("float64").dtype == np.float64


def test_item_numpy_tolist_and_repr():
    x = tinylm.tensor([[1.0, 2.0]], requires_grad=True)
    assert x.numpy().shape == (1, 2)
    assert x.tolist() == [[1.0, 2.0]]
    assert x.sum().item() == 3.0
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=<SumBackward>" in repr(x.sum())
    assert "dtype=float64" in repr(tinylm.zeros(1, dtype=tinylm.float64))
    with pytest.raises(ValueError, match="2 elements"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)


def test_python_numbers_keep_the_tensor_dtype():
    x = tinylm.ones(2)
    assert (x * 2.5).dtype == np.float32
    assert (2.5 - x).dtype == np.float32
    assert (x ** 2).dtype == np.float32
    assert (x ** np.float64(2.0)).dtype == np.float32
    assert (tinylm.arange(3) * 2).dtype == np.int64
    assert (tinylm.arange(3) * 0.5).dtype == np.float32
    assert (tinylm.arange(3) / 2).dtype == np.float32


def test_numpy_arrays_defer_to_tensor_operators():
    result = np.ones(2, dtype=np.float32) * tinylm.ones(2, requires_grad=True)
    assert isinstance(result, tinylm.Tensor) and result.requires_grad


def test_setitem_writes_in_place_outside_the_graph():
    x = tinylm.zeros(3)
    x[1] = 5.0
    x[tinylm.tensor([0, 2])] = tinylm.tensor([1.0, 2.0])
    assert x.tolist() == [1.0, 5.0, 2.0]
    w = tinylm.zeros(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w[0] = 1.0
    with tinylm.no_grad():
        w[0] = 1.0
    assert w.tolist() == [1.0, 0.0]


def test_shapes_and_sizes():
    x = tinylm.zeros(2, 3, 4)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.dim() == 3
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.numel() == 24 and len(x) == 2
    assert x.T.shape == (4, 3, 2)
    assert [row.shape for row in x] == [(3, 4), (3, 4)]


def test_max_with_dim_returns_values_and_indices():
    x = tinylm.tensor([[1.0, 5.0, 3.0], [7.0, 0.0, 2.0]])
    values, indices = x.max(dim=1)
    assert values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    assert indices.dtype == np.int64 and not indices.requires_grad
    kept = x.min(dim=0, keepdim=True)
    assert kept.values.shape == (1, 3) and kept.indices.tolist() == [[0, 1, 1]]


def test_softmax_is_stable_at_huge_logits():
    logits = tinylm.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], requires_grad=True)
    probabilities = logits.softmax(-1)
    log_probabilities = logits.log_softmax(-1)
    assert np.isfinite(probabilities.numpy()).all() and np.isfinite(log_probabilities.numpy()).all()
    np.testing.assert_allclose(probabilities.numpy(), [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
    np.testing.assert_allclose(log_probabilities.numpy()[0], [0, -2e4, -1e4])
    (probabilities.sum() + log_probabilities[:, 0].sum()).backward()
    assert np.isfinite(logits.grad.numpy()).all()


_COMPARISONS = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal,
}  # fmt: skip


@pytest.mark.parametrize("op", sorted(_COMPARISONS))
@given(data=st.data())
def test_comparisons_equal_numpy(op, data):
    shape_a, shape_b = data.draw(S.broadcast_shapes())
    a = data.draw(S.arrays(shape_a, low=-2, high=2).map(np.round))  # rounding makes ties likely
    b = data.draw(S.arrays(shape_b, low=-2, high=2).map(np.round))
    result = getattr(tinylm.ops, op)(tinylm.tensor(a), tinylm.tensor(b))
    assert result.dtype == np.bool_ and not result.requires_grad
    np.testing.assert_array_equal(result.numpy(), _COMPARISONS[op](a, b))


@given(data=st.data())
def test_logic_and_index_reductions_equal_numpy(data):
    shape_a, shape_b = data.draw(S.broadcast_shapes(min_side=1))
    p = data.draw(S.hnp.arrays(np.bool_, shape_a))
    q = data.draw(S.hnp.arrays(np.bool_, shape_b))
    tp, tq = tinylm.tensor(p), tinylm.tensor(q)
    np.testing.assert_array_equal((tp & tq).numpy(), p & q)
    np.testing.assert_array_equal((tp | tq).numpy(), p | q)
    np.testing.assert_array_equal((~tp).numpy(), ~p)
    assert tp.any().item() == p.any() and tp.all().item() == p.all()
    x = data.draw(S.distinct_arrays(shape_a))
    tx = tinylm.tensor(x)
    assert tx.argmax().item() == x.argmax() and tx.argmin().item() == x.argmin()
    if x.ndim:
        dim = data.draw(S.dims(x.ndim))
        np.testing.assert_array_equal(tx.argmax(dim).numpy(), x.argmax(axis=dim))
        np.testing.assert_array_equal(tx.argmin(dim, keepdim=True).numpy(), x.argmin(axis=dim, keepdims=True))
