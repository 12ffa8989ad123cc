"""A recurrent language model: token embedding, a stack of RNN, LSTM or GRU layers, a linear head.

    model = RNNLM(RNNLMConfig(vocab_size=65, cell="lstm", n_embd=64, hidden_size=256, n_layer=2))
    logits, loss = model(idx, targets)            # idx, targets: (B, T) int64
    out = model.generate(idx, max_new_tokens=100, temperature=0.8)

Training sees windows of ``block_size`` tokens, each starting from a zero
state; generation carries the state from token to token, so it needs no
window at all. Where the vocabulary is smaller than a batch's tokens (a
character-level model), the first layer reads the embedding table itself
(``RNNBase.forward_embedded``): each row is projected once instead of every
token, with the same results.
"""

from dataclasses import asdict, dataclass

import numpy as np

import tinylm
from tinylm import nn
from tinylm.kernels.threads import blas_threads_at_most
from tinylm.models.sampling import check_sampling, next_tokens
from tinylm.nn import functional as F
from tinylm.nn.layers.rnn import GRU, LSTM, RNN

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


@dataclass
class RNNLMConfig:
    vocab_size: int = 65
    cell: str = "lstm"  # rnn | lstm | gru
    n_embd: int = 64
    hidden_size: int = 256
    n_layer: int = 2
    dropout: float = 0.0
    block_size: int = 100  # the training window; generation is not limited by it

    def __post_init__(self):
        """Refuse settings no RNNLM can have, naming the field (a checkpoint's record may be hand-edited)."""
        if not isinstance(self.cell, str) or self.cell not in CELLS:
            raise ValueError(f"RNNLMConfig: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("vocab_size", "n_embd", "hidden_size", "n_layer", "block_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"RNNLMConfig: {name} must be a positive integer, got {value!r}")
        dropout = self.dropout
        is_number = isinstance(dropout, (int, float, np.integer, np.floating)) and not isinstance(dropout, bool)
        if not (is_number and 0 <= dropout < 1):
            raise ValueError(f"RNNLMConfig: dropout must be a number in [0, 1), got {dropout!r}")


class RNNLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        if config.cell not in CELLS:
            raise ValueError(f"RNNLM: cell must be one of {', '.join(CELLS)}, got {config.cell!r}")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.rnn = CELLS[config.cell](
            config.n_embd, config.hidden_size, num_layers=config.n_layer,
            dropout=config.dropout if config.n_layer > 1 else 0.0, batch_first=True,
        )  # fmt: skip
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def run(self, idx, state=None):
        """idx (B, T), and the state to start from (None: zeros) -> (logits (B, T, vocab), final state)."""
        if idx.ndim != 2:
            raise ValueError(f"RNNLM: idx must be (batch, time), got shape {tuple(idx.shape)}")
        if self._projects_the_table(idx):
            output, state = self.rnn.forward_embedded(self.embedding.weight, idx, state)
        else:
            output, state = self.rnn(self.drop(self.embedding(idx)), state)
        return self.head(self.drop(output)), state

    def _projects_the_table(self, idx):
        """Whether the first layer should project the embedding table rather than every
        token (``RNNBase.forward_embedded``): the same result, cheaper when the vocabulary
        is smaller than the batch's tokens; not with dropout on the embeddings."""
        dropped = self.training and self.drop.p > 0
        return not dropped and self.config.vocab_size < idx.shape[0] * idx.shape[1]

    def forward(self, idx, targets=None):
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None), from a zero state."""
        logits, _ = self.run(idx)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @tinylm.no_grad()
    @blas_threads_at_most(1)  # decoding is many tiny matmuls (see tinylm.kernels.threads)
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True):
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens, carrying the recurrent state.

        With ``use_cache=False`` the whole sequence is read again for every new
        token (the same tokens, more slowly): the recurrent state is this model's cache.
        """
        check_sampling(temperature, top_k, top_p)
        was_training = self.training
        self.eval()
        tokens = np.asarray(idx.numpy(), dtype=np.int64)
        logits, state = self.run(idx)
        for step in range(max_new_tokens):
            chosen = next_tokens(logits[:, -1, :], temperature, top_k, top_p)
            tokens = np.concatenate([tokens, chosen[:, None]], axis=1)
            if step == max_new_tokens - 1:
                break
            if use_cache:
                logits, state = self.run(tinylm.tensor(chosen[:, None], device=idx.device), state)
            else:
                logits, _ = self.run(tinylm.tensor(tokens, device=idx.device))
        self.train(was_training)
        return tinylm.tensor(tokens, device=idx.device)

    def config_dict(self):
        return asdict(self.config)
