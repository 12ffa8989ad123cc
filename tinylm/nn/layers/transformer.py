"""The Transformer of "Attention Is All You Need", with PyTorch's modules, names and semantics.

``TransformerEncoderLayer``: self-attention then a feed-forward block, each
wrapped in a residual connection and a layer norm, after the sum (post-norm,
the paper's) or, with ``norm_first=True``, before the block (pre-norm, GPT's)::

    post-norm:  x = norm1(x + sa(x));        x = norm2(x + ff(x))
    pre-norm:   x = x + sa(norm1(x));        x = x + ff(norm2(x))

with ``ff(x) = dropout2(linear2(dropout(activation(linear1(x)))))`` and
``sa(x) = dropout1(self_attn(x, x, x))``. ``TransformerDecoderLayer`` adds a
cross-attention block (``multihead_attn``, queries from the target, keys and
values from the encoder's output ``memory``) between the two. The stacks
``TransformerEncoder`` / ``TransformerDecoder`` hold deep copies of one layer
(``layers.0.self_attn.in_proj_weight``, ...) and an optional final norm;
``Transformer`` is an encoder and a decoder, each with a final LayerNorm.

Masks are those of :class:`MultiheadAttention` (boolean True = may *not*
attend, float = added). The ``*_is_causal`` flags apply the causal mask (a
query sees the keys up to its own position), with or without an explicit mask;
PyTorch treats them as hints that the given mask is causal, which gives the same
result when the hint is true.
"""

import copy
import numbers

from tinylm import backend
from tinylm.nn import functional as F
from tinylm.nn import init
from tinylm.nn.containers import ModuleList
from tinylm.nn.layers.activation import Dropout
from tinylm.nn.layers.attention import MultiheadAttention
from tinylm.nn.layers.linear import Linear
from tinylm.nn.layers.normalization import LayerNorm
from tinylm.nn.module import Module
from tinylm.tensor import Tensor

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _activation(name, activation):
    if isinstance(activation, str):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"{name}: activation must be 'relu', 'gelu' or a callable, got {activation!r}")
        return _ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError(f"{name}: activation must be 'relu', 'gelu' or a callable, got {type(activation).__name__}")
    return activation


def _check_input(name, label, x, d_model, batch_first):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: {label} must be a Tensor, got {type(x).__name__}")
    if x.ndim not in (2, 3) or x.shape[-1] != d_model:
        layout = "(N, T, d_model)" if batch_first else "(T, N, d_model)"
        raise ValueError(
            f"{name}: expected {label} of shape {layout} or (T, d_model) with d_model={d_model}, got {tuple(x.shape)}"
        )


def _check_pair(name, labels, first, second, d_model, batch_first):
    """Both inputs of a decoder (tgt and memory) or a Transformer (src and tgt): each a valid input, both
    batched or both unbatched, and of one batch size."""
    _check_input(name, labels[0], first, d_model, batch_first)
    _check_input(name, labels[1], second, d_model, batch_first)
    pair = f"{labels[0]} and {labels[1]}"
    if first.ndim != second.ndim:
        raise ValueError(
            f"{name}: {pair} must both be batched or both unbatched, got shapes {tuple(first.shape)} and "
            f"{tuple(second.shape)}"
        )
    batch_axis = 0 if batch_first else 1
    if first.ndim == 3 and first.shape[batch_axis] != second.shape[batch_axis]:
        raise ValueError(
            f"{name}: {pair} must have the same batch size (dimension {batch_axis}), got shapes "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )


class TransformerEncoderLayer(Module):
    """Self-attention and feed-forward, as ``torch.nn.TransformerEncoderLayer``.

    ``src`` is (T, N, d_model), (N, T, d_model) with ``batch_first``, or
    (T, d_model); the output has its shape. ``activation``: "relu", "gelu" or
    a function of a tensor.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, dtype=None, device=None):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation("TransformerEncoderLayer", activation)
        self.d_model, self.batch_first = d_model, batch_first

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        _check_input("TransformerEncoderLayer", "src", src, self.d_model, self.batch_first)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return _self_attention(self.self_attn, self.dropout1, x, attn_mask, key_padding_mask, is_causal)

    def _ff_block(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerDecoderLayer(Module):
    """Self-attention, cross-attention over ``memory`` and feed-forward, as ``torch.nn.TransformerDecoderLayer``.

    ``tgt`` (T, N, d_model) and ``memory`` (S, N, d_model), batch first with
    ``batch_first``, or unbatched (T, d_model) and (S, d_model).
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, dtype=None, device=None):
        super().__init__()
        kw = dict(dtype=dtype, device=device)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, **kw)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                                 **kw)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **kw)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **kw)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation("TransformerDecoderLayer", activation)
        self.d_model, self.batch_first = d_model, batch_first

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        _check_pair("TransformerDecoderLayer", ("tgt", "memory"), tgt, memory, self.d_model, self.batch_first)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return _self_attention(self.self_attn, self.dropout1, x, attn_mask, key_padding_mask, is_causal)

    def _mha_block(self, x, memory, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, memory, memory, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=bool(is_causal))[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))


def _self_attention(attention, dropout, x, attn_mask, key_padding_mask, is_causal):
    """The self-attention block both layers share: ``dropout(attention(x, x, x))`` with the masks."""
    out = attention(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                    is_causal=bool(is_causal))[0]
    return dropout(out)


def _check_count(name, label, count):
    if isinstance(count, bool) or not isinstance(count, numbers.Integral):
        raise TypeError(f"{name}: {label} must be an integer, got {type(count).__name__}")
    if count < 1:
        raise ValueError(f"{name}: {label} must be at least 1, got {count}")


def _clones(name, layer, num_layers):
    if not isinstance(layer, Module):
        raise TypeError(f"{name}: expected a layer Module to copy, got {type(layer).__name__}")
    _check_count(name, "num_layers", num_layers)
    return ModuleList(copy.deepcopy(layer) for _ in range(num_layers))


class TransformerEncoder(Module):
    """``num_layers`` (at least 1) deep copies of ``encoder_layer`` applied in turn, then ``norm`` if given.

    ``src`` is checked here, so a wrong shape is reported by the stack (not by its first layer) when the
    layer has a ``d_model`` (as ``TransformerEncoderLayer`` does).
    """

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        # enable_nested_tensor and mask_check only choose PyTorch's fast path for padded batches
        # (nested tensors); tinylm has none, so they are accepted and change nothing.
        super().__init__()
        self.layers = _clones("TransformerEncoder", encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.d_model = getattr(encoder_layer, "d_model", None)
        self.batch_first = getattr(encoder_layer, "batch_first", False)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        if self.d_model is not None:
            _check_input("TransformerEncoder", "src", src, self.d_model, self.batch_first)
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        if self.norm is not None:
            output = self.norm(output)
        return output


class TransformerDecoder(Module):
    """``num_layers`` (at least 1) deep copies of ``decoder_layer`` applied in turn (each attending to
    ``memory``), then ``norm`` if given. ``tgt`` and ``memory`` are checked by the stack, as in
    :class:`TransformerEncoder`."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones("TransformerDecoder", decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.d_model = getattr(decoder_layer, "d_model", None)
        self.batch_first = getattr(decoder_layer, "batch_first", False)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        if self.d_model is not None:
            _check_pair("TransformerDecoder", ("tgt", "memory"), tgt, memory, self.d_model, self.batch_first)
        output = tgt
        for layer in self.layers:
            output = layer(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                           tgt_key_padding_mask=tgt_key_padding_mask,
                           memory_key_padding_mask=memory_key_padding_mask,
                           tgt_is_causal=bool(tgt_is_causal), memory_is_causal=bool(memory_is_causal))
        if self.norm is not None:
            output = self.norm(output)
        return output


class Transformer(Module):
    """An encoder-decoder Transformer, as ``torch.nn.Transformer``.

    ``forward(src, tgt)``: src (S, N, d_model) and tgt (T, N, d_model) (batch
    first with ``batch_first``, or unbatched (S, d_model) and (T, d_model)) ->
    (T, N, d_model). Every parameter of two or more dimensions is initialised
    Xavier-uniform, as PyTorch does. For a decoder that must not look ahead, pass
    ``tgt_mask=Transformer.generate_square_subsequent_mask(T)`` (or
    ``tgt_is_causal=True``).
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation="relu", custom_encoder=None, custom_decoder=None, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, dtype=None, device=None):
        super().__init__()
        if custom_encoder is None:
            _check_count("Transformer", "num_encoder_layers", num_encoder_layers)
        if custom_decoder is None:
            _check_count("Transformer", "num_decoder_layers", num_decoder_layers)
        kw = dict(dtype=dtype, device=device)
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first,
                      bias)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(*layer_args, **kw)
            self.encoder = TransformerEncoder(layer, num_encoder_layers,
                                              LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(*layer_args, **kw)
            self.decoder = TransformerDecoder(layer, num_decoder_layers,
                                              LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw))
        self._reset_parameters()
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first

    def _reset_parameters(self):
        for parameter in self.parameters():
            if parameter.ndim > 1:
                init.xavier_uniform_(parameter)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        _check_pair("Transformer", ("src", "tgt"), src, tgt, self.d_model, self.batch_first)
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz, device=None, dtype=None):
        """A (sz, sz) float mask: -inf above the diagonal (the future), 0 on and below it."""
        dtype = backend.DEFAULT_FLOAT if dtype is None else dtype
        xp = backend.xp_for(backend.normalize_device(device))
        future = xp.arange(sz)[None, :] > xp.arange(sz)[:, None]
        return Tensor(xp.where(future, -xp.inf, 0.0).astype(dtype))
