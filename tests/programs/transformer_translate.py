"""A toy translator: nn.Transformer with source/target padding masks, a causal target mask, greedy decoding."""
import math

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

PAIRS = [("ich bin hier", "i am here"), ("du bist da", "you are there"), ("ich bin da", "i am there"),
         ("wir sind hier", "we are here"), ("du bist gut", "you are good"), ("wir sind gut", "we are good")]
PAD, BOS, EOS = 0, 1, 2
SRC_VOCAB = ["<pad>", "<bos>", "<eos>"] + sorted({w for s, _ in PAIRS for w in s.split()})
TGT_VOCAB = ["<pad>", "<bos>", "<eos>"] + sorted({w for _, t in PAIRS for w in t.split()})
D_MODEL = 32
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Translator(nn.Module):
    def __init__(self):
        super().__init__()
        self.src_embed = nn.Embedding(len(SRC_VOCAB), D_MODEL, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(len(TGT_VOCAB), D_MODEL, padding_idx=PAD)
        self.pos_embed = nn.Embedding(16, D_MODEL)
        self.transformer = nn.Transformer(D_MODEL, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                                          dim_feedforward=64, dropout=0.0, batch_first=True)
        self.out = nn.Linear(D_MODEL, len(TGT_VOCAB))

    def embed(self, embedding, tokens):
        positions = torch.arange(tokens.size(1), device=tokens.device).unsqueeze(0)
        return embedding(tokens) * math.sqrt(D_MODEL) + self.pos_embed(positions)

    def forward(self, src, tgt):
        tgt_mask = torch.triu(torch.ones(tgt.size(1), tgt.size(1), dtype=torch.bool, device=tgt.device), diagonal=1)
        src_pad, tgt_pad = src == PAD, tgt == PAD
        h = self.transformer(self.embed(self.src_embed, src), self.embed(self.tgt_embed, tgt), tgt_mask=tgt_mask,
                             src_key_padding_mask=src_pad, tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
        return self.out(h)


def encode(sentence, vocab):
    return torch.tensor([BOS] + [vocab.index(w) for w in sentence.split()] + [EOS])


class PairDataset(Dataset):
    def __len__(self):
        return len(PAIRS)

    def __getitem__(self, i):
        return encode(PAIRS[i][0], SRC_VOCAB)[1:], encode(PAIRS[i][1], TGT_VOCAB)


def collate(batch):
    src, tgt = zip(*batch)
    return pad_sequence(src, batch_first=True, padding_value=PAD), pad_sequence(tgt, batch_first=True, padding_value=PAD)


def build():
    torch.manual_seed(0)
    return Translator().to(device)


def train(model, epochs=5):
    loader = DataLoader(PairDataset(), batch_size=3, collate_fn=collate)
    criterion = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
    model.train()
    losses = []
    for _ in range(epochs):
        for src, tgt in loader:
            src, tgt = src.to(device), tgt.to(device)
            logits = model(src, tgt[:, :-1])
            loss = criterion(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    return losses


def translate(model, sentence, max_len=6):
    src = encode(sentence, SRC_VOCAB)[1:].unsqueeze(0).to(device)
    memory = model.transformer.encoder(model.embed(model.src_embed, src))
    ys = torch.tensor([[BOS]], device=device)
    for _ in range(max_len):
        mask = torch.triu(torch.ones(ys.size(1), ys.size(1), dtype=torch.bool, device=device), diagonal=1)
        h = model.transformer.decoder(model.embed(model.tgt_embed, ys), memory, tgt_mask=mask)
        next_word = model.out(h[:, -1]).argmax(dim=-1).item()
        ys = torch.cat([ys, torch.tensor([[next_word]], device=device)], dim=1)
        if next_word == EOS:
            break
    return [TGT_VOCAB[i] for i in ys[0, 1:].tolist()]


def decode(model):
    model.eval()
    with torch.no_grad():
        return [translate(model, s) for s, _ in PAIRS]


def main():
    model = build()
    losses = train(model)
    translations = decode(model)
    print("losses:", [round(loss, 4) for loss in losses])
    for (s, _), words in zip(PAIRS, translations):
        print(s, "->", " ".join(words))
    return losses, translations


if __name__ == "__main__":
    main()
