"""GPTDecoder, the Tensor-free incremental decoder behind ``GPT.generate(use_cache=True)``:
it must give the logits of the model's full forward pass, position by position."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinylm
from tinylm import backend
from tinylm.models import GPT, GPTConfig
from tinylm.models.decoding import GPTDecoder
from tests.devices import DEVICES
from tests.parity import assert_close

VOCAB = 13


def _model(config, dtype=tinylm.float64, seed=0):
    """A GPT in eval mode whose every parameter is random.

    GPT's own initialisation has zero biases and unit LayerNorm weights, which
    would let a decoder that drops or misplaces them pass; random values do not.
    """
    tinylm.manual_seed(seed)
    model = GPT(config).to(dtype).eval()
    rng = np.random.default_rng(seed)
    for name, parameter in model.named_parameters():
        noise = rng.normal(0.0, 0.3, parameter.shape)
        is_norm_scale = ".ln_" in name and name.endswith(".weight")  # around 1, as a trained one
        parameter.data[...] = 1.0 + noise if is_norm_scale else noise
    return model


def _config(n_head, head_size, block, bias):
    return GPTConfig(vocab_size=VOCAB, block_size=block, n_layer=2, n_head=n_head,
                     n_embd=n_head * head_size, dropout=0.0, bias=bias)


def _full_last_logits(model, tokens):
    """The model's forward over all of ``tokens`` (B, T): logits of the last position, (B, vocab)."""
    with tinylm.no_grad():
        logits, _ = model(tinylm.tensor(tokens, device=model.transformer.wte.weight.device))
    return logits.numpy()[:, -1]


def _decode(decoder, tokens, prefill):
    """Feed ``tokens[:, :prefill]`` at once, then one position at a time; the logits after each feed."""
    outputs = [decoder.feed(tokens[:, :prefill])]
    for t in range(prefill, tokens.shape[1]):
        outputs.append(decoder.feed(tokens[:, t : t + 1]))
    return [backend.to_numpy(out) for out in outputs]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("n_head", [1, 4])
@settings(max_examples=3)
@given(data=st.data())
def test_prefill_then_steps_give_the_full_forward_logits_in_float64(bias, batch, n_head, data):
    head_size = data.draw(st.sampled_from([s for s in (2, 3, 4, 8, 12, 16) if 8 <= n_head * s <= 16]))
    block = data.draw(st.integers(8, 16))
    length = data.draw(st.integers(2, block))  # how many positions are fed in all
    prefill = data.draw(st.integers(1, length - 1))  # at least one single-token step follows
    model = _model(_config(n_head, head_size, block, bias))
    tokens = np.random.default_rng(length).integers(0, VOCAB, (batch, length))
    decoder = GPTDecoder(model)
    outputs = _decode(decoder, tokens, prefill)
    assert len(decoder) == length
    for fed, logits in zip(range(prefill, length + 1), outputs):
        assert logits.shape == (batch, VOCAB) and logits.dtype == np.float64
        np.testing.assert_allclose(logits, _full_last_logits(model, tokens[:, :fed]), rtol=1e-10, atol=1e-10,
                                   err_msg=f"after {fed} positions")


@settings(max_examples=10)
@given(data=st.data())
def test_any_split_into_feeds_gives_the_full_forward_logits_in_float64(data):
    """Several positions after stored ones go through the layers together (matrix products), one
    position through the step kernel: every mix of the two must give the full forward's logits."""
    block = 12
    model = _model(_config(n_head=2, head_size=4, block=block, bias=True))
    tokens = np.random.default_rng(3).integers(0, VOCAB, (2, block))
    cuts = sorted(data.draw(st.sets(st.integers(1, block - 1), max_size=5)))
    decoder = GPTDecoder(model)
    for begin, end in zip([0] + cuts, cuts + [block]):
        logits = backend.to_numpy(decoder.feed(tokens[:, begin:end]))
        np.testing.assert_allclose(logits, _full_last_logits(model, tokens[:, :end]), rtol=1e-10, atol=1e-10,
                                   err_msg=f"after feeding positions {begin}..{end - 1}")
    assert len(decoder) == block


@pytest.mark.parametrize("bias", [True, False])
def test_float32_decoding_is_within_float32_rounding_of_the_float64_forward(bias):
    config = _config(n_head=4, head_size=4, block=16, bias=bias)
    exact = _model(config, tinylm.float64)
    single = GPT(config).eval()
    single.load_state_dict(exact.state_dict())  # the same weights, rounded to float32
    tokens = np.random.default_rng(1).integers(0, VOCAB, (3, 16))
    outputs = _decode(GPTDecoder(single), tokens, prefill=5)
    for fed, logits in zip(range(5, 17), outputs):
        assert logits.dtype == np.float32
        assert_close(logits, _full_last_logits(exact, tokens[:, :fed]), np.float32, what=f"after {fed} positions")


@pytest.mark.parametrize("device", DEVICES)
def test_the_decoder_runs_on_the_models_device(device):
    config = _config(n_head=2, head_size=4, block=8, bias=True)
    model = _model(config)
    tokens = np.random.default_rng(2).integers(0, VOCAB, (2, 8))
    expected = [_full_last_logits(model, tokens[:, :fed]) for fed in range(3, 9)]
    model.to(device)
    outputs = _decode(GPTDecoder(model), tokens, prefill=3)
    for logits, reference in zip(outputs, expected):
        np.testing.assert_allclose(logits, reference, rtol=1e-10, atol=1e-10)


def test_reset_then_feeding_again_matches_a_fresh_decoder():
    model = _model(_config(n_head=2, head_size=4, block=8, bias=False))
    rng = np.random.default_rng(3)
    first, second = rng.integers(0, VOCAB, (2, 8)), rng.integers(0, VOCAB, (2, 6))
    decoder = GPTDecoder(model)
    _decode(decoder, first, prefill=4)  # fills all 8 positions
    decoder.reset()
    assert len(decoder) == 0
    again = _decode(decoder, second, prefill=2)
    fresh = _decode(GPTDecoder(model), second, prefill=2)
    for ours, theirs in zip(again, fresh):
        np.testing.assert_array_equal(ours, theirs)
    # and a new batch size after a reset
    decoder.reset()
    third = rng.integers(0, VOCAB, (3, 5))
    np.testing.assert_allclose(decoder.feed(third), _full_last_logits(model, third), rtol=1e-10, atol=1e-10)


def test_too_many_positions_is_an_error_that_names_the_numbers():
    model = _model(_config(n_head=2, head_size=4, block=8, bias=True))
    decoder = GPTDecoder(model)
    with pytest.raises(ValueError, match=r"0 stored \+ 9 new = 9 positions exceed the block size 8"):
        decoder.feed(np.zeros((1, 9), np.int64))
    decoder.feed(np.zeros((1, 5), np.int64))
    with pytest.raises(ValueError, match=r"5 stored \+ 4 new = 9 positions exceed the block size 8"):
        decoder.feed(np.zeros((1, 4), np.int64))
    assert len(decoder) == 5  # the refused feed stored nothing
    decoder.feed(np.zeros((1, 3), np.int64))
    assert len(decoder) == 8


def test_bad_ids_and_a_changed_batch_are_errors():
    decoder = GPTDecoder(_model(_config(n_head=2, head_size=4, block=8, bias=True)))
    with pytest.raises(IndexError, match=f"token id {VOCAB} is outside"):
        decoder.feed(np.full((1, 2), VOCAB, np.int64))
    with pytest.raises(IndexError, match="token id -1 is outside"):
        decoder.feed(np.full((1, 2), -1, np.int64))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        decoder.feed(np.zeros(3, np.int64))
    decoder.feed(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="stores 2 sequences, got a batch of 1"):
        decoder.feed(np.zeros((1, 1), np.int64))


def test_the_decoder_works_on_a_snapshot_of_the_weights_taken_when_it_is_built():
    model = _model(_config(n_head=2, head_size=4, block=8, bias=True))
    decoder = GPTDecoder(model)
    tokens = np.array([[1, 2, 3]])
    before = decoder.feed(tokens)
    model.transformer.h[0].mlp.c_fc.weight.data[...] *= 2  # a change after the decoder was built...
    decoder.reset()
    np.testing.assert_array_equal(decoder.feed(tokens), before)  # ...is not seen by it
    after = GPTDecoder(model).feed(tokens)  # a new decoder sees it
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _full_last_logits(model, tokens), rtol=1e-10, atol=1e-10)


def test_layer_norms_with_different_eps_are_refused():
    model = _model(_config(n_head=2, head_size=4, block=8, bias=True))
    model.transformer.h[1].ln_2.eps = 1e-6
    with pytest.raises(ValueError, match=r"share one eps, got \[1e-06, 1e-05\]"):
        GPTDecoder(model)


@pytest.mark.parametrize("bias", [True, False])
def test_greedy_generation_with_and_without_the_cache_agree_across_restarts(bias):
    # block 8, 30 new tokens: the context fills and restarts (from its last 4) several times
    model = _model(_config(n_head=2, head_size=4, block=8, bias=bias))
    prompt = tinylm.tensor(np.random.default_rng(4).integers(0, VOCAB, (3, 3)))
    cached = model.generate(prompt, 30, temperature=0, use_cache=True)
    plain = model.generate(prompt, 30, temperature=0, use_cache=False)
    assert cached.shape == (3, 33)
    np.testing.assert_array_equal(cached.numpy(), plain.numpy())
