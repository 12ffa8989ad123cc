"""``MultiheadAttention`` (PyTorch's layout and semantics) and ``KVCache`` for incremental decoding.

The layer projects queries, keys and values with one packed weight
``in_proj_weight`` (3E, E) (rows: query, key, value), splits them into
``num_heads`` heads of ``E / num_heads`` features, runs the fused
scaled-dot-product attention op on all heads at once, and mixes the heads back
with ``out_proj``. Its state dict is PyTorch's (``in_proj_weight``,
``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``).
"""

import numpy as np

from tinylm import ops
from tinylm.backend import array_module
from tinylm.nn import functional as F
from tinylm.nn import init
from tinylm.nn.layers.linear import Linear, new_parameter
from tinylm.nn.module import Module
from tinylm.ops.fused.attention import scaled_dot_product_attention
from tinylm.tensor import Tensor, is_grad_enabled, wrap


class KVCache:
    """The keys and values that one self-attention layer has computed so far.

    Decoding one token at a time, a layer need not project the whole prefix
    again: it projects the new positions only, appends their keys and values
    here, and attends over everything stored. A model makes one cache per
    attention layer and passes each to its layer::

        caches = [KVCache(max_length=block_size) for _ in range(n_layer)]
        # inside block i:  attn(x, x, x, is_causal=True, need_weights=False, cache=caches[i])
        logits = model(prompt, caches=caches)          # fills positions 0 .. T-1
        logits = model(next_token, caches=caches)      # position T, and so on

    ``length`` is the number of positions stored, which is also the position of
    the next one (the ``offset`` to give a positional encoding). Every sequence
    of the batch has the same length. Storage, (batch, heads, max_length,
    head_dim), is allocated at the first ``update`` and then written in place;
    appending beyond ``max_length`` raises a ValueError. ``reset()`` empties the
    cache for a new batch.

    Gradients: the stored positions are constants. When gradients are recorded,
    ``update`` returns the stored keys joined to the new ones so that gradients
    reach the new positions' keys and values; otherwise it returns views of the
    storage (shared memory: do not keep them across a ``reset``).
    """

    def __init__(self, max_length):
        if int(max_length) < 1:
            raise ValueError(f"KVCache: max_length must be at least 1, got {max_length}")
        self.max_length = int(max_length)
        self._keys = self._values = None  # storage, allocated by the first update()
        self.reset()

    def reset(self):
        """Forget every stored position (the storage is kept for the next batch if it fits)."""
        self.length = 0

    def __len__(self):
        return self.length

    @property
    def keys(self):
        """The stored keys, (batch, heads, length, head_dim), or None before the first update."""
        return None if self._keys is None else wrap(self._keys[:, :, : self.length])

    @property
    def values(self):
        """The stored values, (batch, heads, length, head_dim), or None before the first update."""
        return None if self._values is None else wrap(self._values[:, :, : self.length])

    def update(self, keys, values):
        """Append new keys and values, (batch, heads, T, head_dim) each; return all stored ones,
        (batch, heads, length, head_dim) each, the new ones included."""
        if keys.ndim != 4 or values.shape != keys.shape:
            raise ValueError(
                f"KVCache.update: expected keys and values of one shape (batch, heads, T, head_dim), got "
                f"{tuple(keys.shape)} and {tuple(values.shape)}"
            )
        batch, heads, steps, head_dim = keys.shape
        start, stop = self.length, self.length + steps
        if stop > self.max_length:
            raise ValueError(
                f"KVCache: cannot append {steps} positions to the {start} stored: the cache holds at most "
                f"max_length={self.max_length} positions (reset() it, or make a longer one)"
            )
        xp = array_module(keys.data)
        storage = self._keys
        layout = (batch, heads, self.max_length, head_dim)
        if start == 0 and (storage is None or storage.shape != layout or storage.dtype != keys.dtype
                           or type(storage) is not type(keys.data)):
            self._keys = xp.empty(layout, dtype=keys.dtype)
            self._values = xp.empty(layout, dtype=keys.dtype)
        elif storage.shape != layout or storage.dtype != keys.dtype:
            raise ValueError(
                f"KVCache.update: the cache stores (batch, heads, head_dim) = "
                f"{(storage.shape[0], storage.shape[1], storage.shape[3])} "
                f"in {storage.dtype}, got keys of shape {tuple(keys.shape)} in {keys.dtype}; reset() it for a new batch"
            )
        self._keys[:, :, start:stop] = keys.data
        self._values[:, :, start:stop] = values.data
        self.length = stop
        if is_grad_enabled() and (keys.requires_grad or values.requires_grad) and start > 0:
            past_keys, past_values = wrap(self._keys[:, :, :start]), wrap(self._values[:, :, :start])
            return ops.cat([past_keys, keys], dim=2), ops.cat([past_values, values], dim=2)
        if is_grad_enabled() and (keys.requires_grad or values.requires_grad):
            return keys, values  # nothing stored before: the new ones are all of them
        return wrap(self._keys[:, :, :stop]), wrap(self._values[:, :, :stop])

    def __repr__(self):
        return f"KVCache(length={self.length}, max_length={self.max_length})"


def _shape(tensor):
    return tuple(tensor.shape)


class MultiheadAttention(Module):
    """Attention with ``num_heads`` heads, as ``torch.nn.MultiheadAttention`` (without kdim/vdim,
    add_bias_kv and add_zero_attn).

    Shapes (E = embed_dim, L target and S source lengths, N batch):
    query (L, N, E), key and value (S, N, E); (N, L, E) and (N, S, E) with
    ``batch_first``; (L, E) and (S, E) for one unbatched sequence. Returns
    ``(attn_output, attn_weights)``: the output shaped like the query, and with
    ``need_weights`` the attention weights averaged over the heads (N, L, S),
    or per head (N, H, L, S) with ``average_attn_weights=False``; None otherwise.
    The weights are those after dropout, as PyTorch returns them, and gradients
    flow through them.

    Masks, as PyTorch's (note: the opposite boolean convention of
    ``scaled_dot_product_attention``): ``key_padding_mask`` (N, S), True (or
    -inf) at keys to ignore; ``attn_mask`` (L, S) or (N * num_heads, L, S),
    boolean True where attention is *not* allowed, or float added to the
    scores. ``is_causal=True`` applies the causal mask itself (it may be given
    without ``attn_mask``, unlike PyTorch's hint; with one, both apply). A query
    left with no key gets a zero output (and zero weights) rather than
    PyTorch's NaN.

    ``cache``: a :class:`KVCache` for incremental self-attention decoding. The
    query, key and value must be the same tensor (the new positions); their
    keys and values are appended to the cache and the queries attend to every
    stored position. With ``is_causal=True`` the new queries are placed after
    the stored positions, so decoding step by step gives the same outputs as
    running the whole sequence at once with ``is_causal=True``. Masks then
    cover all stored keys: ``attn_mask`` (L, length), ``key_padding_mask``
    (N, length).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False, dtype=None, device=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        self.in_proj_weight = new_parameter(3 * embed_dim, embed_dim, dtype=dtype, device=device)
        if bias:
            self.in_proj_bias = new_parameter(3 * embed_dim, dtype=dtype, device=device)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype, device=device)
        self._reset_parameters()

    def _reset_parameters(self):
        """As PyTorch: Xavier-uniform packed projection, zero biases; ``out_proj.weight`` keeps Linear's init."""
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")

    # ----- forward -----------------------------------------------------------------
    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False, cache=None):
        same_qkv = query is key and key is value
        same_kv = key is value
        batched = self._check_shapes(query, key, value)
        if cache is not None and not same_qkv:
            raise ValueError(
                "MultiheadAttention: a KVCache is for self-attention: query, key and value must be the same tensor"
            )
        # everything batch-first from here: (N, L, E)
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q, k, v = self._project(query, key, value, same_qkv, same_kv)
        if cache is not None:
            k, v = cache.update(k, v)
        mask = self._merge_masks(attn_mask, key_padding_mask, batched, q.shape[0], q.shape[2], k.shape[2], q.dtype)
        dropout_p = self.dropout if self.training else 0.0
        result = scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                                              return_weights=need_weights)
        out, weights = result if need_weights else (result, None)
        n, length = q.shape[0], q.shape[2]
        out = self.out_proj(out.transpose(1, 2).reshape(n, length, self.embed_dim))
        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if not batched:
                weights = weights.squeeze(0)
        return out, weights

    def _check_shapes(self, query, key, value):
        """Raise a ValueError naming the layer for inconsistent shapes; return whether the input is batched."""
        name, e = "MultiheadAttention", self.embed_dim
        for label, tensor in (("query", query), ("key", key), ("value", value)):
            if not isinstance(tensor, Tensor):
                raise TypeError(f"{name}: {label} must be a Tensor, got {type(tensor).__name__}")
            if tensor.dtype != query.dtype:
                raise TypeError(
                    f"{name}: query, key and value must have one dtype, got {query.dtype} and {tensor.dtype}"
                )
        if query.ndim not in (2, 3):
            layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
            raise ValueError(f"{name}: expected query of shape {layout} or (L, E) with E={e}, got {_shape(query)}")
        batched = query.ndim == 3
        if not batched:
            layouts = {"query": "(L, E)", "key": "(S, E)", "value": "(S, E)"}
        elif self.batch_first:
            layouts = {"query": "(N, L, E)", "key": "(N, S, E)", "value": "(N, S, E)"}
        else:
            layouts = {"query": "(L, N, E)", "key": "(S, N, E)", "value": "(S, N, E)"}
        for label, tensor in (("query", query), ("key", key), ("value", value)):
            if tensor.ndim != query.ndim or tensor.shape[-1] != e:
                raise ValueError(
                    f"{name}: expected {label} of shape {layouts[label]} with E={e} (query shape {_shape(query)}), "
                    f"got {_shape(tensor)}"
                )
        if key.shape != value.shape:
            raise ValueError(f"{name}: key and value must have the same shape, got {_shape(key)} and {_shape(value)}")
        batch_axis = 0 if self.batch_first else 1
        if batched and key.shape[batch_axis] != query.shape[batch_axis]:
            raise ValueError(
                f"{name}: query and key must have the same batch size (dimension {batch_axis}), got shapes "
                f"{_shape(query)} and {_shape(key)}"
            )
        return batched

    def _project(self, query, key, value, same_qkv, same_kv):
        """Batch-first (N, L, E) inputs -> q (N, H, L, hd), k and v (N, H, S, hd)."""
        e, w, b = self.embed_dim, self.in_proj_weight, self.in_proj_bias
        if same_qkv:  # self-attention: one product with the packed weight
            q, k, v = F.linear(query, w, b).split(e, dim=-1)
        else:
            def part(start, stop):
                return w[start:stop], (None if b is None else b[start:stop])

            q = F.linear(query, *part(0, e))
            if same_kv:
                k, v = F.linear(key, *part(e, 3 * e)).split(e, dim=-1)
            else:
                k, v = F.linear(key, *part(e, 2 * e)), F.linear(value, *part(2 * e, 3 * e))
        return self._heads(q), self._heads(k), self._heads(v)

    def _heads(self, x):
        n, length = x.shape[0], x.shape[1]
        return x.reshape(n, length, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_masks(self, attn_mask, key_padding_mask, batched, n, n_queries, n_keys, dtype):
        """One mask for the attention op, broadcastable to (N, H, L, S): boolean True = may attend,
        or float (added to the scores) when either mask is float."""
        name, h = "MultiheadAttention", self.num_heads
        masks = []
        if attn_mask is not None:
            _check_mask_dtype(name, "attn_mask", attn_mask)
            allowed_2d = (n_queries, n_keys)
            allowed_3d = (n * h, n_queries, n_keys) if batched else (h, n_queries, n_keys)
            if attn_mask.shape == allowed_2d:
                masks.append(attn_mask)
            elif attn_mask.shape == allowed_3d:
                masks.append(attn_mask.reshape(n, h, n_queries, n_keys))
            else:
                raise ValueError(
                    f"{name}: expected attn_mask of shape {allowed_2d} or {allowed_3d}, got {_shape(attn_mask)}"
                )
        if key_padding_mask is not None:
            _check_mask_dtype(name, "key_padding_mask", key_padding_mask)
            expected = (n, n_keys) if batched else (n_keys,)
            if key_padding_mask.shape != expected:
                raise ValueError(
                    f"{name}: expected key_padding_mask of shape {expected}, got {_shape(key_padding_mask)}"
                )
            masks.append(key_padding_mask.reshape(n, 1, 1, n_keys))
        if not masks:
            return None
        if all(mask.dtype.kind == "b" for mask in masks):
            allowed = ~masks[0]
            for mask in masks[1:]:
                allowed = allowed & ~mask
            return allowed
        total = None
        for mask in masks:
            if mask.dtype.kind == "b":
                xp = array_module(mask.data)
                mask = wrap(xp.where(mask.data, dtype.type(-np.inf), dtype.type(0)))
            elif mask.dtype != dtype:
                mask = mask.to(dtype)
            total = mask if total is None else total + mask
        return total


def _check_mask_dtype(name, label, mask):
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}: {label} must be a Tensor, got {type(mask).__name__}")
    if mask.dtype.kind not in "bf":
        raise TypeError(f"{name}: {label} must be boolean or floating-point, got {mask.dtype}")

