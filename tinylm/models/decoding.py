"""Incremental decoding for ``GPT`` straight on the parameter arrays: no Tensor, no autograd.

``GPT.forward`` with key/value caches computes the right thing for one new
token, but it goes through some 80 Tensor ops per token (``Function.apply``,
``Module.__call__``, attribute look-ups), and at the sizes of a small GPT that
Python overhead costs several times the arithmetic itself (17 matrix products
of one row per token). ``GPTDecoder`` does the same arithmetic on the arrays::

    decoder = GPTDecoder(model)
    logits = decoder.feed(prompt)        # prompt (B, T) int64 -> logits of its last position (B, vocab)
    logits = decoder.feed(next_ids)      # (B, 1): the position after those stored, and so on
    decoder.reset()                      # forget the stored positions (a new batch, or a restart)

It computes what ``GPT.forward`` computes in eval mode (no dropout), with the
same kernels (layer norm, GELU, the attention softmax) and the same matrix
products (``x @ W.T`` on 2-D rows), so the two agree to rounding. Only the
last position's logits are returned: they are all that sampling needs, and
``ln_f`` and the output layer then run on one row per sequence.

The decoder keeps references to the model's parameter arrays (no copies),
taken when it is built: build a new one after the model's parameters are
replaced (``model.to(...)``, a different device) rather than reusing it.
"""

import math

from tinylm.backend import array_module
from tinylm.kernels.registry import kernel_for


class GPTDecoder:
    """Key/value storage for every layer of a ``GPT`` and the forward pass of new positions.

    Storage: per layer, keys and values of shape (B, n_head, block_size,
    head_size) in the model's dtype, allocated by the first ``feed`` of a batch
    (B is known only then) and written in place afterwards. ``len(decoder)`` is
    the number of positions stored, which is also the position of the next one.
    """

    def __init__(self, model):
        config = model.config
        transformer = model.transformer
        self.block_size = config.block_size
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.head_size = config.n_embd // config.n_head
        self.wte = transformer.wte.weight.data  # (vocab, C), also the output layer (tied)
        self.wpe = transformer.wpe.weight.data  # (block_size, C)
        self.vocab_size = self.wte.shape[0]
        self.dtype = self.wte.dtype
        self.xp = array_module(self.wte)
        # The kernels are looked up once: kernel_for costs an import and a
        # dictionary look-up per call, and every array here lives on one device.
        self._layernorm = kernel_for("layernorm_forward", self.wte)
        self._gelu = kernel_for("gelu_forward", self.wte)
        self._softmax = kernel_for("attention_softmax_forward", self.wte)
        # The scale as the attention op applies it: 1 / sqrt(head_size), cast by the kernel.
        self._scale = 1.0 / math.sqrt(self.head_size)
        # One flat tuple of arrays per block, so that a step does no attribute look-ups.
        # Weights are kept transposed, (in, out) views, not copies: x @ W.T as nn.Linear does.
        self._layers = tuple(_block_arrays(block, self.xp, self.dtype) for block in transformer.h)
        self._ln_f = _layernorm_arrays(transformer.ln_f, self.xp, self.dtype)
        self._wte_t = self.wte.T  # (C, vocab)
        self._keys = self._values = None  # per layer (B, nh, block_size, hs), from the first feed
        self.length = 0

    def reset(self):
        """Forget every stored position; the storage is kept for the next batch of the same size."""
        self.length = 0

    def __len__(self):
        return self.length

    def __repr__(self):
        return f"GPTDecoder(length={self.length}, block_size={self.block_size})"

    def _storage_for(self, batch):
        """Allocate the key/value storage for ``batch`` sequences unless it is there already."""
        if self._keys is not None and self._keys[0].shape[0] == batch:
            return
        layout = (batch, self.n_head, self.block_size, self.head_size)
        xp = self.xp
        self._keys = tuple(xp.empty(layout, self.dtype) for _ in self._layers)
        self._values = tuple(xp.empty(layout, self.dtype) for _ in self._layers)

    def _check(self, idx):
        """``idx`` as an int64 array on the model's device, after checking its shape and ids."""
        if getattr(idx, "ndim", None) != 2 or idx.shape[1] < 1:
            raise ValueError(
                f"GPTDecoder.feed: idx must be an integer array (batch, time) with time >= 1, "
                f"got shape {getattr(idx, 'shape', type(idx).__name__)}"
            )
        if idx.dtype.kind not in "iu":
            raise TypeError(f"GPTDecoder.feed: idx must hold integer token ids, got {idx.dtype}")
        batch, length = idx.shape
        if self.length + length > self.block_size:
            raise ValueError(
                f"GPTDecoder.feed: {self.length} stored + {length} new = {self.length + length} positions "
                f"exceed the block size {self.block_size} (reset() the decoder first)"
            )
        if self.length and batch != self._keys[0].shape[0]:
            raise ValueError(
                f"GPTDecoder.feed: the decoder stores {self._keys[0].shape[0]} sequences, got a batch of "
                f"{batch}; reset() it for a new batch"
            )
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= self.vocab_size:
            bad = low if low < 0 else high
            raise IndexError(f"GPTDecoder.feed: token id {bad} is outside [0, {self.vocab_size})")
        return self.xp.asarray(idx, dtype="int64")

    def feed(self, idx):
        """idx (B, T) int64: the T positions after those stored -> logits of the last one, (B, vocab).

        The keys and values of the T positions are stored; query i of the T
        attends to every stored position and to new positions up to itself.
        """
        idx = self._check(idx)
        batch, length = idx.shape
        start, stop = self.length, self.length + length
        if start == 0:
            self._storage_for(batch)
        rows = batch * length
        width, n_head, head = self.n_embd, self.n_head, self.head_size
        layernorm, gelu, softmax, scale = self._layernorm, self._gelu, self._softmax, self._scale

        # x: (B*T, C), one row per position, the residual stream updated in place.
        x = (self.wte[idx] + self.wpe[start:stop]).reshape(rows, width)
        for (ln1_w, ln1_b, ln1_eps, attn_w, attn_b, attn_proj_w, attn_proj_b,
             ln2_w, ln2_b, ln2_eps, fc_w, fc_b, approximate, mlp_proj_w, mlp_proj_b), keys, values in zip(
                self._layers, self._keys, self._values):
            # attention: q, k, v of the new positions, each (B, nh, T, hs) as views of qkv
            h = layernorm(x, ln1_w, ln1_b, ln1_eps)[0]
            qkv = h @ attn_w
            if attn_b is not None:
                qkv += attn_b
            qkv = qkv.reshape(batch, length, 3, n_head, head)
            q = qkv[:, :, 0].transpose(0, 2, 1, 3)
            keys[:, :, start:stop] = qkv[:, :, 1].transpose(0, 2, 1, 3)
            values[:, :, start:stop] = qkv[:, :, 2].transpose(0, 2, 1, 3)
            scores = q @ keys[:, :, :stop].transpose(0, 1, 3, 2)  # (B, nh, T, stop)
            # query i sits at position start + i and sees keys 0 .. start + i
            probs = softmax(scores, scale, True, start)
            y = (probs @ values[:, :, :stop]).transpose(0, 2, 1, 3).reshape(rows, width)  # heads side by side
            y = y @ attn_proj_w
            if attn_proj_b is not None:
                y += attn_proj_b
            x += y
            # MLP
            h = layernorm(x, ln2_w, ln2_b, ln2_eps)[0] @ fc_w
            if fc_b is not None:
                h += fc_b
            h = gelu(h, approximate) @ mlp_proj_w
            if mlp_proj_b is not None:
                h += mlp_proj_b
            x += h
        self.length = stop

        last = x.reshape(batch, length, width)[:, -1]  # (B, C): only its logits are wanted
        ln_w, ln_b, ln_eps = self._ln_f
        return layernorm(last, ln_w, ln_b, ln_eps)[0] @ self._wte_t


def _data(parameter):
    """The array of a parameter, or None for an absent one (``bias=False``)."""
    return None if parameter is None else parameter.data


def _layernorm_arrays(norm, xp, dtype):
    """``(weight, bias, eps)`` of a ``LayerNorm`` over the last axis, for the layer-norm kernel.

    The kernel stands in ones for a missing weight and zeros for a missing bias
    (``bias=False``), allocating them on every call; made once here instead,
    they give the same result bit for bit (x * 1 + 0 is x).
    """
    (width,) = norm.normalized_shape
    weight = xp.ones(width, dtype) if norm.weight is None else norm.weight.data
    bias = xp.zeros(width, dtype) if norm.bias is None else norm.bias.data
    return weight, bias, norm.eps


def _block_arrays(block, xp, dtype):
    """The arrays (weights transposed) and settings of one ``Block``, in the order ``feed`` unpacks them."""
    attn, mlp = block.attn, block.mlp
    return (
        *_layernorm_arrays(block.ln_1, xp, dtype),
        attn.c_attn.weight.data.T, _data(attn.c_attn.bias),
        attn.c_proj.weight.data.T, _data(attn.c_proj.bias),
        *_layernorm_arrays(block.ln_2, xp, dtype),
        mlp.c_fc.weight.data.T, _data(mlp.c_fc.bias),
        mlp.gelu.approximate,
        mlp.c_proj.weight.data.T, _data(mlp.c_proj.bias),
    )
