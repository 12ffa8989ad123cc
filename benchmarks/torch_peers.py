"""The PyTorch models that ``compare.py`` times beside tinylm's, written plainly.

Each mirrors its tinylm counterpart layer for layer (same shapes, same
initialisation scale, no fused or compiled paths beyond what eager PyTorch does
by itself): a nanoGPT-style GPT with a hand-written key/value cache for
sampling, and an embedding -> LSTM/GRU -> linear language model.
Imported only when torch is installed.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x, cache=None):
        """x (B, T, C); ``cache``: a dict holding the keys and values of earlier positions (or None)."""
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if cache is not None and t == 1:
            y = F.scaled_dot_product_attention(q, k, v)  # one new query sees every cached key
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=False)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, bias=False)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


def _normal_init(module):
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        # nanoGPT's initialisation draw for draw, so that a seed gives nanoGPT's own initial weights
        # (nanogpt_reference.py): each Linear and Embedding from N(0, 0.02) in apply()'s order, the
        # tied matrix twice (as the embedding, then as the output layer), then the residual
        # projections again with std 0.02 / sqrt(2 * n_layer).
        self.apply(_normal_init)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx, targets=None, caches=None):
        start = caches[0]["k"].shape[2] if caches and "k" in caches[0] else 0
        positions = torch.arange(start, start + idx.shape[1])
        x = self.wte(idx) + self.wpe(positions)
        for i, block in enumerate(self.h):
            x = block(x, caches[i] if caches else None)
        logits = self.lm_head(self.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, use_cache=True):
        """Sample with the same context rule as tinylm's GPT: when the context is full, restart
        from its last block_size // 2 tokens (re-reading them once with the cache)."""
        tokens, start = idx, 0
        caches = [{} for _ in self.h] if use_cache else None
        fed = 0
        for _ in range(max_new_tokens):
            if tokens.shape[1] - start > self.block_size:
                start = tokens.shape[1] - self.block_size // 2
                if caches:
                    caches = [{} for _ in self.h]
                    fed = start
            if caches:
                logits, _ = self(tokens[:, fed:], caches=caches)
                fed = tokens.shape[1]
            else:
                logits, _ = self(tokens[:, start:])
            probs = F.softmax(logits[:, -1, :], dim=-1)
            tokens = torch.cat([tokens, torch.multinomial(probs, 1)], dim=1)
        return tokens


class RecurrentLM(nn.Module):
    def __init__(self, cell, vocab_size, n_embd, hidden_size, n_layer):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](n_embd, hidden_size, num_layers=n_layer, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, idx, targets=None):
        output, _ = self.rnn(self.embedding(idx))
        logits = self.head(output)
        loss = None if targets is None else F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
