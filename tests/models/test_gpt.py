"""The GPT model: shapes, names, initialisation, parity with a PyTorch model of nanoGPT's design,
and generation with and without the key/value cache."""

import math

import numpy as np
import pytest

import tinylm
from tinylm.models import GPT, GPTConfig
from tinylm.models.sampling import next_tokens
from tinylm.errors import ConfigError
from tests.parity import assert_close

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)


def _model(config=TINY, seed=0):
    tinylm.manual_seed(seed)
    return GPT(config)


def test_forward_shapes_and_loss_is_cross_entropy():
    model = _model()
    idx = tinylm.randint(0, 11, (3, 8))
    targets = tinylm.randint(0, 11, (3, 8))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 8, 11) and loss.shape == ()
    log_p = logits.numpy() - np.log(np.exp(logits.numpy()).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, targets.numpy()[..., None], -1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert model(idx)[1] is None


def test_parameter_names_follow_nanogpt_and_the_embedding_is_tied():
    model = _model()
    names = [name for name, _ in model.named_parameters()]
    assert names[:2] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert "transformer.h.1.attn.c_attn.weight" in names and "transformer.ln_f.weight" in names
    assert "lm_head.weight" not in names  # the same array as transformer.wte.weight
    assert model.lm_head.weight is model.transformer.wte.weight
    assert set(model.state_dict()) >= {"lm_head.weight", "transformer.wte.weight"}


def test_initialisation_is_gpt2s():
    config = GPTConfig(vocab_size=300, block_size=64, n_layer=4, n_head=4, n_embd=128)
    model = _model(config)
    assert np.std(model.transformer.wte.weight.numpy()) == pytest.approx(0.02, rel=0.05)
    assert np.std(model.transformer.h[0].mlp.c_fc.weight.numpy()) == pytest.approx(0.02, rel=0.05)
    residual = 0.02 / math.sqrt(2 * config.n_layer)
    assert np.std(model.transformer.h[0].attn.c_proj.weight.numpy()) == pytest.approx(residual, rel=0.05)
    assert not np.any(model.transformer.h[0].attn.c_attn.bias.numpy())


def test_the_untrained_loss_is_near_log_vocab():
    model = _model(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32))
    _, loss = model(tinylm.randint(0, 65, (4, 16)), tinylm.randint(0, 65, (4, 16)))
    assert loss.item() == pytest.approx(math.log(65), abs=0.1)


def test_too_many_positions_is_an_error():
    with pytest.raises(ValueError, match="9 positions exceed the block size 8"):
        _model()(tinylm.zeros(1, 9, dtype=tinylm.int64))


def _torch_gpt(torch, config):
    """A PyTorch GPT written plainly after nanoGPT's design, with the same parameter names."""
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
            self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.c_attn(x).split(c, dim=2)
            q, k, v = (z.view(b, t, config.n_head, c // config.n_head).transpose(1, 2) for z in (q, k, v))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(b, t, c))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
            self.mlp = nn.Module()
            self.mlp.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
            self.mlp.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            h = self.mlp.c_proj(torch.nn.functional.gelu(self.mlp.c_fc(self.ln_2(x))))
            return x + h

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(
                dict(
                    wte=nn.Embedding(config.vocab_size, config.n_embd),
                    wpe=nn.Embedding(config.block_size, config.n_embd),
                    h=nn.ModuleList([Block() for _ in range(config.n_layer)]),
                    ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
                )
            )
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight

        def forward(self, idx, targets):
            t = idx.shape[1]
            x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t))
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss

    return Model()


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_matches_a_pytorch_gpt_given_the_same_weights(torch, dtype, bias):
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=bias)
    ours = _model(config).to(dtype)
    theirs = _torch_gpt(torch, config).to(getattr(torch, np.dtype(dtype).name))
    theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 11, (3, 8)), rng.integers(0, 11, (3, 8))
    logits, loss = ours(tinylm.tensor(idx), tinylm.tensor(targets))
    expected_logits, expected_loss = theirs(torch.tensor(idx), torch.tensor(targets))
    assert_close(logits, expected_logits, dtype)
    assert_close(loss, expected_loss, dtype)
    loss.backward()
    expected_loss.backward()
    reference = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad, reference[name].grad, dtype, what=name)


@pytest.mark.parametrize("prompt_length, new", [(1, 20), (3, 5), (8, 12), (10, 6)])
def test_generation_with_and_without_the_cache_gives_the_same_tokens(prompt_length, new):
    model = _model()
    prompt = tinylm.randint(0, 11, (2, prompt_length))
    tinylm.manual_seed(7)
    cached = model.generate(prompt, new, temperature=1.0, top_k=5, use_cache=True)
    tinylm.manual_seed(7)
    plain = model.generate(prompt, new, temperature=1.0, top_k=5, use_cache=False)
    assert cached.shape == (2, prompt_length + new)
    np.testing.assert_array_equal(cached.numpy(), plain.numpy())
    np.testing.assert_array_equal(cached.numpy()[:, :prompt_length], prompt.numpy())


def test_cached_decoding_gives_the_logits_of_a_full_pass():
    from tinylm.nn.layers.attention import KVCache

    model = _model().eval()
    idx = tinylm.randint(0, 11, (2, 8))
    full, _ = model(idx)
    caches = [KVCache(8) for _ in range(TINY.n_layer)]
    with tinylm.no_grad():
        first, _ = model(idx[:, :5], caches=caches)
        steps = [model(idx[:, t : t + 1], caches=caches)[0] for t in range(5, 8)]
    np.testing.assert_allclose(first.numpy(), full.numpy()[:, :5], rtol=1e-5, atol=1e-5)
    for t, logits in zip(range(5, 8), steps):
        np.testing.assert_allclose(logits.numpy()[:, 0], full.numpy()[:, t], rtol=1e-5, atol=1e-5)


def test_generate_restores_training_mode_and_checks_its_arguments():
    model = _model().train()
    model.generate(tinylm.zeros(1, 1, dtype=tinylm.int64), 2)
    assert model.training
    with pytest.raises(ConfigError, match="top-p"):
        model.generate(tinylm.zeros(1, 1, dtype=tinylm.int64), 2, top_p=1.5)


def test_greedy_top_k_and_top_p_choices():
    logits = tinylm.tensor(np.log(np.array([[0.5, 0.3, 0.15, 0.05]])))
    assert next_tokens(logits, temperature=0).tolist() == [0]
    tinylm.manual_seed(0)
    picks = [int(next_tokens(logits, top_k=2)[0]) for _ in range(300)]
    assert set(picks) == {0, 1}
    picks = [int(next_tokens(logits, top_p=0.7)[0]) for _ in range(300)]
    assert set(picks) == {0, 1}  # 0.5 alone is short of 0.7; 0.5 + 0.3 reaches it
    picks = [int(next_tokens(logits)[0]) for _ in range(2000)]
    assert np.bincount(picks, minlength=4) / 2000 == pytest.approx([0.5, 0.3, 0.15, 0.05], abs=0.04)
