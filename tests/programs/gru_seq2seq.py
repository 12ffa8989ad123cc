"""A GRU encoder-decoder with Bahdanau attention, teacher forcing and greedy decoding."""
import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

PAIRS = [("un deux trois", "one two three"), ("deux trois", "two three"), ("trois un", "three one"),
         ("un un deux", "one one two"), ("deux", "two"), ("trois deux un", "three two one")]
PAD, SOS, EOS = 0, 1, 2
SRC = ["<pad>", "<sos>", "<eos>"] + sorted({w for s, _ in PAIRS for w in s.split()})
TGT = ["<pad>", "<sos>", "<eos>"] + sorted({w for _, t in PAIRS for w in t.split()})
HIDDEN, MAX_LEN, TEACHER_FORCING = 24, 5, 0.5


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.src_embedding = nn.Embedding(len(SRC), HIDDEN, padding_idx=PAD)
        self.encoder = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
        self.tgt_embedding = nn.Embedding(len(TGT), HIDDEN, padding_idx=PAD)
        self.Wa, self.Ua, self.Va = nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, 1)
        self.decoder = nn.GRU(2 * HIDDEN, HIDDEN, batch_first=True)
        self.out = nn.Linear(HIDDEN, len(TGT))

    def encode(self, src, lengths):
        packed = pack_padded_sequence(self.src_embedding(src), lengths, batch_first=True, enforce_sorted=False)
        outputs, hidden = self.encoder(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.size(1))
        return outputs, hidden

    def decode_step(self, token, hidden, keys, pad_mask):
        query = hidden.permute(1, 0, 2)  # (batch, 1, hidden)
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys))).squeeze(2).unsqueeze(1)
        weights = F.softmax(scores.masked_fill(pad_mask.unsqueeze(1), float("-inf")), dim=-1)
        context = torch.bmm(weights, keys)
        output, hidden = self.decoder(torch.cat((self.tgt_embedding(token), context), dim=2), hidden)
        return F.log_softmax(self.out(output.squeeze(1)), dim=-1), hidden


def tensors(sentences, vocab):
    return [torch.tensor([vocab.index(w) for w in s.split()] + [EOS]) for s in sentences]


def build():
    torch.manual_seed(0)
    return Seq2Seq()


def train(model, steps=15):
    rng = random.Random(0)
    src_list, tgt_list = tensors([s for s, _ in PAIRS], SRC), tensors([t for _, t in PAIRS], TGT)
    src, tgt = pad_sequence(src_list, batch_first=True), pad_sequence(tgt_list, batch_first=True)
    lengths = torch.tensor([len(s) for s in src_list])
    criterion = nn.NLLLoss(ignore_index=PAD)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
    losses = []
    model.train()
    for _ in range(steps):
        keys, hidden = model.encode(src, lengths)
        token, loss = torch.full((len(PAIRS), 1), SOS, dtype=torch.long), 0
        for t in range(tgt.size(1)):
            log_probs, hidden = model.decode_step(token, hidden, keys, src == PAD)
            loss = loss + criterion(log_probs, tgt[:, t])
            teacher = rng.random() < TEACHER_FORCING
            token = tgt[:, t].unsqueeze(1) if teacher else log_probs.topk(1)[1].detach()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item() / tgt.size(1))
        scheduler.step(losses[-1])
    return losses


def decode(model):
    model.eval()
    results = []
    with torch.no_grad():
        for (sentence, _), src in zip(PAIRS, tensors([s for s, _ in PAIRS], SRC)):
            keys, hidden = model.encode(src.unsqueeze(0), torch.tensor([len(src)]))
            token, words = torch.tensor([[SOS]]), []
            for _ in range(MAX_LEN):
                log_probs, hidden = model.decode_step(token, hidden, keys, torch.zeros(1, len(src), dtype=torch.bool))
                _, top = log_probs.topk(1)
                if top.item() == EOS:
                    break
                words.append(TGT[top.item()])
                token = top
            results.append(words)
    return results


def main():
    model = build()
    losses = train(model)
    translations = decode(model)
    print("losses:", [round(loss, 4) for loss in losses])
    for (sentence, _), words in zip(PAIRS, translations):
        print(sentence, "->", " ".join(words))
    return losses, translations


if __name__ == "__main__":
    main()
