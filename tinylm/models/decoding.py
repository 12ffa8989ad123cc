"""Incremental decoding for ``GPT`` with a key/value cache, one fused kernel call per new position.

``GPT.forward`` with key/value caches computes the right thing for one new
token, but it goes through some 80 Tensor ops per token, and at the sizes of
a small GPT their Python overhead costs several times the arithmetic (17
matrix products of one row per token). ``GPTDecoder`` runs each new position
through the ``gpt_decode_step`` kernel instead (``tinylm.kernels.gpt_decode``:
NumPy reference, Numba, CUDA), which does all the layers in one call::

    decoder = GPTDecoder(model)
    logits = decoder.feed(prompt)        # prompt (B, T) int64 -> logits of its last position (B, vocab)
    logits = decoder.feed(next_ids)      # (B, 1): the position after those stored, and so on
    decoder.reset()                      # forget the stored positions (a new batch, or a restart)

It computes what ``GPT.forward`` computes in eval mode (no dropout) for the
last position, to rounding. Several positions at once (a prompt, or the kept
half of the context after a restart) go through the layers together instead,
as matrix products over the T rows and the layer-norm, attention-softmax and
GELU kernels: the same computation, since attention is causal, and faster
than one kernel call per position, for a restart's 32 positions and so for
sampling (measured: docs/performance.md, "Decoding several positions
together").

The decoder takes a copy of the model's parameters when it is built, laid
out for the kernel (matrices as (in, out), stacked over the layers): a
change to the model afterwards is not seen. ``GPT.generate`` builds a new one
on every call.
"""

import math

import numpy as np

from tinylm.backend import array_module, to_numpy
from tinylm.kernels.registry import kernel_for


class GPTDecoder:
    """Key/value storage for every layer of a ``GPT`` and the decoding of new positions.

    Storage: keys and values of shape (n_layer, B, n_head, block_size,
    head_size) in the model's dtype, allocated by the first ``feed`` of a batch
    (B is known only then) and written in place afterwards. ``len(decoder)`` is
    the number of positions stored, which is also the position of the next one.
    """

    def __init__(self, model):
        config = model.config
        transformer = model.transformer
        if config.n_layer < 1:
            raise ValueError(f"GPTDecoder: the model needs at least one layer, got n_layer={config.n_layer}")
        self.block_size = config.block_size
        self.n_head = config.n_head
        self.n_layer = config.n_layer
        self.head_size = config.n_embd // config.n_head
        wte = transformer.wte.weight.data  # (vocab, C), also the output layer (tied)
        self.vocab_size = wte.shape[0]
        self.dtype = wte.dtype
        self.xp = array_module(wte)
        from tinylm.kernels.gpt_decode import pack_gpt_weights  # imports Numba: when a decoder is made, not at import

        self.weights = pack_gpt_weights(
            self.xp, self.dtype, wte, transformer.wpe.weight.data,
            [_block_arrays(block) for block in transformer.h],
            (_data(transformer.ln_f.weight), _data(transformer.ln_f.bias)), _common_eps(model),
        )  # fmt: skip
        self.approximate = transformer.h[0].mlp.gelu.approximate
        # looked up once: every array is on one device
        self._step = kernel_for("gpt_decode_step", wte)
        self._layer_norm = kernel_for("layernorm_forward", wte)
        self._softmax = kernel_for("attention_softmax_forward", wte)
        self._gelu = kernel_for("gelu_forward", wte)
        self._keys = self._values = None  # (L, B, nh, block_size, hs), from the first feed
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
        if self._keys is not None and self._keys.shape[1] == batch:
            return
        layout = (self.n_layer, batch, self.n_head, self.block_size, self.head_size)
        self._keys = self.xp.empty(layout, self.dtype)
        self._values = self.xp.empty(layout, self.dtype)

    def _check(self, idx):
        """``idx`` as an int64 NumPy array, after checking its shape and ids."""
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
        if self.length and batch != self._keys.shape[1]:
            raise ValueError(
                f"GPTDecoder.feed: the decoder stores {self._keys.shape[1]} sequences, got a batch of "
                f"{batch}; reset() it for a new batch"
            )
        idx = np.asarray(to_numpy(idx), dtype=np.int64)  # CuPy ids come to the host
        low, high = int(idx.min()), int(idx.max())
        if low < 0 or high >= self.vocab_size:
            bad = low if low < 0 else high
            raise IndexError(f"GPTDecoder.feed: token id {bad} is outside [0, {self.vocab_size})")
        return idx

    def feed(self, idx):
        """idx (B, T) int64: the T positions after those stored -> logits of the last one, (B, vocab).

        The keys and values of the T positions are stored; position i attends
        to every stored position and to itself.
        """
        idx = self._check(idx)
        batch, length = idx.shape
        if self.length == 0:
            self._storage_for(batch)
        if length > 1:
            logits = self._feed_together(self.xp.asarray(idx))
        else:
            tokens = self.xp.asarray(np.ascontiguousarray(idx[:, 0]))
            logits = self._step(tokens, self.length, self.weights, self._keys, self._values, self.n_head,
                                self.approximate)  # fmt: skip
        self.length += length
        return logits

    def _feed_together(self, idx):
        """The T positions of ``idx`` (B, T) after the ``self.length`` stored, through every layer at
        once (rows are (batch, position) pairs) -> logits of the last one, (B, vocab)."""
        w, xp = self.weights, self.xp
        batch, length = idx.shape
        start, stop = self.length, self.length + length
        width, n_head, head = w.wte.shape[1], self.n_head, self.head_size

        def heads(rows):  # (B*T, C) -> (B, nh, T, hs)
            return rows.reshape(batch, length, n_head, head).transpose(0, 2, 1, 3)

        x = (w.wte[idx] + w.wpe[start:stop]).reshape(batch * length, width)
        for layer in range(self.n_layer):
            ln_1_w, ln_1_b, ln_2_w, ln_2_b = w.norms[layer]
            qkv = self._layer_norm(x, ln_1_w, ln_1_b, w.eps)[0] @ w.attn_w[layer] + w.attn_b[layer]
            self._keys[layer, :, :, start:stop] = heads(qkv[:, width : 2 * width])
            self._values[layer, :, :, start:stop] = heads(qkv[:, 2 * width :])
            keys, values = self._keys[layer, :, :, :stop], self._values[layer, :, :, :stop]  # (B, nh, S, hs)
            scores = heads(qkv[:, :width]) @ keys.transpose(0, 1, 3, 2)  # (B, nh, T, S)
            probs = self._softmax(scores, 1.0 / math.sqrt(head), True)  # queries at the last T keys
            y = (probs @ values).transpose(0, 2, 1, 3).reshape(batch * length, width)
            x = x + (y @ w.proj_w[layer] + w.proj_b[layer])
            hidden = self._layer_norm(x, ln_2_w, ln_2_b, w.eps)[0] @ w.fc_w[layer] + w.fc_b[layer]
            x = x + (self._gelu(hidden, self.approximate) @ w.mlp_proj_w[layer] + w.mlp_proj_b[layer])
        last = xp.ascontiguousarray(x.reshape(batch, length, width)[:, -1])
        return self._layer_norm(last, w.final_norm[0], w.final_norm[1], w.eps)[0] @ w.wte.T


def _data(parameter):
    """The array of a parameter, or None for an absent one (``bias=False``)."""
    return None if parameter is None else parameter.data


def _common_eps(model):
    """The layer norms' epsilon, which the kernel takes once for all of them."""
    norms = [model.transformer.ln_f] + [n for block in model.transformer.h for n in (block.ln_1, block.ln_2)]
    values = {norm.eps for norm in norms}
    if len(values) != 1:
        raise ValueError(f"GPTDecoder: the layer norms must share one eps, got {sorted(values)}")
    return values.pop()


def _block_arrays(block):
    """One ``Block``'s arrays under the names ``pack_gpt_weights`` takes (weights (out, in) as in the model)."""
    attn, mlp = block.attn, block.mlp
    return {
        "ln_1_w": _data(block.ln_1.weight), "ln_1_b": _data(block.ln_1.bias),
        "attn_w": attn.c_attn.weight.data, "attn_b": _data(attn.c_attn.bias),
        "proj_w": attn.c_proj.weight.data, "proj_b": _data(attn.c_proj.bias),
        "ln_2_w": _data(block.ln_2.weight), "ln_2_b": _data(block.ln_2.bias),
        "fc_w": mlp.c_fc.weight.data, "fc_b": _data(mlp.c_fc.bias),
        "mlp_proj_w": mlp.c_proj.weight.data, "mlp_proj_b": _data(mlp.c_proj.bias),
    }  # fmt: skip
