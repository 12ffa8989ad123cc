"""One decoding step of a GPT: the next position of every sequence through all layers, in one call.

Sampling feeds a GPT one token at a time. Done with array operations, each
new position costs some 80 small calls (17 one-row matrix products, layer
norms, the attention of each head), and at the sizes of a small GPT their
fixed costs are most of the time. This kernel does the whole step at once:

    gpt_decode_step(tokens, position, weights, keys, values, n_head, approximate) -> logits

``tokens`` (B,) are the new tokens, at position ``position`` of every
sequence; ``keys`` and ``values`` (L, B, n_head, block_size, head_size) hold
the keys and values of positions ``0 .. position - 1`` and receive those of
the new position; the result is the logits of the new position, (B, vocab).
``weights`` is a :class:`DecoderWeights` made by :func:`pack_gpt_weights`:
the model's matrices as (in, out), stacked over the L layers, so every
product is a sum of contiguous weight rows scaled by the input's elements.

Per layer, for each sequence (x is its residual stream, C wide)::

    h = layer_norm(x, ln_1);  q, k, v = split(h @ W_attn + b_attn)
    store k, v at ``position``;  per head: p = softmax(q . K^T / sqrt(hs)) over positions 0..position
    x += (p V, the heads side by side) @ W_proj + b_proj
    x += gelu(layer_norm(x, ln_2) @ W_fc + b_fc) @ W_mlp_proj + b_mlp_proj

and at the end ``logits = layer_norm(x, ln_f) @ wte^T`` (the tied embedding).
This is ``GPT.forward`` in eval mode for one position (``GPTDecoder`` uses
it); the Numba and CUDA versions call the layer-norm, GELU and
attention-softmax kernels' own row functions, so they round as those do.
"""

import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from tinylm.backend import array_module

from ._common import CUDA_MAX_BLOCK, block_size_for, check_float, check_like, jit, lane_dot
from .attention_softmax import _forward_rows as _softmax_rows
from .attention_softmax import attention_softmax_forward_reference, cuda_softmax_row
from .gelu import _BLOCK as _GELU_BLOCK
from .gelu import _cuda_gelu_value, _gelu_block, gelu_forward_reference
from .layernorm import _forward_rows as _layernorm_rows
from .layernorm import cuda_layernorm_row, layernorm_forward_reference


class DecoderWeights(NamedTuple):
    """A GPT's parameters laid out for :func:`gpt_decode_step`; L layers, width C, vocabulary V.

    Matrices are (in, out) copies of the model's (out, in) weights, stacked over
    the layers. A layer without biases (``bias=False``) gets zeros, and a layer
    norm without bias zeros too: adding 0 changes no value.
    """

    wte: object  # (V, C) token embedding, also the output layer
    wpe: object  # (block_size, C) position embedding
    norms: object  # (L, 4, C): ln_1 weight, ln_1 bias, ln_2 weight, ln_2 bias
    attn_w: object  # (L, C, 3C)
    attn_b: object  # (L, 3C)
    proj_w: object  # (L, C, C)
    proj_b: object  # (L, C)
    fc_w: object  # (L, C, 4C)
    fc_b: object  # (L, 4C)
    mlp_proj_w: object  # (L, 4C, C)
    mlp_proj_b: object  # (L, C)
    final_norm: object  # (2, C): ln_f weight and bias
    eps: float  # every layer norm's epsilon


def pack_gpt_weights(xp, dtype, wte, wpe, blocks, final_norm, eps):
    """A :class:`DecoderWeights` from arrays: ``blocks`` is a list with one dict per layer
    (keys ln_1_w, ln_1_b, attn_w, attn_b, proj_w, proj_b, ln_2_w, ln_2_b, fc_w, fc_b,
    mlp_proj_w, mlp_proj_b; weights (out, in) as in the model, biases (out,) or None),
    ``final_norm`` a pair (weight, bias or None)."""
    width = wte.shape[1]

    def ones_or(a):
        return xp.ones(width, dtype) if a is None else a

    def zeros_or(a, size):
        return xp.zeros(size, dtype) if a is None else a

    def stack(arrays):
        return xp.ascontiguousarray(xp.stack(arrays).astype(dtype, copy=False))

    def matrices(key):
        return stack([block[key].T for block in blocks])

    def biases(key, matrix_key):
        return stack([zeros_or(block[key], block[matrix_key].shape[0]) for block in blocks])

    norms = stack([xp.stack([ones_or(b["ln_1_w"]), zeros_or(b["ln_1_b"], width),
                             ones_or(b["ln_2_w"]), zeros_or(b["ln_2_b"], width)]) for b in blocks])  # fmt: skip
    return DecoderWeights(
        wte=xp.ascontiguousarray(wte), wpe=xp.ascontiguousarray(wpe), norms=norms,
        attn_w=matrices("attn_w"), attn_b=biases("attn_b", "attn_w"),
        proj_w=matrices("proj_w"), proj_b=biases("proj_b", "proj_w"),
        fc_w=matrices("fc_w"), fc_b=biases("fc_b", "fc_w"),
        mlp_proj_w=matrices("mlp_proj_w"), mlp_proj_b=biases("mlp_proj_b", "mlp_proj_w"),
        final_norm=stack([ones_or(final_norm[0]), zeros_or(final_norm[1], width)]),
        eps=float(eps),
    )  # fmt: skip


def _check(tokens, position, weights, keys, values, n_head, approximate):
    """The checks every version makes; returns (L, B, C, head_size)."""
    name = "gpt_decode_step"
    wte = weights.wte
    check_float(name, "wte", wte, ndim=2)
    vocab, width = wte.shape
    layers = weights.attn_w.shape[0]
    if n_head < 1 or width % n_head:
        raise ValueError(f"{name}: n_head must divide the width {width}, got {n_head}")
    if getattr(tokens, "ndim", None) != 1 or tokens.dtype.kind not in "iu":
        raise TypeError(f"{name}: tokens must be a 1-D integer array (batch,), got {getattr(tokens, 'dtype', None)} "
                        f"of shape {getattr(tokens, 'shape', None)}")  # fmt: skip
    batch = tokens.shape[0]
    block_size = weights.wpe.shape[0]
    if not 0 <= position < block_size:
        raise ValueError(f"{name}: position {position} is outside the block [0, {block_size})")
    head = width // n_head
    storage = (layers, batch, n_head, block_size, head)
    check_like(name, "keys", keys, wte.dtype, storage)
    check_like(name, "values", values, wte.dtype, storage)
    if approximate not in ("none", "tanh"):
        raise ValueError(f"{name}: approximate must be 'none' or 'tanh', got {approximate!r}")
    if batch:
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= vocab:
            raise IndexError(f"{name}: token id {low if low < 0 else high} is outside [0, {vocab})")
    return layers, batch, width, head


# --------------------------------------------------------------------------- NumPy reference


def gpt_decode_step_reference(tokens, position, weights, keys, values, n_head, approximate="none"):
    """Logits (B, vocab) of the new position; stores its keys and values at ``position``."""
    layers, batch, width, head = _check(tokens, position, weights, keys, values, n_head, approximate)
    w, eps = weights, weights.eps
    x = w.wte[tokens] + w.wpe[position]  # (B, C)
    for layer in range(layers):
        ln_1_w, ln_1_b, ln_2_w, ln_2_b = w.norms[layer]
        qkv = layernorm_forward_reference(x, ln_1_w, ln_1_b, eps)[0] @ w.attn_w[layer] + w.attn_b[layer]
        q, k, v = (qkv[:, i * width : (i + 1) * width].reshape(batch, n_head, head) for i in range(3))
        keys[layer, :, :, position] = k
        values[layer, :, :, position] = v
        seen = slice(0, position + 1)
        scores = np.einsum("bhd,bhsd->bhs", q, keys[layer, :, :, seen])[:, :, None, :]  # (B, nh, 1, S)
        probs = attention_softmax_forward_reference(scores, 1.0 / math.sqrt(head), False)[:, :, 0]
        y = np.einsum("bhs,bhsd->bhd", probs, values[layer, :, :, seen]).reshape(batch, width)
        x = x + (y @ w.proj_w[layer] + w.proj_b[layer])
        h = layernorm_forward_reference(x, ln_2_w, ln_2_b, eps)[0] @ w.fc_w[layer] + w.fc_b[layer]
        x = x + (gelu_forward_reference(h, approximate) @ w.mlp_proj_w[layer] + w.mlp_proj_b[layer])
    final = layernorm_forward_reference(x, w.final_norm[0], w.final_norm[1], eps)[0]
    return final @ w.wte.T


# --------------------------------------------------------------------------- Numba CPU


@jit
def _vector_matrix(x, matrix, bias, out):
    """out = x @ matrix + bias, for x (n,), matrix (n, m): a sum of matrix rows, each a contiguous axpy."""
    for j in range(out.shape[0]):
        out[j] = bias[j]
    for k in range(x.shape[0]):
        c = x[k]
        row = matrix[k]
        for j in range(out.shape[0]):
            out[j] += c * row[j]


@jit
def _layer_norm(x, weight, bias, eps, out, stats):
    """out (C,) = layer_norm(x (C,)), through the layer-norm kernel's own row function."""
    _layernorm_rows(x.reshape(1, x.shape[0]), weight, bias, eps, out.reshape(1, out.shape[0]),
                    stats[0:1], stats[1:2], 0, 1)  # fmt: skip


@jit
def _decode_sequence(b, token, position, wte, wpe, norms, attn_w, attn_b, proj_w, proj_b, fc_w, fc_b,
                     mlp_proj_w, mlp_proj_b, final_norm, eps, keys, values, n_head, use_tanh, logits):  # fmt: skip
    width = wte.shape[1]
    head = width // n_head
    dtype = wte.dtype.type
    scale = dtype(1.0 / math.sqrt(head))
    x = np.empty(width, wte.dtype)
    h = np.empty(width, wte.dtype)
    qkv = np.empty(3 * width, wte.dtype)
    y = np.empty(width, wte.dtype)
    hidden = np.empty(fc_w.shape[2], wte.dtype)
    act = np.empty(fc_w.shape[2], wte.dtype)
    scratch = np.empty(_GELU_BLOCK, wte.dtype)
    scores = np.empty((1, position + 1), wte.dtype)
    probs = np.empty((1, position + 1), wte.dtype)
    stats = np.empty(2, wte.dtype)
    for j in range(width):
        x[j] = wte[token, j] + wpe[position, j]
    for layer in range(attn_w.shape[0]):
        _layer_norm(x, norms[layer, 0], norms[layer, 1], eps, h, stats)
        _vector_matrix(h, attn_w[layer], attn_b[layer], qkv)
        for hd in range(n_head):
            q = qkv[hd * head : (hd + 1) * head]
            key_store, value_store = keys[layer, b, hd], values[layer, b, hd]
            new_key, new_value = key_store[position], value_store[position]
            for d in range(head):
                new_key[d] = qkv[width + hd * head + d]
                new_value[d] = qkv[2 * width + hd * head + d]
            for s in range(position + 1):
                scores[0, s] = lane_dot(q, key_store[s])
            _softmax_rows(scores, scale, False, 0, 1, probs, 0, 1)
            out = y[hd * head : (hd + 1) * head]
            for d in range(head):
                out[d] = dtype(0)
            for s in range(position + 1):
                p = probs[0, s]
                v = value_store[s]
                for d in range(head):
                    out[d] += p * v[d]
        _vector_matrix(y, proj_w[layer], proj_b[layer], h)
        for j in range(width):
            x[j] += h[j]
        _layer_norm(x, norms[layer, 2], norms[layer, 3], eps, h, stats)
        _vector_matrix(h, fc_w[layer], fc_b[layer], hidden)
        for begin in range(0, hidden.shape[0], _GELU_BLOCK):
            end = min(begin + _GELU_BLOCK, hidden.shape[0])
            _gelu_block(hidden[begin:end], act[begin:end], use_tanh, scratch)
        _vector_matrix(act, mlp_proj_w[layer], mlp_proj_b[layer], h)
        for j in range(width):
            x[j] += h[j]
    _layer_norm(x, final_norm[0], final_norm[1], eps, h, stats)
    for t in range(wte.shape[0]):
        logits[b, t] = lane_dot(h, wte[t])


@jit
def _decode_step(tokens, position, wte, wpe, norms, attn_w, attn_b, proj_w, proj_b, fc_w, fc_b, mlp_proj_w,
                 mlp_proj_b, final_norm, eps, keys, values, n_head, use_tanh, logits):  # fmt: skip
    for b in range(tokens.shape[0]):
        _decode_sequence(b, tokens[b], position, wte, wpe, norms, attn_w, attn_b, proj_w, proj_b, fc_w, fc_b,
                         mlp_proj_w, mlp_proj_b, final_norm, eps, keys, values, n_head, use_tanh, logits)  # fmt: skip


def _arrays(weights):
    """The weights' arrays, every field but ``eps``, in field order: the kernels' argument order."""
    return tuple(weights)[:-1]


def gpt_decode_step_numba(tokens, position, weights, keys, values, n_head, approximate="none"):
    """Numba version of :func:`gpt_decode_step_reference` (sequences one after another, one thread)."""
    _, batch, _, _ = _check(tokens, position, weights, keys, values, n_head, approximate)
    dtype = weights.wte.dtype
    logits = np.empty((batch, weights.wte.shape[0]), dtype)
    _decode_step(np.asarray(tokens, dtype=np.int64), np.int64(position), *_arrays(weights), dtype.type(weights.eps),
                 keys, values, np.int64(n_head), approximate == "tanh", logits)  # fmt: skip
    return logits


# --------------------------------------------------------------------------- CUDA
#
# One block per sequence; its threads share each stage (a thread per output
# feature of a product, per key of a head's scores; the layer norms and each
# head's softmax by the whole block, with those kernels' row functions) and
# meet at a barrier between stages. The stages' vectors live in a global
# scratch row of the sequence. Plain, not fast: decoding is latency-bound on
# a GPU too.

#: Most threads per block: one per feature of the widest product (4C) up to
#: this; a power of two, at most CUDA_MAX_BLOCK, as the block reductions need.
_CUDA_THREADS = 128


@cuda.jit(device=True)
def _cuda_vector_matrix(x, matrix, bias, out):
    for j in range(cuda.threadIdx.x, out.shape[0], cuda.blockDim.x):
        total = bias[j]
        for k in range(x.shape[0]):
            total += x[k] * matrix[k, j]
        out[j] = total
    cuda.syncthreads()


@cuda.jit
def _decode_cuda_kernel(tokens, position, wte, wpe, norms, attn_w, attn_b, proj_w, proj_b, fc_w, fc_b, mlp_proj_w,
                        mlp_proj_b, final_norm, eps, keys, values, n_head, use_tanh, scratch, logits):  # fmt: skip
    b = cuda.blockIdx.x
    t = cuda.threadIdx.x
    width = wte.shape[1]
    head = width // n_head
    wide = fc_w.shape[2]
    dtype = wte.dtype.type
    scale = dtype(1.0 / math.sqrt(head))
    block = wpe.shape[0]
    shared = cuda.shared.array(CUDA_MAX_BLOCK, wte.dtype)
    row = scratch[b]
    # scratch row layout: x | h | qkv | y | hidden | scores (n_head * block)
    x = row[0:width]
    h = row[width : 2 * width]
    qkv = row[2 * width : 5 * width]
    y = row[5 * width : 6 * width]
    hidden = row[6 * width : 6 * width + wide]
    scores = row[6 * width + wide :]
    token = tokens[b]
    for j in range(t, width, cuda.blockDim.x):
        x[j] = wte[token, j] + wpe[position, j]
    cuda.syncthreads()
    for layer in range(attn_w.shape[0]):
        cuda_layernorm_row(x, norms[layer, 0], norms[layer, 1], eps, h, shared)
        cuda.syncthreads()  # h is read by other threads next
        _cuda_vector_matrix(h, attn_w[layer], attn_b[layer], qkv)
        for j in range(t, width, cuda.blockDim.x):
            keys[layer, b, j // head, position, j % head] = qkv[width + j]
            values[layer, b, j // head, position, j % head] = qkv[2 * width + j]
        cuda.syncthreads()
        for j in range(t, n_head * (position + 1), cuda.blockDim.x):  # one (head, key) pair per thread
            hd, s = j // (position + 1), j % (position + 1)
            total = dtype(0)
            for d in range(head):
                total += qkv[hd * head + d] * keys[layer, b, hd, s, d]
            scores[hd * block + s] = total
        cuda.syncthreads()
        for hd in range(n_head):  # each head's softmax by the whole block, in place
            head_scores = scores[hd * block : (hd + 1) * block]
            cuda_softmax_row(head_scores, scale, position + 1, head_scores, shared)
        cuda.syncthreads()
        for j in range(t, width, cuda.blockDim.x):
            hd, d = j // head, j % head
            total = dtype(0)
            for s in range(position + 1):
                total += scores[hd * block + s] * values[layer, b, hd, s, d]
            y[j] = total
        cuda.syncthreads()
        _cuda_vector_matrix(y, proj_w[layer], proj_b[layer], h)
        for j in range(t, width, cuda.blockDim.x):
            x[j] += h[j]
        cuda.syncthreads()
        cuda_layernorm_row(x, norms[layer, 2], norms[layer, 3], eps, h, shared)
        cuda.syncthreads()  # h is read by other threads next
        _cuda_vector_matrix(h, fc_w[layer], fc_b[layer], hidden)
        for j in range(t, wide, cuda.blockDim.x):
            hidden[j] = _cuda_gelu_value(hidden[j], use_tanh)
        cuda.syncthreads()
        _cuda_vector_matrix(hidden, mlp_proj_w[layer], mlp_proj_b[layer], h)
        for j in range(t, width, cuda.blockDim.x):
            x[j] += h[j]
        cuda.syncthreads()
    cuda_layernorm_row(x, final_norm[0], final_norm[1], eps, h, shared)
    cuda.syncthreads()
    for v in range(t, wte.shape[0], cuda.blockDim.x):
        total = dtype(0)
        for j in range(width):
            total += h[j] * wte[v, j]
        logits[b, v] = total


def gpt_decode_step_cuda(tokens, position, weights, keys, values, n_head, approximate="none"):
    """CUDA version of :func:`gpt_decode_step_reference` (CuPy arrays in and out)."""
    _, batch, width, _ = _check(tokens, position, weights, keys, values, n_head, approximate)
    xp = array_module(weights.wte)
    dtype = weights.wte.dtype
    logits = xp.empty((batch, weights.wte.shape[0]), dtype)
    if batch:
        wide = weights.fc_w.shape[2]
        scratch = xp.empty((batch, 6 * width + wide + n_head * weights.wpe.shape[0]), dtype)
        _decode_cuda_kernel[batch, block_size_for(wide, _CUDA_THREADS)](
            xp.asarray(tokens, dtype=np.int64), np.int64(position), *_arrays(weights), dtype.type(weights.eps),
            keys, values, np.int64(n_head), approximate == "tanh", scratch, logits)  # fmt: skip
    return logits
