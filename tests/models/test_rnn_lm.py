"""RNNLM: its first layer reads the embedding table's rows by id where that is cheaper,
with the same results as looking the embeddings up first."""

from unittest import mock

import numpy as np
import pytest

import tinylm
from tinylm.models.rnn_lm import RNNLM, RNNLMConfig


def _model(cell, dropout=0.0, vocab_size=7):
    tinylm.manual_seed(3)
    config = RNNLMConfig(vocab_size=vocab_size, cell=cell, n_embd=5, hidden_size=4, n_layer=2, dropout=dropout)
    return RNNLM(config).double()


def _ids(batch, length, vocab_size=7, seed=0):
    return tinylm.tensor(np.random.default_rng(seed).integers(0, vocab_size, (batch, length + 1)))


def _loss_and_grads(model, ids, through_table):
    model.zero_grad()
    with mock.patch.object(RNNLM, "_projects_the_table", lambda self, idx: through_table):
        logits, loss = model(ids[:, :-1], ids[:, 1:])
    loss.backward()
    return [logits.numpy(), loss.numpy()] + [p.grad.numpy() for p in model.parameters()]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_reading_the_table_gives_the_same_logits_loss_and_gradients(cell):
    model, ids = _model(cell), _ids(4, 6)
    through_table = _loss_and_grads(model, ids, True)
    looked_up = _loss_and_grads(model, ids, False)
    assert len(through_table) == 2 + len(list(model.parameters()))
    for got, want in zip(through_table, looked_up):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def _reads_the_table(model, ids):
    with mock.patch.object(model.rnn, "forward_embedded", wraps=model.rnn.forward_embedded) as spy:
        model(ids)
    return spy.called


def test_the_table_is_read_when_the_vocabulary_is_smaller_than_the_batch_and_nothing_drops_the_embeddings():
    ids = _ids(3, 4)[:, :-1]  # 12 tokens, 7 ids in the vocabulary
    assert _reads_the_table(_model("lstm"), ids)
    assert not _reads_the_table(_model("lstm"), ids[:1, :4])  # 4 tokens: fewer than the vocabulary
    assert not _reads_the_table(_model("lstm", vocab_size=40), _ids(3, 4, vocab_size=40)[:, :-1])
    with_dropout = _model("lstm", dropout=0.2)
    assert not _reads_the_table(with_dropout, ids)  # training: dropout on the embeddings
    with_dropout.eval()
    assert _reads_the_table(with_dropout, ids)
