"""A word-level LSTM language model trained with truncated backpropagation, then sampled from."""
import torch
from torch import nn
import torch.nn.functional as F

CORPUS = ("the cat sat on the mat . the dog sat on the log . the cat saw the dog . "
          "the dog saw the cat on the mat . a cat and a dog sat on a log .").split()
VOCAB = sorted(set(CORPUS))
SEQ_LEN, BATCH = 5, 2


class WordLSTM(nn.Module):
    def __init__(self, vocab_size, emb=16, hidden=32, layers=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb)
        self.lstm = nn.LSTM(emb, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x, hidden):
        out, hidden = self.lstm(self.embedding(x), hidden)
        return self.fc(out), hidden

    def init_hidden(self, batch):
        weight = self.fc.weight
        return (weight.new_zeros(self.lstm.num_layers, batch, self.lstm.hidden_size),
                weight.new_zeros(self.lstm.num_layers, batch, self.lstm.hidden_size))


def build():
    torch.manual_seed(0)
    return WordLSTM(len(VOCAB))


def train(model, epochs=6):
    ids = torch.tensor([VOCAB.index(w) for w in CORPUS])
    n = (len(ids) - 1) // BATCH
    inputs, targets = ids[: n * BATCH].view(BATCH, n), ids[1 : n * BATCH + 1].view(BATCH, n)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
    losses = []
    for _ in range(epochs):
        model.train()
        hidden = model.init_hidden(BATCH)
        for i in range(0, n - SEQ_LEN + 1, SEQ_LEN):
            hidden = tuple(h.detach() for h in hidden)
            logits, hidden = model(inputs[:, i : i + SEQ_LEN], hidden)
            loss = criterion(logits.reshape(-1, len(VOCAB)), targets[:, i : i + SEQ_LEN].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
    return losses


def sample(model, start="the", length=8, temperature=0.8, top_k=5):
    model.eval()
    words, hidden = [start], model.init_hidden(1)
    x = torch.tensor([[VOCAB.index(start)]])
    with torch.no_grad():
        for _ in range(length):
            logits, hidden = model(x, hidden)
            probs = F.softmax(logits[0, -1] / temperature, dim=-1)
            top_probs, top_ids = torch.topk(probs, top_k)
            choice = top_ids[torch.multinomial(top_probs, num_samples=1)]
            words.append(VOCAB[choice.item()])
            x = choice.view(1, 1)
    return words


def decode(model):
    return sample(model, top_k=1)  # one candidate: the draw is the most likely word


def main():
    model = build()
    losses = train(model)
    print("losses:", [round(loss, 4) for loss in losses])
    print("greedy:", " ".join(decode(model)))
    torch.manual_seed(1)
    print("sampled:", " ".join(sample(model)))
    return losses, decode(model)


if __name__ == "__main__":
    main()
