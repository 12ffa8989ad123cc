"""A character-level Transformer language model with sinusoidal positions and a causal mask."""
import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F

TEXT = ("the quick brown fox jumps over the lazy dog. the dog sleeps and the fox runs. "
        "a quick fox is a happy fox, and a lazy dog is a sleepy dog.")
CHARS = sorted(set(TEXT))
STOI = {ch: i for i, ch in enumerate(CHARS)}
BLOCK, BATCH = 16, 4


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=64):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))

    def forward(self, x):
        return x + self.pe[:, : x.size(1)]


class CharTransformer(nn.Module):
    def __init__(self, vocab_size, d_model=32, nhead=4, num_layers=2):
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = PositionalEncoding(d_model)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx):
        n = idx.size(1)
        mask = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
        x = self.pos(self.embed(idx) * math.sqrt(self.d_model))
        return self.head(self.encoder(x, mask=mask))


def build():
    torch.manual_seed(0)
    return CharTransformer(len(CHARS))


def train(model, steps=12):
    random.seed(0)
    data = torch.tensor([STOI[ch] for ch in TEXT], dtype=torch.long)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    losses = []
    for _ in range(steps):
        starts = [random.randrange(len(data) - BLOCK - 1) for _ in range(BATCH)]
        x = torch.stack([data[i : i + BLOCK] for i in starts])
        y = torch.stack([data[i + 1 : i + BLOCK + 1] for i in starts])
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def decode(model, prompt="the ", new_chars=12):
    model.eval()
    idx = torch.tensor([[STOI[ch] for ch in prompt]])
    with torch.no_grad():
        for _ in range(new_chars):
            logits = model(idx[:, -BLOCK:])
            next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)
            idx = torch.cat([idx, next_id], dim=1)
    return "".join(CHARS[i] for i in idx[0].tolist())


def main():
    model = build()
    losses = train(model)
    text = decode(model)
    print("losses:", " ".join(f"{loss:.4f}" for loss in losses))
    print("decoded:", repr(text))
    return losses, text


if __name__ == "__main__":
    main()
