"""A GPT decoder in the manner of nanoGPT's ``model.py``: pre-LayerNorm blocks, learned positions,
the token embedding tied to the output layer, and GPT-2's initialisation.

    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128))
    logits, loss = model(idx, targets)            # idx, targets: (B, T) int64
    out = model.generate(idx, max_new_tokens=100, temperature=0.8, top_k=40)

Parameter names are nanoGPT's (``transformer.wte.weight``, ``transformer.h.0.attn.c_attn.weight``, ...).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

import tinylm
from tinylm import nn
from tinylm.kernels.threads import blas_threads_at_most
from tinylm.models.decoding import GPTDecoder
from tinylm.models.sampling import check_sampling, next_tokens
from tinylm.nn import functional as F
from tinylm.ops.fused.attention import causal_self_attention, scaled_dot_product_attention


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in the linear and LayerNorm layers

    def __post_init__(self):
        """Refuse settings no GPT can have, naming the field (a checkpoint's record may be hand-edited)."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_head ({self.n_head}) must divide n_embd ({self.n_embd}): "
                             f"each head takes n_embd / n_head of the width")  # fmt: skip
        dropout = self.dropout
        is_number = isinstance(dropout, (int, float, np.integer, np.floating)) and not isinstance(dropout, bool)
        if not (is_number and 0 <= dropout < 1):
            raise ValueError(f"GPTConfig: dropout must be a number in [0, 1), got {dropout!r}")
        if not isinstance(self.bias, (bool, np.bool_)):
            raise ValueError(f"GPTConfig: bias must be true or false, got {self.bias!r}")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each position sees itself and the positions before it."""

    def __init__(self, config):
        super().__init__()
        self.n_head, self.n_embd, self.dropout = config.n_head, config.n_embd, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # query, key, value at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, cache=None):
        """x (B, T, C) -> (B, T, C); with a cache, T new positions after those it holds."""
        attention_dropout = self.dropout if self.training else 0.0
        if cache is None and attention_dropout == 0.0:  # one op on the packed rows (the training path)
            return self.resid_dropout(self.c_proj(causal_self_attention(self.c_attn(x), self.n_head)))
        batch, length, width = x.shape
        head = width // self.n_head
        q, k, v = self.c_attn(x).split(width, dim=2)
        q, k, v = (t.reshape(batch, length, self.n_head, head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.update(k, v)  # all positions so far: (B, nh, past + T, hs)
        y = scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=attention_dropout)
        y = y.transpose(1, 2).reshape(batch, length, width)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)): the pre-LayerNorm transformer block."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf, 2017)
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale the residual projections by depth
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self, non_embedding=True):
        """Parameters, without the position embedding by default (nanoGPT's count)."""
        count = super().num_parameters()
        return count - self.transformer.wpe.weight.numel() if non_embedding else count

    def forward(self, idx, targets=None, caches=None):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None).

        With ``caches`` (one ``KVCache`` per layer), ``idx`` holds the positions
        after those already cached.
        """
        if idx.ndim != 2:
            raise ValueError(f"GPT: idx must be (batch, time), got shape {tuple(idx.shape)}")
        batch, length = idx.shape
        start = len(caches[0]) if caches else 0
        if start + length > self.config.block_size:
            raise ValueError(
                f"GPT: {start + length} positions exceed the block size {self.config.block_size}"
            )
        positions = tinylm.arange(start, start + length, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        for i, block in enumerate(self.transformer.h):
            x = block(x, caches[i] if caches else None)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @tinylm.no_grad()
    @blas_threads_at_most(1)  # decoding is many tiny matmuls (see tinylm.kernels.threads)
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True):
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens; returns (B, T + new) int64.

        The model sees at most ``block_size`` tokens. When the context is full it
        restarts from its last ``block_size // 2`` tokens (at least one). With ``use_cache`` a
        ``GPTDecoder`` (tinylm.models.decoding) runs each new position through
        all the layers in one ``gpt_decode_step`` kernel call, without Tensors,
        and keeps the keys and values of the context, so each new token costs
        one position; a restart re-reads the kept tokens once. Without the
        cache every step runs ``forward`` over the whole context. Both compute
        the same logits (to rounding), so they give the same tokens for the
        same seed.
        """
        check_sampling(temperature, top_k, top_p)
        was_training = self.training
        self.eval()
        try:
            tokens = np.asarray(idx.numpy(), dtype=np.int64)
            block = self.config.block_size
            context_start = max(0, tokens.shape[1] - block)
            decoder = GPTDecoder(self) if use_cache else None
            fed = context_start  # tokens[:, context_start:fed] are stored in the decoder
            for _ in range(max_new_tokens):
                if tokens.shape[1] - context_start > block:
                    context_start = tokens.shape[1] - max(1, block // 2)  # a block of 1 keeps its one token
                    if decoder is not None:
                        decoder.reset()
                        fed = context_start
                if decoder is not None:
                    logits = decoder.feed(tokens[:, fed:])  # (B, vocab): the last position's
                    fed = tokens.shape[1]
                else:
                    logits, _ = self(tinylm.tensor(tokens[:, context_start:], device=idx.device))
                    logits = logits[:, -1, :]
                chosen = next_tokens(logits, temperature, top_k, top_p)
                tokens = np.concatenate([tokens, chosen[:, None]], axis=1)
        finally:
            self.train(was_training)
        return tinylm.tensor(tokens, device=idx.device)

    def config_dict(self):
        return asdict(self.config)
