"""Layers, with PyTorch's names, arguments, parameter names and initialisation.

``tinylm.nn.functional`` has the same layers as functions, and the losses;
``tinylm.nn.init`` the initialisers; ``tinylm.nn.utils.clip_grad_norm_`` clips
gradients and ``tinylm.nn.utils.rnn`` pads and packs batches of sequences of
different lengths for ``RNN``, ``LSTM`` and ``GRU``.
"""

from tinylm.nn import functional, init, utils
from tinylm.nn.containers import ModuleDict, ModuleList, Sequential
from tinylm.nn.layers.activation import GELU, Dropout, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from tinylm.nn.layers.attention import KVCache, MultiheadAttention
from tinylm.nn.layers.embedding import Embedding
from tinylm.nn.layers.linear import Identity, Linear
from tinylm.nn.layers.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from tinylm.nn.layers.normalization import LayerNorm
from tinylm.nn.layers.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from tinylm.nn.layers.rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell
from tinylm.nn.layers.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
from tinylm.nn.module import Module, Parameter
