"""Positional encodings: the sinusoid table's values, layouts, offsets for cached decoding,
the learned table checked three ways (finite differences, primitives, PyTorch)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm
from tinylm.nn.layers.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_table
from tinylm.ops.fused.embedding import EmbeddingFunction
from tests import strategies as S
from tests.coverage import covers
from tests.parity import assert_close


def test_sinusoid_table_is_sin_on_even_and_cos_on_odd_dimensions():
    table = sinusoidal_table(50, 6)
    for pos in (0, 1, 7, 49):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert table[pos, 2 * i] == pytest.approx(math.sin(angle), abs=1e-12)
            assert table[pos, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-12)
    np.testing.assert_array_equal(table[0, 0::2], 0.0)
    np.testing.assert_array_equal(table[0, 1::2], 1.0)


def test_sinusoid_table_with_an_odd_width_ends_with_a_sine():
    table = sinusoidal_table(10, 5)
    assert table.shape == (10, 5)
    np.testing.assert_allclose(table[:, 4], np.sin(np.arange(10) / 10000 ** (4 / 5)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sinusoidal_encoding_is_a_non_learned_buffer_in_the_module_dtype(dtype):
    layer = SinusoidalPositionalEncoding(8, max_len=20, dtype=dtype)
    assert list(layer.parameters()) == [] and list(layer.state_dict()) == []
    assert layer.pe.dtype == dtype and layer.pe.shape == (20, 8) and not layer.pe.requires_grad
    np.testing.assert_allclose(layer.pe.numpy(), sinusoidal_table(20, 8).astype(dtype))
    layer.to(np.float64)
    assert layer.pe.dtype == np.float64


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encodings_are_added_per_position_in_every_layout(cls, batch_first):
    tinylm.manual_seed(0)
    layer = cls(6, max_len=12, batch_first=batch_first, dtype=np.float64)
    table = layer.encodings(12).numpy()
    x = np.random.default_rng(0).standard_normal((2, 5, 6))
    given = x if batch_first else x.transpose(1, 0, 2)
    y = layer(tinylm.tensor(given), offset=3).numpy()
    y = y if batch_first else y.transpose(1, 0, 2)
    np.testing.assert_allclose(y, x + table[3:8], rtol=1e-14)
    unbatched = layer(tinylm.tensor(x[0]), offset=3).numpy()
    np.testing.assert_allclose(unbatched, x[0] + table[3:8], rtol=1e-14)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
def test_offset_decoding_step_by_step_equals_the_whole_sequence(cls):
    layer = cls(4, max_len=8, batch_first=True)
    x = tinylm.randn(3, 8, 4)
    whole = layer(x).numpy()
    steps = np.concatenate([layer(x[:, t : t + 1], offset=t).numpy() for t in range(8)], axis=1)
    np.testing.assert_array_equal(steps, whole)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
def test_positions_beyond_max_len_and_wrong_widths_are_rejected(cls):
    layer = cls(4, max_len=8, batch_first=True)
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: positions 6 to 8 are outside the max_len=8 positions"):
        layer(tinylm.zeros(1, 3, 4), offset=6)
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(N, T, d_model\) or \(T, d_model\) "
                                         rf"with d_model=4, got \(1, 3, 5\)"):
        layer(tinylm.zeros(1, 3, 5))
    with pytest.raises(ValueError, match=rf"{name}: positions -1 to 1"):
        layer.encodings(3, offset=-1)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_input_dtype_is_kept(cls, dtype):
    layer = cls(4, max_len=8)  # float32 table
    y = layer(tinylm.zeros(3, 2, 4, dtype=dtype))
    assert y.dtype == dtype


def test_dropout_applies_in_training_only():
    layer = SinusoidalPositionalEncoding(4, max_len=100, dropout=0.5, batch_first=True)
    x = tinylm.ones(2, 100, 4)
    tinylm.manual_seed(0)
    assert (layer(x).numpy() == 0).mean() > 0.3
    layer.eval()
    np.testing.assert_allclose(layer(x).numpy(), np.broadcast_to(1 + layer.encodings(100).numpy(), (2, 100, 4)), rtol=1e-6)


# ----- the learned table: three ways -----------------------------------------------------------


@covers(EmbeddingFunction)
@settings(max_examples=15)
@given(length=st.integers(0, 4), offset=st.integers(0, 2), batch=st.integers(1, 2), data=st.data())
def test_learned_embedding_gradients_match_finite_differences(length, offset, batch, data):
    layer = LearnedPositionalEmbedding(3, max_len=6, batch_first=True, dtype=np.float64)
    x = tinylm.tensor(data.draw(S.arrays((batch, length, 3))), requires_grad=True)
    assert tinylm.gradcheck(lambda x, w: layer(x, offset=offset), [x, layer.weight])


def test_learned_embedding_equals_indexing_its_table():
    layer = LearnedPositionalEmbedding(3, max_len=6, dtype=np.float64)
    x = tinylm.randn(4, 2, 3, dtype=np.float64)
    y = layer(x, offset=1)
    twin = tinylm.tensor(layer.weight.numpy(), requires_grad=True)
    z = x + twin[1:5].unsqueeze(1)
    np.testing.assert_array_equal(y.numpy(), z.numpy())
    g = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(g)
    z.backward(g)
    np.testing.assert_allclose(layer.weight.grad.numpy(), twin.grad.numpy(), rtol=1e-14)
    np.testing.assert_array_equal(layer.weight.grad.numpy()[[0, 5]], 0.0)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_learned_embedding_matches_a_pytorch_embedding_of_positions(torch, dtype, mode):
    reference = torch.nn.Embedding(10, 4).to(getattr(torch, np.dtype(dtype).name))
    layer = LearnedPositionalEmbedding(4, max_len=10, dropout=0.0, batch_first=True, dtype=dtype)
    layer.load_state_dict({"weight": reference.weight.detach().numpy()})
    reference.train(mode == "train")
    layer.train(mode == "train")
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(dtype)
    ours, theirs = tinylm.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y = layer(ours, offset=2)
    expected = theirs + reference(torch.arange(2, 7))
    assert_close(y, expected, dtype)
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    assert_close(ours.grad, theirs.grad, dtype)
    assert_close(layer.weight.grad, reference.weight.grad, dtype)
