"""``Linear``, ``Embedding`` and ``Dropout``, each checked three ways: finite differences,
the same computation from primitive ops, and PyTorch given the same weights."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm
from tinylm import nn
from tinylm.nn import functional as F
from tinylm.ops.fused.dropout import DropoutFunction
from tinylm.ops.fused.embedding import EmbeddingFunction
from tinylm.ops.fused.linear import LinearFunction
from tests import strategies as S
from tests.coverage import covers
from tests.parity import assert_close, assert_same_gradients, copy_weights


@st.composite
def linear_inputs(draw):
    batch = draw(S.shapes(max_dims=2, min_side=1))
    n_in, n_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    x = draw(S.arrays(batch + (n_in,)))
    weight = draw(S.arrays((n_out, n_in)))
    bias = draw(st.one_of(st.none(), S.arrays((n_out,))))
    return [a for a in (x, weight, bias) if a is not None]


def _leaves(arrays):
    return [tinylm.tensor(a, requires_grad=True) for a in arrays]


# ----- Linear ----------------------------------------------------------------------


@covers(LinearFunction, ops=["F.linear"])
@given(arrays=linear_inputs())
def test_linear_gradients_match_finite_differences(arrays):
    assert tinylm.gradcheck(F.linear, _leaves(arrays))


@given(arrays=linear_inputs())
def test_linear_equals_its_composition_from_primitives(arrays):
    fused, composed = _leaves(arrays), _leaves(arrays)
    y = F.linear(*fused)
    x, w, *b = composed
    z = x @ w.transpose(0, 1) + (b[0] if b else 0.0)
    np.testing.assert_allclose(y.numpy(), z.numpy(), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(g)
    z.backward(g)
    for ours, reference in zip(fused, composed):
        np.testing.assert_allclose(ours.grad.numpy(), reference.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_linear_matches_pytorch(torch, dtype, bias, mode):
    reference = torch.nn.Linear(5, 3, bias=bias).to(getattr(torch, np.dtype(dtype).name))
    layer = nn.Linear(5, 3, bias=bias, dtype=dtype)
    copy_weights(reference, layer)
    reference.train(mode == "train")
    layer.train(mode == "train")
    x = np.random.default_rng(1).standard_normal((2, 4, 5)).astype(dtype)
    ours, theirs = tinylm.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, expected = layer(ours), reference(theirs)
    assert_close(y, expected, dtype)
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    assert_close(ours.grad, theirs.grad, dtype, "input gradient")
    assert_same_gradients(layer, reference, dtype)


def test_linear_initialisation_range_is_pytorchs():
    tinylm.manual_seed(0)
    layer = nn.Linear(64, 32)
    bound = 1 / np.sqrt(64)
    for p in (layer.weight, layer.bias):
        values = p.numpy()
        assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound


def test_linear_rejects_a_wrong_input_width():
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\) does not end in in_features=4"):
        nn.Linear(4, 2)(tinylm.zeros(2, 3))


# ----- Embedding -------------------------------------------------------------------


@st.composite
def embedding_inputs(draw):
    size, dim = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    weight = draw(S.arrays((size, dim)))
    ids = draw(S.index_arrays(draw(S.shapes(max_dims=2)), size))  # repeats allowed
    padding_idx = draw(st.one_of(st.none(), st.integers(0, size - 1)))
    return weight, ids, padding_idx


@covers(EmbeddingFunction, ops=["F.embedding"])
@given(inputs=embedding_inputs())
def test_embedding_gradients_match_finite_differences(inputs):
    weight, ids, _ = inputs
    assert tinylm.gradcheck(lambda w: F.embedding(tinylm.tensor(ids), w), [tinylm.tensor(weight, requires_grad=True)])


@st.composite
def padded_embedding_inputs(draw):
    """A table, ids that look up the padding row at least once, and padding_idx (negative ones included)."""
    size, dim = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    weight = draw(S.arrays((size, dim)))
    padding_idx = draw(st.integers(-size, size - 1))
    ids = draw(S.index_arrays(draw(S.shapes(min_dims=1, max_dims=2, min_side=1)), size))
    ids.flat[draw(st.integers(0, ids.size - 1))] = padding_idx % size
    return weight, ids, padding_idx


@covers(EmbeddingFunction, ops=["F.embedding"])
@given(inputs=padded_embedding_inputs())
def test_embedding_with_padding_idx_gradients_match_finite_differences(inputs):
    """Every row but the padding one against finite differences (that row is looked up, so the forward
    depends on it, but by definition it gets no gradient), then the padding row's gradient is exactly 0."""
    weight, ids, padding_idx = inputs
    padding_row = padding_idx % len(weight)
    rows = [tinylm.tensor(weight[i : i + 1], requires_grad=i != padding_row) for i in range(len(weight))]
    ids_tensor = tinylm.tensor(ids)
    assert (ids == padding_row).any()
    if len(rows) > 1:
        assert tinylm.gradcheck(lambda *r: F.embedding(ids_tensor, tinylm.cat(r), padding_idx=padding_idx), rows)
    layer = nn.Embedding(*weight.shape, padding_idx=padding_idx, dtype=np.float64)
    layer.weight.data[...] = weight
    y = layer(ids_tensor)
    np.testing.assert_array_equal(y.numpy(), weight[ids])  # the padding row is still looked up
    y.backward(np.random.default_rng(0).standard_normal(y.shape))
    np.testing.assert_array_equal(layer.weight.grad.numpy()[padding_row], 0.0)


@given(inputs=embedding_inputs())
def test_embedding_equals_indexing_and_skips_the_padding_row(inputs):
    weight, ids, padding_idx = inputs
    fused = tinylm.tensor(weight, requires_grad=True)
    composed = tinylm.tensor(weight, requires_grad=True)
    y = F.embedding(tinylm.tensor(ids), fused, padding_idx=padding_idx)
    z = composed[tinylm.tensor(ids)]
    np.testing.assert_array_equal(y.numpy(), z.numpy())
    g = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(g)
    z.backward(g)
    expected = composed.grad.numpy().copy()
    if padding_idx is not None:
        expected[padding_idx] = 0
    np.testing.assert_allclose(fused.grad.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_embedding_matches_pytorch(torch, dtype, mode):
    reference = torch.nn.Embedding(7, 4, padding_idx=2).to(getattr(torch, np.dtype(dtype).name))
    layer = nn.Embedding(7, 4, padding_idx=2, dtype=dtype)
    copy_weights(reference, layer)
    reference.train(mode == "train")
    layer.train(mode == "train")
    ids = np.array([[0, 2, 6, 6], [1, 2, 3, 0]])
    y, expected = layer(tinylm.tensor(ids)), reference(torch.tensor(ids))
    assert_close(y, expected, dtype)
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    assert_same_gradients(layer, reference, dtype)


def test_embedding_rejects_an_id_out_of_range_naming_it():
    layer = nn.Embedding(5, 2)
    with pytest.raises(IndexError, match="id 7 is out of range for an embedding of size 5"):
        layer(tinylm.tensor([1, 7, 2]))
    with pytest.raises(IndexError, match="id -1"):
        layer(tinylm.tensor([-1]))
    with pytest.raises(TypeError, match="integer tensor"):
        layer(tinylm.tensor([1.0]))


# ----- Dropout ----------------------------------------------------------------------


def test_dropout_drops_about_p_and_rescales_the_rest():
    tinylm.manual_seed(0)
    x = tinylm.ones(100_000)
    y = F.dropout(x, 0.3).numpy()
    assert abs((y == 0).mean() - 0.3) < 0.01
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-6)


def test_dropout_is_the_identity_in_eval_mode_and_for_p_zero():
    x = tinylm.randn(4, 5)
    layer = nn.Dropout(0.5).eval()
    assert layer(x) is x
    assert F.dropout(x, 0.0) is x


def test_dropout_masks_are_reproducible_from_the_seed():
    x = tinylm.ones(50)
    tinylm.manual_seed(3)
    first = F.dropout(x, 0.5).numpy()
    tinylm.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.5).numpy(), first)


@covers(DropoutFunction, ops=["F.dropout"])
@settings(max_examples=10)
@given(x=S.arrays(S.shapes(max_dims=3)))
def test_dropout_gradient_matches_finite_differences(x):
    def dropped(t):
        tinylm.manual_seed(11)  # the same mask on every evaluation
        return F.dropout(t, 0.4)

    assert tinylm.gradcheck(dropped, [tinylm.tensor(x, requires_grad=True)])


def test_dropout_gradient_is_the_mask():
    tinylm.manual_seed(5)
    x = tinylm.ones(20, requires_grad=True)
    y = F.dropout(x, 0.5)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())
