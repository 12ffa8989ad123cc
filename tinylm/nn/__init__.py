"""Layers, with PyTorch's names, arguments, parameter names and initialisation.

``tinylm.nn.functional`` has the same layers as functions, and the losses;
``tinylm.nn.init`` the initialisers; ``tinylm.nn.utils.clip_grad_norm_`` clips
gradients and ``tinylm.nn.utils.rnn`` pads and packs batches of sequences of
different lengths for ``RNN``, ``LSTM`` and ``GRU``. PyTorch names that tinylm
does not have (``DataParallel``...) raise ``NotInTinylmError`` saying so.
"""

from tinylm.errors import refusing_getattr

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

_ONE_PROCESS = "tinylm trains in one process on one device; use the model itself (drop the wrapper)"

# Well-known PyTorch names that tinylm.nn does not provide, and why.
NOT_IN_TINYLM = {
    "DataParallel": _ONE_PROCESS,
    "DistributedDataParallel": _ONE_PROCESS,
    "parallel": _ONE_PROCESS,
    "SyncBatchNorm": "there is no batch normalisation across processes (tinylm trains in one process); "
    "language models here use LayerNorm",
}

__getattr__ = refusing_getattr(__name__, "torch.nn", NOT_IN_TINYLM)
