"""A small GPT trained from a DataLoader with CrossEntropyLoss, AdamW and a cosine LR schedule.

Training batches come in an order shuffled by Python's ``random`` (a ``torch.Generator`` draws other
numbers in tinylm than in PyTorch); the evaluation loader shuffles with a seeded ``torch.Generator``,
which the two may do differently, since a loss summed over every batch does not depend on their order."""
import random

import torch
import torch.nn as nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

TEXT = "hello world, hello there. the world says hello back to the one who says hello first. " * 2
CHARS = sorted(set(TEXT))
BLOCK, N_EMBD, N_HEAD, CHECKPOINT = 12, 32, 4, "gpt_best.pt"
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(N_EMBD), nn.LayerNorm(N_EMBD)
        self.qkv, self.proj = nn.Linear(N_EMBD, 3 * N_EMBD), nn.Linear(N_EMBD, N_EMBD)
        self.mlp = nn.Sequential(nn.Linear(N_EMBD, 4 * N_EMBD), nn.GELU(), nn.Linear(4 * N_EMBD, N_EMBD))
        self.register_buffer("bias", torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.qkv(self.ln1(x)).split(N_EMBD, dim=2)
        q, k, v = [t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) * (1.0 / (C // N_HEAD) ** 0.5)
        att = F.softmax(att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, n_layer=2):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, N_EMBD), nn.Embedding(BLOCK, N_EMBD)
        self.blocks = nn.ModuleList([Block() for _ in range(n_layer)])
        self.ln_f, self.lm_head = nn.LayerNorm(N_EMBD), nn.Linear(N_EMBD, vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build():
    torch.manual_seed(0)
    model = GPT(len(CHARS)).to(device)
    print(f"{sum(p.numel() for p in model.parameters())} parameters")
    return model


def make_dataset():
    data = torch.tensor([CHARS.index(ch) for ch in TEXT])
    starts = list(range(0, len(data) - BLOCK - 1, 5))
    random.Random(0).shuffle(starts)
    return TensorDataset(torch.stack([data[i : i + BLOCK] for i in starts]), torch.stack([data[i + 1 : i + BLOCK + 1] for i in starts]))


def train(model, epochs=2):
    dataset, best = make_dataset(), float("inf")
    loader = DataLoader(dataset, batch_size=8, shuffle=False, drop_last=True)
    criterion = nn.CrossEntropyLoss()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    losses = []
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = criterion(model(x).view(-1, len(CHARS)), y.view(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        model.eval()
        eval_loader = DataLoader(dataset, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            total = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="sum").item() for x, y in eval_loader)
        losses.append(total / (len(dataset) * BLOCK))
        if losses[-1] < best:
            best = losses[-1]
            torch.save({"model": model.state_dict(), "eval_loss": best}, CHECKPOINT)
    return losses


def decode(model, prompt="hel", steps=10):
    model.load_state_dict(torch.load(CHECKPOINT)["model"])
    model.eval()
    idx = torch.tensor([[CHARS.index(ch) for ch in prompt]], device=device)
    with torch.no_grad():
        for _ in range(steps):
            probs = F.softmax(model(idx[:, -BLOCK:])[:, -1, :], dim=-1)
            idx = torch.cat((idx, torch.argmax(probs, dim=-1, keepdim=True)), dim=1)
    return "".join(CHARS[i] for i in idx[0].tolist())


def main():
    model = build()
    losses = train(model)
    text = decode(model)
    print("losses:", [round(loss, 4) for loss in losses])
    print("decoded:", repr(text))
    return losses, text


if __name__ == "__main__":
    main()
