"""Scaled dot-product attention and ``MultiheadAttention``, each checked three ways (finite
differences, the same computation from primitive ops, PyTorch given the same weights), plus
mask semantics, the key/value cache, and error messages."""

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinylm
from tinylm.nn.layers.attention import KVCache, MultiheadAttention
from tinylm.ops.fused.attention import (
    AttentionFunction,
    CausalSelfAttentionFunction,
    causal_self_attention,
    scaled_dot_product_attention,
)
from tinylm.ops.fused.dropout import keep_mask
from tests import strategies as S
from tests.coverage import covers
from tests.parity import assert_close, assert_same_gradients, copy_weights

NEG_INF = float("-inf")


# ----- references composed from primitive ops ---------------------------------------------


def _causal_allowed(n_queries, n_keys):
    """(L, S) booleans, queries aligned to the end of the keys: query i sees keys j <= i + S - L."""
    return tinylm.tensor(np.arange(n_keys)[None, :] <= np.arange(n_queries)[:, None] + n_keys - n_queries)


def _masked_softmax(scores, allowed=None):
    """softmax over the last axis where ``allowed`` (a bool tensor or None); rows with nothing allowed give 0."""
    if allowed is None:
        return scores.softmax(-1)
    dead = tinylm.tensor(~allowed.numpy().any(-1, keepdims=True))
    scores = scores.masked_fill(~allowed, NEG_INF).masked_fill(dead, 0.0)
    return scores.softmax(-1).masked_fill(dead, 0.0)


def composed_sdpa(q, k, v, mask=None, is_causal=False, scale=None, keep=None):
    """Attention from matmul, masked_fill, softmax: the computation the fused op must equal."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    allowed = None
    if mask is not None and mask.dtype.kind == "b":
        allowed = mask
    elif mask is not None:
        scores = scores + mask
        allowed = tinylm.tensor(np.isfinite(scores.numpy()))
    if is_causal:
        causal = _causal_allowed(q.shape[-2], k.shape[-2])
        allowed = causal if allowed is None else allowed & causal
    if allowed is not None:
        allowed = tinylm.tensor(np.broadcast_to(allowed.numpy(), scores.shape).copy())
    weights = _masked_softmax(scores, allowed)
    if keep is not None:
        weights = weights * tinylm.tensor(keep)
    return weights @ v, weights


def composed_mha(layer, query, key, value, key_padding_mask=None, attn_mask=None, is_causal=False,
                 average_attn_weights=True, keep=None):
    """``MultiheadAttention.forward`` written with primitive ops only (matmul, reshape, masked_fill, softmax)."""
    e, h = layer.embed_dim, layer.num_heads
    d = e // h
    batched = query.ndim == 3
    if not batched:
        query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
    elif not layer.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    w, b = layer.in_proj_weight, layer.in_proj_bias
    projected = []
    for i, x in enumerate((query, key, value)):
        y = x @ w[i * e : (i + 1) * e].transpose(0, 1)
        if b is not None:
            y = y + b[i * e : (i + 1) * e]
        n, length = y.shape[0], y.shape[1]
        projected.append(y.reshape(n, length, h, d).permute(0, 2, 1, 3))
    q, k, v = projected
    n, n_queries, n_keys = q.shape[0], q.shape[2], k.shape[2]
    scores = (q @ k.transpose(-2, -1)) * (1 / math.sqrt(d))
    forbidden = np.zeros((n, h, n_queries, n_keys), dtype=bool)
    for mask, shape in ((attn_mask, None), (key_padding_mask, (n, 1, 1, n_keys))):
        if mask is None:
            continue
        if mask is attn_mask:
            shape = (n, h, n_queries, n_keys) if mask.ndim == 3 else (n_queries, n_keys)
        mask = mask.reshape(*shape)
        if mask.dtype.kind == "b":
            forbidden |= np.broadcast_to(mask.numpy(), forbidden.shape)
        else:
            scores = scores + mask
            forbidden |= np.broadcast_to(np.isneginf(mask.numpy()), forbidden.shape)
    if is_causal:
        forbidden |= ~_causal_allowed(n_queries, n_keys).numpy()
    weights = _masked_softmax(scores, tinylm.tensor(~forbidden))
    if keep is not None:
        weights = weights * tinylm.tensor(keep)
    out = (weights @ v).permute(0, 2, 1, 3).reshape(n, n_queries, e)
    out = out @ layer.out_proj.weight.transpose(0, 1)
    if layer.out_proj.bias is not None:
        out = out + layer.out_proj.bias
    if not batched:
        out = out.squeeze(0)
    elif not layer.batch_first:
        out = out.transpose(0, 1)
    if average_attn_weights:
        weights = weights.mean(1)
    if not batched:
        weights = weights.squeeze(0)
    return out, weights


def _leaves(arrays):
    return [tinylm.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]


def _assert_same_values_and_gradients(fused_fn, composed_fn, arrays, rtol=1e-10, atol=1e-12, params=()):
    """Both functions of fresh leaves made from ``arrays``: outputs and every gradient equal."""
    fused, composed = _leaves(arrays), _leaves(arrays)
    outs, refs = fused_fn(*fused), composed_fn(*composed)
    outs = outs if isinstance(outs, tuple) else (outs,)
    refs = refs if isinstance(refs, tuple) else (refs,)
    rng = np.random.default_rng(0)
    total_fused = total_composed = 0.0
    for out, ref in zip(outs, refs):
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=rtol, atol=atol)
        g = tinylm.tensor(rng.standard_normal(out.shape))
        total_fused = total_fused + (out * g).sum()
        total_composed = total_composed + (ref * g).sum()
    for p in params:
        p.grad = None
    total_fused.backward()
    fused_param_grads = [p.grad.numpy().copy() for p in params]
    for p in params:
        p.grad = None
    total_composed.backward()
    for ours, reference in zip(fused, composed):
        if ours.requires_grad:
            np.testing.assert_allclose(ours.grad.numpy(), reference.grad.numpy(), rtol=rtol, atol=atol)
    for ours, p in zip(fused_param_grads, params):
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=rtol, atol=atol)


# ----- scaled_dot_product_attention: strategies ------------------------------------------


@st.composite
def sdpa_inputs(draw, mask_kinds=("none", "bool", "float", "float_grad")):
    """q, k, v with broadcasting batch dimensions, a mask of some kind and shape, causal, scale."""
    batch_q, batch_k, batch_v = draw(S.broadcast_shapes(num_shapes=3, max_dims=2, min_side=1, max_side=2))
    n_queries, n_keys = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    e, ev = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    q = draw(S.arrays(batch_q + (n_queries, e)))
    k = draw(S.arrays(batch_k + (n_keys, e)))
    v = draw(S.arrays(batch_v + (n_keys, ev)))
    scores_shape = np.broadcast_shapes(batch_q, batch_k) + (n_queries, n_keys)
    kind = draw(st.sampled_from(mask_kinds))
    mask = None
    if kind != "none":
        # a shape that broadcasts to the scores: some dims set to 1, some leading dims dropped
        shape = [n if draw(st.booleans()) else 1 for n in scores_shape]
        shape = tuple(shape[draw(st.integers(0, len(shape) - 2)) :])
        allowed = draw(hnp.arrays(bool, shape, elements=st.booleans()))
        if kind == "bool":
            mask = allowed
        else:
            mask = np.where(allowed, draw(S.arrays(shape, low=-2, high=2)), -np.inf)
    causal = draw(st.booleans())
    scale = draw(st.one_of(st.none(), st.floats(0.1, 2.0)))
    return dict(q=q, k=k, v=v, mask=mask, mask_grad=kind == "float_grad", causal=causal, scale=scale)


def _sdpa_arrays_and_call(inputs, return_weights=False):
    arrays = [inputs["q"], inputs["k"], inputs["v"]]
    mask = inputs["mask"]
    options = dict(is_causal=inputs["causal"], scale=inputs["scale"])

    if mask is None:
        return arrays, lambda q, k, v: scaled_dot_product_attention(q, k, v, return_weights=return_weights, **options)
    if inputs["mask_grad"]:
        # a learnable additive bias: its gradient is checked too (where it is finite)
        arrays.append(mask)
        return arrays, lambda q, k, v, m: scaled_dot_product_attention(
            q, k, v, attn_mask=m, return_weights=return_weights, **options)
    fixed = tinylm.tensor(mask)
    return arrays, lambda q, k, v: scaled_dot_product_attention(
        q, k, v, attn_mask=fixed, return_weights=return_weights, **options)


# ----- causal_self_attention: packed q, k, v rows, as a GPT's c_attn gives them -------------


def composed_causal_self_attention(qkv, n_head):
    """Split, view per head, causal SDPA, heads side by side again: what the packed op must equal."""
    batch, length, packed = qkv.shape
    width = packed // 3
    q, k, v = (t.reshape(batch, length, n_head, width // n_head).transpose(1, 2) for t in qkv.split(width, dim=2))
    y, _ = composed_sdpa(q, k, v, is_causal=True)
    return y.transpose(1, 2).reshape(batch, length, width)


@st.composite
def packed_qkv(draw):
    n_head = draw(st.integers(1, 3))
    head = draw(st.integers(1, 4))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), 3 * n_head * head)
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3, allow_nan=False)))
    return values, n_head


@covers(CausalSelfAttentionFunction)
@settings(max_examples=30)
@given(inputs=packed_qkv())
def test_causal_self_attention_gradients_match_finite_differences(inputs):
    qkv, n_head = inputs
    assert tinylm.gradcheck(lambda x: causal_self_attention(x, n_head), _leaves([qkv]))


@covers(CausalSelfAttentionFunction)
@settings(max_examples=30)
@given(inputs=packed_qkv())
def test_causal_self_attention_equals_split_heads_and_sdpa(inputs):
    qkv, n_head = inputs
    _assert_same_values_and_gradients(lambda x: causal_self_attention(x, n_head),
                                      lambda x: composed_causal_self_attention(x, n_head), [qkv])  # fmt: skip


def test_causal_self_attention_of_no_positions_is_empty():
    qkv = tinylm.zeros(2, 0, 12, requires_grad=True)
    y = causal_self_attention(qkv, 2)
    assert y.shape == (2, 0, 4)
    y.sum().backward()
    assert qkv.grad.shape == (2, 0, 12)


def test_causal_self_attention_in_float32_is_within_rounding_of_float64():
    qkv = np.random.default_rng(7).standard_normal((3, 16, 3 * 4 * 8))
    exact, single = _leaves([qkv]), _leaves([qkv.astype(np.float32)])
    g = np.random.default_rng(8).standard_normal((3, 16, 32))
    (causal_self_attention(exact[0], 4) * tinylm.tensor(g)).sum().backward()
    (causal_self_attention(single[0], 4) * tinylm.tensor(g.astype(np.float32))).sum().backward()
    assert single[0].grad.dtype == np.float32
    assert_close(causal_self_attention(single[0], 4).numpy(), causal_self_attention(exact[0], 4).numpy(), np.float32)
    assert_close(single[0].grad.numpy(), exact[0].grad.numpy(), np.float32)


@pytest.mark.parametrize(
    "qkv, n_head, message",
    [
        (tinylm.zeros(2, 3, 12), 3, r"qkv must have shape \(batch, time, 3 \* n_embd\) .*got shape \(2, 3, 12\)"),
        (tinylm.zeros(2, 12), 2, r"qkv must have shape .*got shape \(2, 12\)"),
        (tinylm.zeros(2, 3, 12), 0, "n_head must be a positive int, got 0"),
        (tinylm.zeros(2, 3, 12, dtype=tinylm.int64), 2, "qkv must be floating-point, got int64"),
    ],
)
def test_causal_self_attention_rejects_bad_input(qkv, n_head, message):
    with pytest.raises((ValueError, TypeError), match=f"causal_self_attention: {message}"):
        causal_self_attention(qkv, n_head)


# ----- scaled_dot_product_attention: three ways -------------------------------------------


@covers(AttentionFunction, ops=["F.scaled_dot_product_attention"])
@settings(max_examples=40)
@given(inputs=sdpa_inputs(), return_weights=st.booleans())
def test_sdpa_gradients_match_finite_differences(inputs, return_weights):
    arrays, call = _sdpa_arrays_and_call(inputs, return_weights)
    leaves = _leaves(arrays)
    if inputs["mask_grad"]:
        # finite differences cannot move a -inf entry: check the finite ones, add the -inf as a constant
        finite = np.isfinite(arrays[3])
        leaves[3] = tinylm.tensor(np.where(finite, arrays[3], 0.0), requires_grad=True)
        minus_inf = tinylm.tensor(np.where(finite, 0.0, -np.inf))
        with_bias = call
        call = lambda q, k, v, m: with_bias(q, k, v, m + minus_inf)  # noqa: E731
    assert tinylm.gradcheck(call, leaves)


@covers(AttentionFunction)
@pytest.mark.parametrize("mask_shape", [(3, 5), (2, 1, 5), (2, 3, 5), (1, 5)])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_additive_mask_gets_its_gradient(mask_shape, causal):
    """A float mask is a learnable bias (ALiBi-like): its gradient is checked on fixed,
    non-degenerate shapes, against finite differences and against the composition."""
    rng = np.random.default_rng(len(mask_shape) + causal)
    q, k, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 2))
    bias = rng.standard_normal(mask_shape)
    minus_inf = tinylm.tensor(np.where(rng.random(mask_shape) < 0.2, -np.inf, 0.0))

    def fused(q, k, v, b):
        return scaled_dot_product_attention(q, k, v, attn_mask=b + minus_inf, is_causal=causal, return_weights=True)

    def composed(q, k, v, b):
        return composed_sdpa(q, k, v, b + minus_inf, causal)

    assert tinylm.gradcheck(fused, _leaves([q, k, v, bias]))
    _assert_same_values_and_gradients(fused, composed, [q, k, v, bias])


@covers(AttentionFunction)
@settings(max_examples=10)
@given(inputs=sdpa_inputs(mask_kinds=("none", "bool")), p=st.sampled_from([0.2, 0.5]))
def test_sdpa_with_dropout_gradients_match_finite_differences(inputs, p):
    arrays, _ = _sdpa_arrays_and_call(inputs)
    mask = None if inputs["mask"] is None else tinylm.tensor(inputs["mask"])

    def dropped(q, k, v):
        tinylm.manual_seed(7)  # the same dropout mask on every evaluation
        return scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=inputs["causal"],
                                            return_weights=True)

    assert tinylm.gradcheck(dropped, _leaves(arrays))


@given(inputs=sdpa_inputs(), return_weights=st.booleans())
def test_sdpa_equals_its_composition_from_primitives(inputs, return_weights):
    arrays, call = _sdpa_arrays_and_call(inputs, return_weights)

    def composed(q, k, v, m=None):
        mask = m if m is not None else (None if inputs["mask"] is None else tinylm.tensor(inputs["mask"]))
        out, weights = composed_sdpa(q, k, v, mask, inputs["causal"], inputs["scale"])
        return (out, weights) if return_weights else out

    _assert_same_values_and_gradients(call, composed, arrays)


@given(inputs=sdpa_inputs(mask_kinds=("none", "bool")), p=st.sampled_from([0.1, 0.5]))
def test_sdpa_dropout_equals_composition_with_the_same_mask(inputs, p):
    arrays = [inputs["q"], inputs["k"], inputs["v"]]
    mask = None if inputs["mask"] is None else tinylm.tensor(inputs["mask"])
    scores_shape = np.broadcast_shapes(inputs["q"].shape[:-2], inputs["k"].shape[:-2]) + (
        inputs["q"].shape[-2], inputs["k"].shape[-2])
    tinylm.manual_seed(3)
    keep = keep_mask(scores_shape, p, inputs["q"])  # the draw the op makes after the same seed

    def fused(q, k, v):
        tinylm.manual_seed(3)
        return scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=inputs["causal"],
                                            return_weights=True)

    _assert_same_values_and_gradients(
        fused, lambda q, k, v: composed_sdpa(q, k, v, mask, inputs["causal"], keep=keep), arrays)


def _torch_sdpa_case(torch, dtype, mask_kind, causal, n_queries=4, n_keys=4, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((2, 3, n_queries, 5)).astype(dtype)
    k = rng.standard_normal((2, 3, n_keys, 5)).astype(dtype)
    v = rng.standard_normal((2, 3, n_keys, 6)).astype(dtype)
    mask = None
    if mask_kind == "bool":
        mask = rng.random((n_queries, n_keys)) > 0.3
    elif mask_kind == "float":
        mask = np.where(rng.random((2, 1, n_queries, n_keys)) > 0.3, rng.standard_normal((2, 1, n_queries, n_keys)),
                        -np.inf).astype(dtype)
    return q, k, v, mask


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_matches_pytorch(torch, dtype, mask_kind, causal):
    q, k, v, mask = _torch_sdpa_case(torch, dtype, mask_kind, causal)
    if causal and mask is not None:  # PyTorch refuses both; give it their conjunction
        causal_mask = np.tril(np.ones((4, 4), dtype=bool))
        torch_mask = mask & causal_mask if mask.dtype == bool else np.where(causal_mask, mask, -np.inf)
        torch_causal = False
    else:
        torch_mask, torch_causal = mask, causal
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    ours = [tinylm.tensor(a, requires_grad=True) for a in (q, k, v)]
    expected = torch.nn.functional.scaled_dot_product_attention(
        *theirs, attn_mask=None if torch_mask is None else torch.tensor(torch_mask), is_causal=torch_causal)
    y = scaled_dot_product_attention(*ours, attn_mask=None if mask is None else tinylm.tensor(mask), is_causal=causal)
    assert y.dtype == dtype
    assert_close(y, expected, dtype)
    g = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    expected.backward(torch.tensor(g))
    y.backward(g)
    for name, a, b in zip("qkv", ours, theirs):
        assert_close(a.grad, b.grad, dtype, f"gradient of {name}")


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sdpa_float_mask_gradient_and_scale_match_pytorch(torch, dtype):
    q, k, v, _ = _torch_sdpa_case(torch, dtype, "none", False, n_queries=3, n_keys=5)
    bias = np.random.default_rng(2).standard_normal((3, 5)).astype(dtype)
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v, bias)]
    ours = [tinylm.tensor(a, requires_grad=True) for a in (q, k, v, bias)]
    expected = torch.nn.functional.scaled_dot_product_attention(*theirs[:3], attn_mask=theirs[3], scale=0.3)
    y = scaled_dot_product_attention(*ours[:3], attn_mask=ours[3], scale=0.3)
    assert_close(y, expected, dtype)
    (expected * expected).sum().backward()
    (y * y).sum().backward()
    for name, a, b in zip(["q", "k", "v", "attn_mask"], ours, theirs):
        assert_close(a.grad, b.grad, dtype, f"gradient of {name}")


# ----- scaled_dot_product_attention: semantics ----------------------------------------------


@pytest.mark.parity
def test_causal_mask_is_aligned_to_the_end_of_the_keys(torch):
    """With fewer queries than keys (a KV cache), query i sees keys j <= i + S - L: PyTorch's
    ``causal_lower_right``; PyTorch's own ``is_causal=True`` aligns to the top-left instead."""
    from torch.nn.attention.bias import causal_lower_right

    q, k, v, _ = _torch_sdpa_case(torch, np.float64, "none", True, n_queries=2, n_keys=5)
    y = scaled_dot_product_attention(*(tinylm.tensor(a) for a in (q, k, v)), is_causal=True)
    tq, tk, tv = (torch.tensor(a) for a in (q, k, v))
    lower_right = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=causal_lower_right(2, 5))
    upper_left = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    assert_close(y, lower_right, np.float64)
    assert not np.allclose(y.numpy(), upper_left.numpy())
    # the last query sees every key: the same as no mask at all
    unmasked = scaled_dot_product_attention(*(tinylm.tensor(a) for a in (q, k, v)))
    np.testing.assert_allclose(y.numpy()[..., -1, :], unmasked.numpy()[..., -1, :], rtol=1e-12)


def test_boolean_mask_true_means_attend_and_float_mask_is_added():
    rng = np.random.default_rng(0)
    q, k, v = (tinylm.tensor(rng.standard_normal(s)) for s in ((2, 3), (4, 3), (4, 2)))
    allowed = np.array([True, False, True, False])
    y = scaled_dot_product_attention(q, k, v, attn_mask=tinylm.tensor(allowed))
    only_allowed = scaled_dot_product_attention(q, k[tinylm.tensor([0, 2])], v[tinylm.tensor([0, 2])])
    np.testing.assert_allclose(y.numpy(), only_allowed.numpy(), rtol=1e-12)
    additive = scaled_dot_product_attention(q, k, v, attn_mask=tinylm.tensor(np.where(allowed, 0.0, -np.inf)))
    np.testing.assert_allclose(additive.numpy(), y.numpy(), rtol=1e-12)
    bias = rng.standard_normal((2, 4))
    with_bias = scaled_dot_product_attention(q, k, v, attn_mask=tinylm.tensor(bias))
    scores = q.numpy() @ k.numpy().T / math.sqrt(3) + bias
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(with_bias.numpy(), weights @ v.numpy(), rtol=1e-12)


@pytest.mark.parity
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_a_fully_masked_row_gives_zeros_and_zero_gradients_like_pytorch(torch, mask_kind):
    """Decision: a query that may attend to nothing outputs zeros and passes back zero
    gradients (PyTorch's scaled_dot_product_attention does the same); never NaN."""
    q, k, v, _ = _torch_sdpa_case(torch, np.float64, "none", False, n_queries=3, n_keys=4)
    allowed = np.ones((3, 4), dtype=bool)
    allowed[1] = False
    mask = allowed if mask_kind == "bool" else np.where(allowed, 0.0, -np.inf)
    ours = [tinylm.tensor(a, requires_grad=True) for a in (q, k, v)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    y, weights = scaled_dot_product_attention(*ours, attn_mask=tinylm.tensor(mask), return_weights=True)
    expected = torch.nn.functional.scaled_dot_product_attention(*theirs, attn_mask=torch.tensor(mask))
    assert np.isfinite(y.numpy()).all() and np.isfinite(weights.numpy()).all()
    np.testing.assert_array_equal(y.numpy()[..., 1, :], 0.0)
    np.testing.assert_array_equal(weights.numpy()[..., 1, :], 0.0)
    assert_close(y, expected, np.float64)
    (y * y).sum().backward()
    (expected * expected).sum().backward()
    for a, b in zip(ours, theirs):
        assert np.isfinite(a.grad.numpy()).all()
        assert_close(a.grad, b.grad, np.float64)
    np.testing.assert_array_equal(ours[0].grad.numpy()[..., 1, :], 0.0)


def test_causal_rows_with_no_visible_key_give_zeros():
    """More queries than keys with is_causal: the first L - S queries see no key."""
    rng = np.random.default_rng(0)
    q = tinylm.tensor(rng.standard_normal((4, 2)), requires_grad=True)
    k, v = tinylm.tensor(rng.standard_normal((2, 2))), tinylm.tensor(rng.standard_normal((2, 3)))
    y = scaled_dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_array_equal(y.numpy()[:2], 0.0)
    y.sum().backward()
    assert np.isfinite(q.grad.numpy()).all()


def test_sdpa_handles_empty_sequences():
    q, k, v = tinylm.zeros(2, 0, 3, dtype=np.float64), tinylm.zeros(2, 4, 3, dtype=np.float64), tinylm.zeros(2, 4, 5)
    assert scaled_dot_product_attention(q, k, v.double()).shape == (2, 0, 5)
    q = tinylm.randn(2, 3, 3, dtype=np.float64, requires_grad=True)
    y = scaled_dot_product_attention(q, k[:, :0], v.double()[:, :0])
    np.testing.assert_array_equal(y.numpy(), np.zeros((2, 3, 5)))
    y.sum().backward()
    np.testing.assert_array_equal(q.grad.numpy(), 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sdpa_keeps_the_dtype_and_casts_a_float_mask(dtype):
    q = tinylm.randn(2, 3, 4, dtype=dtype, requires_grad=True)
    mask = tinylm.zeros(3, 3, dtype=np.float64 if dtype == np.float32 else np.float32)
    y, w = scaled_dot_product_attention(q, q, q, attn_mask=mask, return_weights=True)
    assert y.dtype == dtype and w.dtype == dtype
    y.sum().backward()
    assert q.grad.dtype == dtype


def test_sdpa_dropout_drops_whole_weights_and_rescales():
    tinylm.manual_seed(0)
    q = tinylm.zeros(1, 200, 2)  # equal scores: every weight 1/50
    k, v = tinylm.zeros(1, 50, 2), tinylm.ones(1, 50, 1)
    _, weights = scaled_dot_product_attention(q, k, v, dropout_p=0.5, return_weights=True)
    values = weights.numpy()
    assert abs((values == 0).mean() - 0.5) < 0.02
    np.testing.assert_allclose(values[values != 0], 2 / 50, rtol=1e-6)


@pytest.mark.parametrize(
    "shapes, mask, pattern",
    [
        (((2, 3), (4, 2), (4, 2)), None, r"key must have query's feature size 3.*got key shape \(4, 2\)"),
        (((2, 3), (4, 3), (5, 2)), None, r"value must have one row per key: expected shape \(\.\.\., 4, Ev\)"),
        (((3,), (4, 3), (4, 2)), None, r"query must have shape \(\.\.\., length, features\), got shape \(3,\)"),
        (((2, 2, 3), (3, 4, 3), (3, 4, 2)), None, r"the batch dimensions of query \(2, 2, 3\), key \(3, 4, 3\).*do not broadcast"),
        (((2, 3), (4, 3), (4, 2)), (3, 4), r"attn_mask of shape \(3, 4\) does not broadcast to the scores' shape \(2, 4\)"),
    ],
)
def test_sdpa_rejects_wrong_shapes(shapes, mask, pattern):
    q, k, v = (tinylm.zeros(*s) for s in shapes)
    with pytest.raises(ValueError, match="scaled_dot_product_attention: " + pattern):
        scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else tinylm.zeros(*mask))


def test_sdpa_rejects_wrong_dtypes_and_dropout():
    q = tinylm.zeros(2, 3)
    with pytest.raises(TypeError, match="one dtype"):
        scaled_dot_product_attention(q, q.double(), q)
    with pytest.raises(TypeError, match="attn_mask must be boolean or floating-point"):
        scaled_dot_product_attention(q, q, q, attn_mask=tinylm.zeros(2, 2, dtype=np.int64))
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        scaled_dot_product_attention(q, q, q, dropout_p=1.0)


# ----- MultiheadAttention: strategies ------------------------------------------------------


@st.composite
def mha_cases(draw, small=True):
    heads = draw(st.sampled_from([1, 2]))
    e = heads * draw(st.sampled_from([1, 2] if small else [2, 3]))
    batch_first, batched = draw(st.booleans()), draw(st.booleans())
    n = draw(st.integers(1, 2))
    n_queries, n_keys = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["self", "kv", "cross"]))  # query is key is value / key is value / all differ
    if kind == "self":
        n_keys = n_queries

    def layout(length):
        if not batched:
            return (length, e)
        return (n, length, e) if batch_first else (length, n, e)

    query = draw(S.arrays(layout(n_queries)))
    key = draw(S.arrays(layout(n_keys)))
    value = draw(S.arrays(layout(n_keys)))
    attn_kind = draw(st.sampled_from(["none", "bool2d", "float2d", "bool3d", "float3d"]))
    attn_mask = None
    if attn_kind != "none":
        shape = (n_queries, n_keys) if attn_kind.endswith("2d") else ((n * heads) if batched else heads, n_queries, n_keys)
        blocked = draw(hnp.arrays(bool, shape, elements=st.booleans()))
        attn_mask = blocked if attn_kind.startswith("bool") else np.where(blocked, -np.inf, draw(S.arrays(shape, -1, 1)))
    padding = None
    if draw(st.booleans()):
        padding = draw(hnp.arrays(bool, (n, n_keys) if batched else (n_keys,), elements=st.booleans()))
        if draw(st.booleans()):
            padding = np.where(padding, -np.inf, 0.0)
    return dict(
        heads=heads, e=e, batch_first=batch_first, kind=kind, query=query, key=key, value=value,
        attn_mask=attn_mask, key_padding_mask=padding, bias=draw(st.booleans()),
        is_causal=draw(st.booleans()) and kind == "self", need_weights=draw(st.booleans()),
        average=draw(st.booleans()),
    )


def _mha_layer(case, dtype=np.float64, seed=0):
    tinylm.manual_seed(seed)
    layer = MultiheadAttention(case["e"], case["heads"], bias=case["bias"], batch_first=case["batch_first"], dtype=dtype)
    if case["bias"]:  # PyTorch starts the biases at zero; nonzero ones test more
        rng = np.random.default_rng(seed)
        layer.in_proj_bias.data[...] = rng.standard_normal(layer.in_proj_bias.shape)
        layer.out_proj.bias.data[...] = rng.standard_normal(layer.out_proj.bias.shape)
    return layer


def _mha_arrays(case):
    if case["kind"] == "self":
        return [case["query"]]
    if case["kind"] == "kv":
        return [case["query"], case["key"]]
    return [case["query"], case["key"], case["value"]]


def _mha_call(case, forward):
    """A function of the query/key/value leaves (as many as the case's kind has) calling ``forward``."""
    masks = {name: None if case[name] is None else tinylm.tensor(case[name]) for name in ("attn_mask", "key_padding_mask")}

    def call(*tensors):
        q = tensors[0]
        k = tensors[1] if len(tensors) > 1 else q
        v = tensors[2] if len(tensors) > 2 else k
        return forward(q, k, v, **masks)

    return call


# ----- MultiheadAttention: three ways ------------------------------------------------------


@covers(AttentionFunction)
@settings(max_examples=20)
@given(case=mha_cases())
def test_mha_gradients_match_finite_differences(case):
    layer = _mha_layer(case)
    params = list(layer.parameters())

    def forward(q, k, v, **masks):
        out, weights = layer(q, k, v, need_weights=case["need_weights"], is_causal=case["is_causal"],
                             average_attn_weights=case["average"], **masks)
        return (out,) if weights is None else (out, weights)

    call = _mha_call(case, forward)
    leaves = _leaves(_mha_arrays(case))
    assert tinylm.gradcheck(lambda *tensors: call(*tensors[: len(leaves)]), leaves + params)


@given(case=mha_cases(small=False))
def test_mha_equals_its_composition_from_primitives(case):
    layer = _mha_layer(case)

    def fused(q, k, v, **masks):
        return layer(q, k, v, is_causal=case["is_causal"], average_attn_weights=case["average"], **masks)

    def composed(q, k, v, **masks):
        return composed_mha(layer, q, k, v, is_causal=case["is_causal"], average_attn_weights=case["average"], **masks)

    _assert_same_values_and_gradients(_mha_call(case, fused), _mha_call(case, composed), _mha_arrays(case),
                                      params=list(layer.parameters()))


@settings(max_examples=10)
@given(case=mha_cases(), p=st.sampled_from([0.2, 0.6]))
def test_mha_dropout_equals_composition_with_the_same_mask(case, p):
    layer = _mha_layer(case)
    layer.dropout = p
    arrays = _mha_arrays(case)
    batched = case["query"].ndim == 3
    n = case["query"].shape[0 if case["batch_first"] or not batched else 1] if batched else 1
    n_queries = case["query"].shape[1 if batched and case["batch_first"] else 0]
    n_keys = case["key" if case["kind"] != "self" else "query"].shape[1 if batched and case["batch_first"] else 0]
    tinylm.manual_seed(5)
    keep = keep_mask((n, case["heads"], n_queries, n_keys), p, np.zeros(1))

    def fused(q, k, v, **masks):
        tinylm.manual_seed(5)
        return layer(q, k, v, is_causal=case["is_causal"], average_attn_weights=False, **masks)

    def composed(q, k, v, **masks):
        out, weights = composed_mha(layer, q, k, v, is_causal=case["is_causal"], average_attn_weights=False,
                                    keep=keep, **masks)
        return out, weights

    _assert_same_values_and_gradients(_mha_call(case, fused), _mha_call(case, composed), arrays,
                                      params=list(layer.parameters()))
    layer.eval()  # eval mode: no dropout, deterministic
    call = _mha_call(case, lambda q, k, v, **masks: layer(q, k, v, **masks)[0])
    first, second = call(*_leaves(arrays)), call(*_leaves(arrays))
    np.testing.assert_array_equal(first.numpy(), second.numpy())


def _torch_masks(torch, case):
    return {name: None if case[name] is None else torch.tensor(case[name]) for name in ("attn_mask", "key_padding_mask")}


@pytest.mark.parity
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask and attn_mask")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["self", "cross"])
@pytest.mark.parametrize("masks", ["none", "bool", "float", "mixed"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_mha_matches_pytorch(torch, dtype, batch_first, kind, masks, mode):
    rng = np.random.default_rng(0)
    n, n_queries, n_keys, e, h = 2, 3, (3 if kind == "self" else 5), 8, 2
    torch.manual_seed(0)
    reference = torch.nn.MultiheadAttention(e, h, batch_first=batch_first).to(getattr(torch, np.dtype(dtype).name))
    layer = MultiheadAttention(e, h, batch_first=batch_first, dtype=dtype)
    with torch.no_grad():  # nonzero biases exercise more
        reference.in_proj_bias.normal_()
        reference.out_proj.bias.normal_()
    copy_weights(reference, layer)
    reference.train(mode == "train")
    layer.train(mode == "train")

    def layout(length):
        return (n, length, e) if batch_first else (length, n, e)

    query = rng.standard_normal(layout(n_queries)).astype(dtype)
    key = query if kind == "self" else rng.standard_normal(layout(n_keys)).astype(dtype)
    value = query if kind == "self" else rng.standard_normal(layout(n_keys)).astype(dtype)
    case = dict(attn_mask=None, key_padding_mask=None)
    if masks != "none":
        padding = np.zeros((n, n_keys), dtype=bool)
        padding[0, -1] = True
        blocked = rng.random((n_queries, n_keys)) > 0.7
        blocked[:, 0] = False
        attn = np.where(blocked, -np.inf, rng.standard_normal(blocked.shape)).astype(dtype)
        case = dict(
            attn_mask=blocked if masks == "bool" else attn,
            key_padding_mask=padding if masks != "float" else np.where(padding, -np.inf, 0.0).astype(dtype),
        )
    if kind == "self":
        theirs = [torch.tensor(query, requires_grad=True)] * 3
        ours = [tinylm.tensor(query, requires_grad=True)] * 3
    else:
        theirs = [torch.tensor(a, requires_grad=True) for a in (query, key, value)]
        ours = [tinylm.tensor(a, requires_grad=True) for a in (query, key, value)]
    expected, expected_weights = reference(*theirs, **_torch_masks(torch, case))
    masks_ours = {name: None if a is None else tinylm.tensor(a) for name, a in case.items()}
    y, weights = layer(*ours, **masks_ours)
    assert y.dtype == dtype and weights.dtype == dtype and y.shape == tuple(expected.shape)
    assert_close(y, expected, dtype, "output")
    assert_close(weights, expected_weights, dtype, "averaged weights")
    g, gw = rng.standard_normal(y.shape).astype(dtype), rng.standard_normal(weights.shape).astype(dtype)
    ((expected * torch.tensor(g)).sum() + (expected_weights * torch.tensor(gw)).sum()).backward()
    ((y * tinylm.tensor(g)).sum() + (weights * tinylm.tensor(gw)).sum()).backward()
    for name, a, b in list(zip(["query", "key", "value"], ours, theirs))[: 1 if kind == "self" else 3]:
        assert_close(a.grad, b.grad, dtype, f"gradient of {name}")
    assert_same_gradients(layer, reference, dtype)


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("need_weights, average", [(False, True), (True, False)])
def test_mha_unbatched_per_head_weights_and_3d_mask_match_pytorch(torch, dtype, need_weights, average):
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    reference = torch.nn.MultiheadAttention(6, 3, bias=False).to(getattr(torch, np.dtype(dtype).name))
    layer = MultiheadAttention(6, 3, bias=False, dtype=dtype)
    copy_weights(reference, layer)
    x, memory = rng.standard_normal((4, 6)).astype(dtype), rng.standard_normal((5, 6)).astype(dtype)
    blocked = rng.random((3, 4, 5)) > 0.6  # (heads, L, S) for an unbatched input
    blocked[..., 2] = False
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, memory)]
    ours = [tinylm.tensor(a, requires_grad=True) for a in (x, memory)]
    expected, expected_weights = reference(theirs[0], theirs[1], theirs[1], attn_mask=torch.tensor(blocked),
                                           need_weights=need_weights, average_attn_weights=average)
    y, weights = layer(ours[0], ours[1], ours[1], attn_mask=tinylm.tensor(blocked), need_weights=need_weights,
                       average_attn_weights=average)
    assert_close(y, expected, dtype)
    if need_weights:
        assert weights.shape == (3, 4, 5)
        assert_close(weights, expected_weights, dtype)
    else:
        assert weights is None and expected_weights is None
    (expected * expected).sum().backward()
    (y * y).sum().backward()
    for a, b in zip(ours, theirs):
        assert_close(a.grad, b.grad, dtype)
    assert_same_gradients(layer, reference, dtype)


@pytest.mark.parity
def test_mha_initialisation_and_state_dict_are_pytorchs(torch):
    reference = torch.nn.MultiheadAttention(16, 4)
    layer = MultiheadAttention(16, 4)
    ours, theirs = layer.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert all(tuple(ours[name].shape) == tuple(theirs[name].shape) for name in ours)
    bound = math.sqrt(6 / (16 + 48))  # xavier_uniform_ on (48, 16)
    values = layer.in_proj_weight.numpy()
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.9 * bound
    np.testing.assert_array_equal(layer.in_proj_bias.numpy(), 0.0)
    np.testing.assert_array_equal(layer.out_proj.bias.numpy(), 0.0)
    out_bound = 1 / math.sqrt(16)  # out_proj.weight keeps Linear's initialisation
    assert 0.9 * out_bound < np.abs(layer.out_proj.weight.numpy()).max() <= out_bound
    no_bias = MultiheadAttention(16, 4, bias=False)
    assert list(no_bias.state_dict()) == list(torch.nn.MultiheadAttention(16, 4, bias=False).state_dict())


def test_mha_fully_masked_query_gives_zeros_not_nan():
    """PyTorch's layer gives NaN here when it returns weights; this one gives zeros (the
    same as PyTorch's scaled_dot_product_attention)."""
    layer = MultiheadAttention(4, 2, batch_first=True, dtype=np.float64)
    x = tinylm.randn(2, 3, 4, dtype=np.float64, requires_grad=True)
    padding = np.zeros((2, 3), dtype=bool)
    padding[0] = True  # every key of the first sequence is padding
    y, weights = layer(x, x, x, key_padding_mask=tinylm.tensor(padding))
    np.testing.assert_array_equal(weights.numpy()[0], 0.0)
    assert np.isfinite(y.numpy()).all()
    (y * y).sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    assert all(np.isfinite(p.grad.numpy()).all() for p in layer.parameters())


def test_mha_is_causal_alone_equals_the_causal_mask():
    layer = MultiheadAttention(4, 2, dtype=np.float64)
    x = tinylm.randn(5, 2, 4, dtype=np.float64)
    mask = tinylm.tensor(np.triu(np.ones((5, 5), dtype=bool), 1))  # True above the diagonal: not allowed
    y, w = layer(x, x, x, is_causal=True)
    z, u = layer(x, x, x, attn_mask=mask)
    np.testing.assert_allclose(y.numpy(), z.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w.numpy(), u.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(np.triu(w.numpy(), 1), 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mha_keeps_its_dtype(dtype):
    layer = MultiheadAttention(4, 2, dtype=dtype)
    assert all(p.dtype == dtype for p in layer.parameters())
    x = tinylm.randn(3, 2, 4, dtype=dtype, requires_grad=True)
    y, w = layer(x, x, x)
    assert y.dtype == dtype and w.dtype == dtype
    y.sum().backward()
    assert x.grad.dtype == dtype and all(p.grad.dtype == dtype for p in layer.parameters())


def test_mha_deep_copy_is_independent():
    layer = MultiheadAttention(4, 2)
    twin = copy.deepcopy(layer)
    assert [n for n, _ in twin.named_parameters()] == [n for n, _ in layer.named_parameters()]
    for a, b in zip(layer.parameters(), twin.parameters()):
        assert a is not b and a.data is not b.data
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    twin.in_proj_weight.data[...] = 0
    assert np.abs(layer.in_proj_weight.numpy()).max() > 0


@pytest.mark.parametrize(
    "shapes, kwargs, pattern",
    [
        (((3, 2, 5), (3, 2, 5), (3, 2, 5)), {}, r"expected query of shape \(L, N, E\) with E=4.*got \(3, 2, 5\)"),
        (((3, 2, 4), (3, 2, 4), (3, 2, 4, 1)), {}, r"expected value of shape \(S, N, E\) with E=4.*got \(3, 2, 4, 1\)"),
        (((2, 3, 2, 4),) * 3, {}, r"expected query of shape \(L, N, E\) or \(L, E\) with E=4, got \(2, 3, 2, 4\)"),
        (((3, 2, 4), (5, 2, 4), (4, 2, 4)), {}, r"key and value must have the same shape, got \(5, 2, 4\) and \(4, 2, 4\)"),
        (((3, 2, 4), (5, 1, 4), (5, 1, 4)), {}, r"query and key must have the same batch size \(dimension 1\), got shapes \(3, 2, 4\) and \(5, 1, 4\)"),
        (((3, 2, 4), (5, 2, 4), (5, 2, 4)), {"attn_mask": (3, 4)},
         r"expected attn_mask of shape \(3, 5\) or \(4, 3, 5\), got \(3, 4\)"),
        (((3, 2, 4), (5, 2, 4), (5, 2, 4)), {"key_padding_mask": (5, 2)},
         r"expected key_padding_mask of shape \(2, 5\), got \(5, 2\)"),
    ],
)
def test_mha_rejects_wrong_shapes_naming_itself(shapes, kwargs, pattern):
    layer = MultiheadAttention(4, 2)
    tensors = [tinylm.zeros(*s) for s in shapes]
    masks = {name: tinylm.zeros(*s, dtype=bool) for name, s in kwargs.items()}
    with pytest.raises(ValueError, match="MultiheadAttention: " + pattern):
        layer(*tensors, **masks)


def test_mha_rejects_bad_construction():
    with pytest.raises(ValueError, match=r"MultiheadAttention: embed_dim \(6\) must be a positive multiple of num_heads \(4\)"):
        MultiheadAttention(6, 4)
    with pytest.raises(ValueError, match="dropout"):
        MultiheadAttention(4, 2, dropout=1.0)


# ----- the key/value cache -------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("grad", [False, True])
def test_cached_decoding_equals_full_causal_recomputation(batch_first, grad):
    """For every prompt length, feed the prompt at once and the rest one position at a time:
    outputs and weights equal one causal pass over the whole sequence."""
    tinylm.manual_seed(0)
    layer = MultiheadAttention(8, 2, batch_first=batch_first, dtype=np.float64)
    total = 6
    x = tinylm.randn(2, total, 8, dtype=np.float64)
    if not batch_first:
        x = x.transpose(0, 1)
    seq = 1 if batch_first else 0

    def piece(start, stop):
        return x[:, start:stop] if batch_first else x[start:stop]

    with tinylm.set_grad_enabled(grad):
        full, full_weights = layer(x, x, x, is_causal=True)
        for prompt in range(1, total + 1):
            cache = KVCache(max_length=total)
            chunk = piece(0, prompt)
            outs, weights = [], []
            out, w = layer(chunk, chunk, chunk, is_causal=True, cache=cache)
            outs.append(out)
            weights.append(w.numpy())
            for t in range(prompt, total):
                assert cache.length == t
                step = piece(t, t + 1)
                out, w = layer(step, step, step, is_causal=True, cache=cache)
                outs.append(out)
                weights.append(w.numpy())
            np.testing.assert_allclose(tinylm.cat(outs, dim=seq).numpy(), full.numpy(), rtol=1e-12, atol=1e-14)
            stop = prompt
            np.testing.assert_allclose(weights[0], full_weights.numpy()[:, :prompt, :prompt], rtol=1e-12, atol=1e-14)
            for w in weights[1:]:
                np.testing.assert_allclose(w[:, 0, : stop + 1], full_weights.numpy()[:, stop, : stop + 1],
                                           rtol=1e-12, atol=1e-14)
                stop += 1
            assert cache.length == total


def test_cache_gradients_reach_the_new_positions():
    tinylm.manual_seed(1)
    layer = MultiheadAttention(4, 2, batch_first=True, dtype=np.float64)
    cache = KVCache(4)
    prompt = tinylm.randn(1, 3, 4, dtype=np.float64)
    with tinylm.no_grad():
        layer(prompt, prompt, prompt, is_causal=True, cache=cache)
    step = tinylm.randn(1, 1, 4, dtype=np.float64, requires_grad=True)
    y, _ = layer(step, step, step, is_causal=True, cache=cache)
    y.sum().backward()
    assert step.grad is not None and np.abs(step.grad.numpy()).max() > 0
    assert layer.in_proj_weight.grad is not None


@st.composite
def cached_step_cases(draw):
    """A prompt already in the cache and 1 or 2 new positions, batched or not, odd widths."""
    heads = draw(st.sampled_from([1, 2]))
    e = heads * draw(st.sampled_from([1, 3]))
    batch_first, batched = draw(st.booleans()), draw(st.booleans())
    n, prompt, steps = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))

    def layout(length):
        if not batched:
            return (length, e)
        return (n, length, e) if batch_first else (length, n, e)

    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return dict(heads=heads, e=e, batch_first=batch_first, bias=draw(st.booleans()),
                seq=1 if batched and batch_first else 0, prompt=rng.standard_normal(layout(prompt)),
                step=rng.standard_normal(layout(steps)), need_weights=draw(st.booleans()))


@covers(AttentionFunction)
@settings(max_examples=12)
@given(case=cached_step_cases())
def test_cached_decoding_step_gradients_match_finite_differences(case):
    """Gradients through an incremental step with the cache: the new positions and every parameter.
    The stored positions are constants (as KVCache documents), so each evaluation starts from a
    fresh cache holding the prompt's keys and values computed once; then the input gradient equals
    that of one causal pass over prompt and step with the prompt held constant."""
    layer = _mha_layer(case)
    prompt = tinylm.tensor(case["prompt"])
    length = case["prompt"].shape[case["seq"]] + case["step"].shape[case["seq"]]
    with tinylm.no_grad():
        filled = KVCache(max_length=length)
        layer(prompt, prompt, prompt, is_causal=True, cache=filled)
        past_keys, past_values = filled.keys.numpy().copy(), filled.values.numpy().copy()

    def step(x, *params):
        cache = KVCache(max_length=length)
        cache.update(tinylm.tensor(past_keys), tinylm.tensor(past_values))
        out, weights = layer(x, x, x, is_causal=True, need_weights=case["need_weights"], cache=cache)
        assert cache.length == length
        return (out,) if weights is None else (out, weights)

    x = tinylm.tensor(case["step"], requires_grad=True)
    assert tinylm.gradcheck(step, [x] + list(layer.parameters()))

    g = np.random.default_rng(0).standard_normal(case["step"].shape)
    (step(x)[0] * tinylm.tensor(g)).sum().backward()
    whole_step = tinylm.tensor(case["step"], requires_grad=True)
    whole = tinylm.cat([prompt, whole_step], dim=case["seq"])
    out = layer(whole, whole, whole, is_causal=True, need_weights=False)[0]
    steps = case["step"].shape[case["seq"]]
    last = out[:, -steps:] if case["seq"] == 1 else out[-steps:]
    (last * tinylm.tensor(g)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), whole_step.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_a_stack_of_layers_decodes_with_one_cache_per_layer():
    """How a GPT uses the cache: one per layer, positions offset by ``cache.length``."""
    from tinylm.nn.layers.positional import SinusoidalPositionalEncoding

    tinylm.manual_seed(2)
    layers = [MultiheadAttention(8, 2, batch_first=True, dtype=np.float64) for _ in range(3)]
    positions = SinusoidalPositionalEncoding(8, max_len=16, batch_first=True, dtype=np.float64)

    def run(x, caches=None):
        h = positions(x, offset=0 if caches is None else caches[0].length)
        for i, layer in enumerate(layers):
            h = h + layer(h, h, h, is_causal=True, need_weights=False, cache=None if caches is None else caches[i])[0]
        return h

    x = tinylm.randn(2, 7, 8, dtype=np.float64)
    with tinylm.no_grad():
        full = run(x)
        caches = [KVCache(max_length=7) for _ in layers]
        outs = [run(x[:, :3], caches)] + [run(x[:, t : t + 1], caches) for t in range(3, 7)]
    np.testing.assert_allclose(tinylm.cat(outs, dim=1).numpy(), full.numpy(), rtol=1e-12, atol=1e-13)


def test_cache_checks_its_maximum_length_and_shapes():
    layer = MultiheadAttention(4, 2, batch_first=True)
    cache = KVCache(max_length=3)
    x = tinylm.randn(1, 2, 4)
    layer(x, x, x, is_causal=True, cache=cache)
    with pytest.raises(ValueError, match=r"KVCache: cannot append 2 positions to the 2 stored: the cache holds at most max_length=3"):
        layer(x, x, x, is_causal=True, cache=cache)
    step = tinylm.randn(1, 1, 4)
    layer(step, step, step, cache=cache)  # exactly full is fine
    assert len(cache) == 3 and cache.keys.shape == (1, 2, 3, 2) and cache.values.shape == (1, 2, 3, 2)
    with pytest.raises(ValueError, match="max_length=3"):
        layer(step, step, step, cache=cache)
    other = tinylm.randn(2, 1, 4)
    cache.reset()
    assert len(cache) == 0 and cache.keys.shape == (1, 2, 0, 2)
    layer(other, other, other, cache=cache)  # a new batch size after reset() is fine
    with pytest.raises(ValueError, match="KVCache.update: the cache stores"):
        layer(step, step, step, cache=cache)  # but not in the middle of a sequence
    with pytest.raises(ValueError, match="MultiheadAttention: a KVCache is for self-attention"):
        layer(step, other[:1], other[:1], cache=cache)
    with pytest.raises(ValueError, match="KVCache: max_length must be at least 1"):
        KVCache(0)
