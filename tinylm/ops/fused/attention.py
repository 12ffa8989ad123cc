"""Scaled dot-product attention as one op: ``softmax(q k^T * scale + mask) v``.

For queries q (..., L, E), keys k (..., S, E) and values v (..., S, Ev)::

    scores  = q @ k^T                       (..., L, S)
    P       = softmax(scale * scores [+ mask], over the keys)
    P'      = P * keep                      (dropout: keep is 0 or 1/(1-p), when p > 0)
    out     = P' @ v                        (..., L, Ev)

and, from the saved q, k, v, P and the dropout mask, the backward::

    dv  = P'^T @ dout
    dP' = dout @ v^T   (+ the gradient of the returned weights, if any)
    dP  = dP' * keep
    dz  = P * (dP - sum(dP * P, over the keys))      the softmax backward
    dq  = scale * dz @ k,  dk = scale * dz^T @ q,  dmask = dz (for an additive float mask)

The softmax (with the scale and the causal mask folded in) and its backward
are the ``attention_softmax_forward`` / ``attention_softmax_backward`` kernels
of ``tinylm.kernels``; the matrix products are NumPy's (BLAS) or CuPy's.
Without ``attn_mask`` (the GPT path) the kernel gets the raw scores with the
scale and the causal flag. With one, the op first forms ``z = scale * scores +
mask`` (a boolean mask puts ``-inf`` where it is False), and the kernel takes
``z`` with scale 1 (the causal flag still goes to the kernel); the backward
then multiplies the kernel's ``dz`` by the scale itself, and ``dz`` is also the
additive mask's gradient.

Mask conventions, as PyTorch's ``F.scaled_dot_product_attention``:

- a boolean ``attn_mask`` is True where a query may attend to a key;
- a float ``attn_mask`` is added to the scaled scores (``-inf`` forbids);
- ``is_causal=True`` lets query i see key j only when ``j <= i + S - L``: the
  queries are the *last* L positions of the S keys. For L = S that is the
  usual lower triangle. For L < S (decoding with a key/value cache, where the
  L new queries follow S - L cached positions) it is what incremental decoding
  needs. PyTorch aligns the triangle to the top-left instead (query i sees
  j <= i, ``torch.nn.attention.bias.causal_upper_left``); its bottom-right
  variant (``causal_lower_right``) is the one used here. The two agree when
  L = S. PyTorch also refuses ``attn_mask`` together with ``is_causal``; here
  both apply (a key must pass both).

A query that may attend to no key at all (a fully masked row) gets an output of
zeros and passes zero gradients back, as PyTorch's ``scaled_dot_product_attention``
does (checked with 2.13); it never produces NaN.

``causal_self_attention`` is the GPT's case as one op: causal, no mask, no
dropout, with q, k and v read from the packed rows the ``c_attn`` layer gives
and the heads' outputs written side by side (see ``CausalSelfAttentionFunction``).
"""

import math

import numpy as np

from tinylm.backend import array_module
from tinylm.kernels.registry import kernel_for
from tinylm.ops.common import can_broadcast, reduce_to
from tinylm.ops.fused.dropout import keep_mask
from tinylm.tensor import Function, Tensor


def _as_4d(array):
    """(..., L, S) -> (B, 1, L, S): the layout the attention-softmax kernels take."""
    return array.reshape((math.prod(array.shape[:-2]), 1) + array.shape[-2:])


def causal_visibility(xp, n_queries, n_keys, query_offset):
    """(L, S) booleans: True where query i may see key j, i.e. ``j <= query_offset + i``."""
    return xp.arange(n_keys)[None, :] <= query_offset + xp.arange(n_queries)[:, None]


class AttentionFunction(Function):
    """q (..., L, E), k (..., S, E), v (..., S, Ev) [, mask] -> out (..., L, Ev) [, weights (..., L, S)].

    Leading (batch) dimensions broadcast. ``mask`` is an optional boolean
    (True = attend) or additive float tensor broadcastable to (..., L, S);
    only a float mask gets a gradient. ``causal`` applies the causal mask with
    the queries at positions ``query_offset + i``. ``dropout_p`` drops attention
    weights with the generator of ``tinylm.nn.functional.dropout``. With
    ``need_weights`` the op returns a second output, the attention weights
    after dropout (those that multiply v), through which gradients also flow.
    """

    def forward(self, q, k, v, mask=None, *, scale, causal, query_offset, dropout_p, need_weights):
        xp = array_module(q)
        dtype = q.dtype
        scores = q @ xp.swapaxes(k, -1, -2)  # (..., L, S)
        n_queries, n_keys = scores.shape[-2:]
        self.additive = mask is not None and mask.dtype.kind == "f"
        if mask is None:
            # The common path (GPT): scale and causal mask are folded into the kernel.
            kernel_scale = scale
            z = scores
            fully_masked = None
        else:
            kernel_scale = 1.0
            if self.additive:
                z = scores * dtype.type(scale) + mask
            else:
                z = xp.where(mask, scores * dtype.type(scale), dtype.type(-np.inf))
            # Rows that may see no key: the kernel would take 0/0 there. Give them
            # finite scores for the kernel and zero their probabilities afterwards.
            allowed = z > -np.inf
            if causal:
                allowed = allowed & causal_visibility(xp, n_queries, n_keys, query_offset)
            fully_masked = ~allowed.any(axis=-1, keepdims=True)
            if fully_masked.any():
                z = xp.where(fully_masked, dtype.type(0), z)
            else:
                fully_masked = None
        if n_queries == 0 or n_keys == 0:
            probs = xp.zeros(z.shape, dtype=dtype)  # the kernels do not take empty rows
        else:
            forward = kernel_for("attention_softmax_forward", z)
            probs = forward(_as_4d(xp.ascontiguousarray(z)), kernel_scale, causal, query_offset).reshape(z.shape)
        if fully_masked is not None:
            probs = xp.where(fully_masked, dtype.type(0), probs)
        self.keep = keep_mask(probs.shape, dropout_p, probs) if dropout_p > 0 else None
        weights = probs if self.keep is None else probs * self.keep
        out = weights @ v
        self.q, self.k, self.v, self.probs = q, k, v, probs  # not weights: backward remakes them from keep
        self.scale, self.kernel_scale = scale, kernel_scale
        self.mask_shape = None if mask is None else mask.shape
        return (out, weights) if need_weights else out

    def backward(self, g_out, g_weights=None):
        q, k, v, probs = self.q, self.k, self.v, self.probs
        xp = array_module(probs)
        need = list(self.needs_input_grad) + [False]
        need_q, need_k, need_v, need_mask = need[:4]
        dq = dk = dv = dmask = None
        if g_out is None:
            g_out = xp.zeros(probs.shape[:-1] + v.shape[-1:], dtype=probs.dtype)
        if need_v:
            weights = probs if self.keep is None else probs * self.keep
            dv = reduce_to(xp.swapaxes(weights, -1, -2) @ g_out, v.shape, v.dtype)
        if need_q or need_k or (need_mask and self.additive):
            dweights = reduce_to(g_out @ xp.swapaxes(v, -1, -2), probs.shape, probs.dtype)
            if g_weights is not None:
                dweights = dweights + g_weights
            dprobs = dweights if self.keep is None else dweights * self.keep
            if probs.size:
                backward = kernel_for("attention_softmax_backward", probs)
                dz = backward(_as_4d(xp.ascontiguousarray(dprobs)), _as_4d(probs), self.kernel_scale)
                dz = dz.reshape(probs.shape)
            else:
                dz = xp.zeros(probs.shape, dtype=probs.dtype)
            if need_mask and self.additive:
                dmask = reduce_to(dz, self.mask_shape, probs.dtype)
            # d(scores): the kernel already applied the scale when it did the scaling
            dscores = dz if self.kernel_scale == self.scale else dz * probs.dtype.type(self.scale)
            if need_q:
                dq = reduce_to(dscores @ k, q.shape, q.dtype)
            if need_k:
                dk = reduce_to(xp.swapaxes(dscores, -1, -2) @ q, k.shape, k.dtype)
        if len(self.needs_input_grad) == 3:
            return dq, dk, dv
        return dq, dk, dv, dmask


def _shape(tensor):
    return tuple(tensor.shape)


def _check_inputs(query, key, value, attn_mask, dropout_p):
    op = "scaled_dot_product_attention"
    for name, tensor in (("query", query), ("key", key), ("value", value)):
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(tensor).__name__}")
        if tensor.ndim < 2:
            raise ValueError(f"{op}: {name} must have shape (..., length, features), got shape {_shape(tensor)}")
        if tensor.dtype.kind != "f":
            raise TypeError(f"{op}: {name} must be floating-point, got {tensor.dtype}")
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError(
            f"{op}: query, key and value must have one dtype, got {query.dtype}, {key.dtype} and {value.dtype}"
        )
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"{op}: key must have query's feature size {query.shape[-1]} in its last dimension: expected "
            f"shape (..., S, {query.shape[-1]}), got key shape {_shape(key)} (query shape {_shape(query)})"
        )
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"{op}: value must have one row per key: expected shape (..., {key.shape[-2]}, Ev), got value "
            f"shape {_shape(value)} (key shape {_shape(key)})"
        )
    batch = (query.shape[:-2], key.shape[:-2], value.shape[:-2])
    if not can_broadcast(*batch):
        raise ValueError(
            f"{op}: the batch dimensions of query {_shape(query)}, key {_shape(key)} and value "
            f"{_shape(value)} do not broadcast together"
        )
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"{op}: attn_mask must be a Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype.kind not in "bf":
            raise TypeError(f"{op}: attn_mask must be boolean or floating-point, got {attn_mask.dtype}")
        scores_shape = np.broadcast_shapes(query.shape[:-2], key.shape[:-2]) + (query.shape[-2], key.shape[-2])
        if not (can_broadcast(attn_mask.shape, scores_shape)
                and np.broadcast_shapes(attn_mask.shape, scores_shape) == scores_shape):
            raise ValueError(
                f"{op}: attn_mask of shape {_shape(attn_mask)} does not broadcast to the scores' shape "
                f"{scores_shape} (batch..., L, S)"
            )
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")


class CausalSelfAttentionFunction(Function):
    """Causal self-attention on packed rows: qkv (B, T, 3C) -> y (B, T, C).

    ``qkv`` is what a GPT's ``c_attn`` layer gives: per position the queries,
    then the keys, then the values, each with the ``n_head`` heads side by side;
    ``y`` holds the heads' outputs side by side, what ``c_proj`` takes. The
    arithmetic is :class:`AttentionFunction`'s with ``is_causal=True`` and no
    mask or dropout, done by the ``causal_attention_forward`` / ``_backward``
    kernels, which read each head's q, k, v in place in ``qkv`` and write
    straight into ``y`` and into the gradient of ``qkv``: the split, reshape
    and transpose ops around attention (each a node of the graph, and copies
    in the backward) are not needed.
    """

    def forward(self, qkv, *, n_head, scale):
        y, probs = kernel_for("causal_attention_forward", qkv)(qkv, n_head, scale)
        self.qkv, self.probs, self.n_head, self.scale = qkv, probs, n_head, scale
        return y

    def backward(self, g):
        backward = kernel_for("causal_attention_backward", self.qkv)
        return backward(g, self.qkv, self.probs, self.n_head, self.scale)


def causal_self_attention(qkv, n_head, scale=None):
    """Causal multi-head self-attention of packed rows: qkv (B, T, 3C) -> (B, T, C).

    The same as splitting ``qkv`` into q, k, v, viewing each as (B, nh, T, hs),
    calling ``scaled_dot_product_attention(q, k, v, is_causal=True)`` and
    putting the heads side by side again, in one op (see
    :class:`CausalSelfAttentionFunction`). ``scale`` defaults to 1/sqrt(hs).
    No dropout: use the unpacked path when attention dropout is on.
    """
    op = "causal_self_attention"
    if not isinstance(qkv, Tensor):
        raise TypeError(f"{op}: qkv must be a Tensor, got {type(qkv).__name__}")
    if qkv.dtype.kind != "f":
        raise TypeError(f"{op}: qkv must be floating-point, got {qkv.dtype}")
    if not isinstance(n_head, int) or n_head < 1:
        raise ValueError(f"{op}: n_head must be a positive int, got {n_head!r}")
    if qkv.ndim != 3 or qkv.shape[-1] % (3 * n_head):
        raise ValueError(
            f"{op}: qkv must have shape (batch, time, 3 * n_embd) with n_embd a multiple of n_head "
            f"({n_head}), got shape {_shape(qkv)}"
        )
    head = qkv.shape[-1] // 3 // n_head
    if scale is None:
        scale = 1.0 / math.sqrt(head)
    return CausalSelfAttentionFunction.apply(qkv, n_head=n_head, scale=float(scale))


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 *, return_weights=False):
    """``softmax(query @ key^T * scale + mask) @ value``, as PyTorch's function of that name.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev); the
    leading dimensions broadcast. ``attn_mask``: boolean (True = may attend) or
    float (added to the scaled scores), broadcastable to (..., L, S).
    ``is_causal``: query i sees keys ``j <= i + S - L`` (bottom-right aligned,
    see the module's notes). ``dropout_p``: dropout on the attention weights,
    applied whenever it is above 0 (pass ``dropout_p if training else 0.0``, as
    with PyTorch). ``scale`` defaults to ``1 / sqrt(E)``. A query with no key to
    attend to gets zeros. ``return_weights=True`` (not in PyTorch) also returns
    the attention weights (..., L, S) after dropout, gradients flowing through both.
    """
    _check_inputs(query, key, value, attn_mask, dropout_p)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1]) if query.shape[-1] else 1.0
    n_queries, n_keys = query.shape[-2], key.shape[-2]
    params = dict(scale=float(scale), causal=bool(is_causal), query_offset=n_keys - n_queries,
                  dropout_p=float(dropout_p), need_weights=bool(return_weights))
    if attn_mask is None:
        return AttentionFunction.apply(query, key, value, **params)
    if attn_mask.dtype.kind == "f" and attn_mask.dtype != query.dtype:
        attn_mask = attn_mask.to(query.dtype)
    return AttentionFunction.apply(query, key, value, attn_mask, **params)
