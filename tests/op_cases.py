"""One table of every public op: how to draw examples, and the NumPy computation it must equal.

Each ``OpCase`` draws ``Example``s: a tinylm function, the same computation
written with NumPy, and the input arrays (float ones become tensors that
require grad; integer and boolean ones are indices and masks). The forward
tests compare the two functions; the gradient tests run ``tinylm.gradcheck``
on the tinylm one. Values are drawn away from the points where an op is not
differentiable (0 for relu and abs, ties for max).
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import strategies as st

import tinylm
from tinylm.ops.conversion import Clone
from tinylm.ops.elementwise import (
    Abs, Add, Clamp, Cos, Div, Erf, Exp, Log, Mul, Neg, Pow, PowScalar, Relu, Sigmoid, Sin, Sqrt, Sub, Tanh,
)
from tinylm.ops.indexing import Gather, GetItem, IndexSelect, MaskedFill, Triangle, Where
from tinylm.ops.linalg import Einsum, MatMul
from tinylm.ops.reduction import MaxMin, Mean, Norm, Sum, Var
from tinylm.ops.shape import Cat, Expand, Permute, Repeat, Reshape, Split, Stack
from tinylm.ops.softmax import LogSoftmax, Softmax
from tests import strategies as S


@dataclass
class Example:
    fn: Callable  # tensors -> tensor (or tuple of tensors)
    reference: Callable  # arrays -> array (or tuple of arrays)
    inputs: list  # NumPy arrays, in the order both functions take them
    torch: Callable = None  # (torch module, *torch tensors) -> the same with PyTorch, for the parity tests


@dataclass
class OpCase:
    op: str  # the public name in tinylm.ops.__all__
    examples: st.SearchStrategy
    functions: tuple = field(default=())  # the Function classes an example runs


CASES = []


def case(op, functions):
    """Register the decorated composite strategy as the examples for ``op``."""

    def register(strategy_function):
        CASES.append(OpCase(op, st.composite(strategy_function)(), tuple(functions)))
        return strategy_function

    return register


# ----- elementwise ------------------------------------------------------------

_BINARY = {
    "add": (Add, lambda a, b: a + b, np.add, {}),
    "sub": (Sub, lambda a, b: a - b, np.subtract, {}),
    "mul": (Mul, lambda a, b: a * b, np.multiply, {}),
    "div": (Div, lambda a, b: a / b, np.divide, {"margin": 0.5}),
}


def _binary_case(op, function_class, fn, reference, b_bounds):
    @case(op, [function_class])
    def examples(draw):
        shape_a, shape_b = draw(S.broadcast_shapes())
        a = draw(S.arrays(shape_a))
        if draw(st.integers(0, 4)) == 0:  # sometimes a Python number on one side
            number = draw(st.sampled_from([2.5, -1.5, 3]))
            if draw(st.booleans()):
                return Example(lambda x: fn(x, number), lambda x: reference(x, number), [a])
            b = draw(S.arrays(shape_b, **b_bounds))
            return Example(lambda x: fn(number, x), lambda x: reference(number, x), [b])
        b = draw(S.arrays(shape_b, **b_bounds))
        return Example(fn, reference, [a, b])


for _op, (_cls, _fn, _ref, _bounds) in _BINARY.items():
    _binary_case(_op, _cls, _fn, _ref, _bounds)


@case("pow", [Pow])
def _pow_tensors(draw):
    shape_a, shape_b = draw(S.broadcast_shapes())
    base = draw(S.arrays(shape_a, low=0.5, high=3.0))
    exponent = draw(S.arrays(shape_b, low=-2.0, high=2.0))
    return Example(lambda a, b: a**b, np.power, [base, exponent])


@case("pow", [PowScalar])
def _pow_number(draw):
    exponent = draw(st.sampled_from([2, 3, 0.5, -1.0, 1.5]))
    base = draw(S.arrays(draw(S.shapes()), low=0.5, high=3.0))
    return Example(lambda a: a**exponent, lambda a: np.power(a, exponent), [base])


def _unary_case(op, function_class, fn, reference, **bounds):
    @case(op, [function_class])
    def examples(draw):
        return Example(fn, reference, [draw(S.arrays(draw(S.shapes()), **bounds))])


_unary_case("neg", Neg, lambda x: -x, np.negative)
_unary_case("exp", Exp, tinylm.exp, np.exp)
_unary_case("log", Log, tinylm.log, np.log, low=0.1, high=5.0)
_unary_case("tanh", Tanh, tinylm.tanh, np.tanh)
_unary_case("sigmoid", Sigmoid, tinylm.sigmoid, lambda x: 1 / (1 + np.exp(-x)), low=-6.0, high=6.0)
_unary_case("relu", Relu, tinylm.relu, lambda x: np.maximum(x, 0), margin=1e-3)
_unary_case("sqrt", Sqrt, tinylm.sqrt, np.sqrt, low=0.1, high=5.0)
_unary_case("abs", Abs, tinylm.abs, np.abs, margin=1e-3)
_unary_case("erf", Erf, tinylm.erf, np.vectorize(math.erf, otypes=[np.float64]))


# ----- reductions ----------------------------------------------------------------


def _reduction_case(op, function_class, method, reference):
    @case(op, [function_class])
    def examples(draw):
        x = draw(S.arrays(draw(S.shapes())))
        dim = draw(S.dim_or_dims(x.ndim))
        keepdim = draw(st.booleans())
        axis = None if dim is None else tuple(np.atleast_1d(dim) % max(x.ndim, 1)) if x.ndim else None
        return Example(
            lambda t: getattr(t, method)(dim=dim, keepdim=keepdim),
            lambda a: reference(a, axis=axis, keepdims=keepdim),
            [x],
        )


_reduction_case("sum", Sum, "sum", np.sum)
_reduction_case("mean", Mean, "mean", np.mean)


def _extreme_case(op, reference, arg_reference):
    @case(op, [MaxMin])
    def whole(draw):
        x = draw(S.distinct_arrays(draw(S.shapes(min_side=1))))
        return Example(lambda t: getattr(t, op)(), reference, [x])

    @case(op, [Gather])
    def along_dim(draw):
        x = draw(S.distinct_arrays(draw(S.shapes(min_dims=1, min_side=1))))
        dim = draw(S.dims(x.ndim))
        keepdim = draw(st.booleans())

        def expected(a):
            index = np.expand_dims(arg_reference(a, axis=dim), dim)
            values = np.take_along_axis(a, index, axis=dim)
            return values if keepdim else values.squeeze(dim)

        return Example(lambda t: getattr(t, op)(dim=dim, keepdim=keepdim).values, expected, [x])


_extreme_case("max", np.max, np.argmax)
_extreme_case("min", np.min, np.argmin)


# ----- matmul ----------------------------------------------------------------------


@case("matmul", [MatMul])
def _matmul(draw):
    m, k, n = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(1, 3))
    batch_a, batch_b = draw(S.broadcast_shapes(max_dims=2, min_side=1))
    form = draw(st.sampled_from(["matrix", "vector-left", "vector-right", "dot"]))
    shape_a = batch_a + (m, k)
    shape_b = batch_b + (k, n)
    if form == "vector-left":
        shape_a = (k,)
    elif form == "vector-right":
        shape_b = (k,)
    elif form == "dot":
        shape_a, shape_b = (k,), (k,)
    a, b = draw(S.arrays(shape_a)), draw(S.arrays(shape_b))
    return Example(lambda x, y: x @ y, np.matmul, [a, b])


# ----- shape ------------------------------------------------------------------------


@case("reshape", [Reshape])
def _reshape(draw):
    x = draw(S.arrays(draw(S.shapes())))
    target = draw(S.reshape_targets(x.size))
    return Example(lambda t: t.reshape(target), lambda a: a.reshape(target), [x])


@case("view", [Reshape])
def _view(draw):
    x = draw(S.arrays(draw(S.shapes())))
    target = draw(S.reshape_targets(x.size))
    return Example(lambda t: tinylm.ops.view(t, *target), lambda a: a.reshape(target), [x])


@case("permute", [Permute])
def _permute(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1))))
    order = draw(st.permutations(range(x.ndim)))
    return Example(lambda t: t.permute(*order), lambda a: a.transpose(order), [x])


@case("transpose", [Permute])
def _transpose(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1))))
    d0, d1 = draw(S.dims(x.ndim)), draw(S.dims(x.ndim))
    return Example(lambda t: t.transpose(d0, d1), lambda a: np.swapaxes(a, d0, d1), [x])


@case("expand", [Expand])
def _expand(draw):
    shape = draw(S.shapes(max_dims=3, min_side=1))
    x = draw(S.arrays(shape))
    lead = draw(st.lists(st.integers(0, 3), max_size=2))
    grown = [draw(st.integers(1, 3)) if n == 1 else n for n in shape]
    sizes = lead + [-1 if g == n and draw(st.booleans()) else g for g, n in zip(grown, shape)]
    target = tuple(lead + grown)
    return Example(lambda t: t.expand(*sizes), lambda a: np.broadcast_to(a, target), [x])


@case("squeeze", [Reshape])
def _squeeze(draw):
    shape = list(draw(S.shapes(min_dims=1, max_side=2)))
    one = draw(st.integers(0, len(shape) - 1))
    shape[one] = 1  # there is always something to squeeze
    x = draw(S.arrays(tuple(shape)))
    if draw(st.booleans()):
        return Example(lambda t: t.squeeze(), np.squeeze, [x])
    dim = one - len(shape) if draw(st.booleans()) else one
    return Example(lambda t: t.squeeze(dim), lambda a: np.squeeze(a, dim), [x])


@case("unsqueeze", [Reshape])
def _unsqueeze(draw):
    x = draw(S.arrays(draw(S.shapes(max_dims=3))))
    dim = draw(st.integers(-x.ndim - 1, x.ndim))
    return Example(lambda t: t.unsqueeze(dim), lambda a: np.expand_dims(a, dim), [x])


@case("flatten", [Reshape])
def _flatten(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1))))
    start = draw(st.integers(0, x.ndim - 1))
    end = draw(st.integers(start, x.ndim - 1))
    shape = x.shape[:start] + (int(np.prod(x.shape[start : end + 1])),) + x.shape[end + 1 :]
    return Example(lambda t: t.flatten(start, end), lambda a: a.reshape(shape), [x])


@case("cat", [Cat])
def _cat(draw):
    shape = list(draw(S.shapes(min_dims=1)))
    dim = draw(st.integers(0, len(shape) - 1))
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        shape[dim] = draw(st.integers(0, 3))
        pieces.append(draw(S.arrays(tuple(shape))))
    signed = dim - len(shape) if draw(st.booleans()) else dim
    return Example(lambda *ts: tinylm.cat(ts, dim=signed), lambda *arrays: np.concatenate(arrays, axis=dim), pieces)


@case("stack", [Stack])
def _stack(draw):
    shape = draw(S.shapes(max_dims=3))
    pieces = [draw(S.arrays(shape)) for _ in range(draw(st.integers(1, 3)))]
    dim = draw(st.integers(-len(shape) - 1, len(shape)))
    return Example(lambda *ts: tinylm.stack(ts, dim=dim), lambda *arrays: np.stack(arrays, axis=dim), pieces)


def _pieces_used(draw, count):
    """Which outputs of a split the example uses: all, or a subset (the others get no gradient)."""
    if count == 1 or draw(st.booleans()):
        return list(range(count))
    return sorted(draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=count - 1, unique=True)))


@case("split", [Split])
def _split(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1))))
    dim = draw(S.dims(x.ndim))
    length = x.shape[dim]
    if draw(st.booleans()):
        spec = draw(st.integers(1, 4))
        bounds = list(range(spec, length, spec))
    else:
        cuts = sorted(draw(st.lists(st.integers(0, length), max_size=3)))
        spec = [b - a for a, b in zip([0] + cuts, cuts + [length])]
        bounds = list(np.cumsum(spec)[:-1])
    count = len(bounds) + 1
    used = _pieces_used(draw, count)
    return Example(
        lambda t: tuple(t.split(spec, dim)[i] for i in used),
        lambda a: tuple(np.split(a, bounds, axis=dim)[i] for i in used),
        [x],
    )


@case("chunk", [Split])
def _chunk(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1))))
    dim = draw(S.dims(x.ndim))
    chunks = draw(st.integers(1, 4))
    size = max(1, -(-x.shape[dim] // chunks))
    bounds = list(range(size, x.shape[dim], size))
    return Example(lambda t: t.chunk(chunks, dim), lambda a: tuple(np.split(a, bounds, axis=dim)), [x])


# ----- indexing ---------------------------------------------------------------------


@st.composite
def _basic_index(draw, shape):
    """A tuple of ints, slices and None, maybe with an Ellipsis, for an array of ``shape``.

    Without an Ellipsis the parts index the leading dimensions; with one in
    front they index the trailing ones.
    """
    count = draw(st.integers(0, len(shape)))
    ellipsis_first = draw(st.booleans())
    indexed = shape[len(shape) - count :] if ellipsis_first else shape[:count]
    parts = [Ellipsis] if ellipsis_first else []
    for n in indexed:
        if draw(st.integers(0, 4)) == 0:
            parts.append(None)  # a new axis consumes no dimension of the array
        if n > 0 and draw(st.booleans()):
            parts.append(draw(st.integers(-n, n - 1)))
        else:
            start, stop = draw(st.integers(-4, 4)), draw(st.integers(-4, 4))
            parts.append(slice(start, stop, draw(st.sampled_from([1, 2, -1, None]))))
    if not ellipsis_first and draw(st.booleans()):
        parts.append(Ellipsis)
    return tuple(parts)


@case("getitem", [GetItem])
def _getitem_basic(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1))))
    index = draw(_basic_index(x.shape))
    return Example(lambda t: t[index], lambda a: a[index], [x])


@case("getitem", [GetItem])
def _getitem_integer_array(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1, min_side=1))))
    axis = draw(st.integers(0, x.ndim - 1))
    picks = draw(S.index_arrays(draw(S.shapes(max_dims=2)), x.shape[axis]))  # repeats allowed
    lead = (slice(None),) * axis
    return Example(lambda t, i: t[lead + (i,)], lambda a, i: a[lead + (i,)], [x, picks])


@case("getitem", [GetItem])
def _getitem_mask(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1))))
    mask_dims = draw(st.integers(1, x.ndim))
    mask = draw(S.hnp.arrays(np.bool_, x.shape[:mask_dims]))
    return Example(lambda t, m: t[m], lambda a, m: a[m], [x, mask])


@case("gather", [Gather])
def _gather(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1, min_side=1))))
    dim = draw(S.dims(x.ndim))
    shape = tuple(draw(st.integers(0, 3)) if d == dim % x.ndim else draw(st.integers(0, n)) for d, n in enumerate(x.shape))
    index = draw(S.index_arrays(shape, x.shape[dim]))

    def reference(a, i):
        part = a[tuple(slice(None) if d == dim % a.ndim else slice(0, n) for d, n in enumerate(i.shape))]
        return np.take_along_axis(part, i, axis=dim)

    return Example(lambda t, i: t.gather(dim, i), reference, [x, index])


@case("masked_fill", [MaskedFill])
def _masked_fill(draw):
    shape = draw(S.shapes())
    x = draw(S.arrays(shape))
    mask_shape = tuple(n if draw(st.booleans()) else 1 for n in shape)[draw(st.integers(0, len(shape))) :]
    mask = draw(S.hnp.arrays(np.bool_, mask_shape))
    value = draw(st.sampled_from([0.0, -1e9, 2.5]))
    return Example(lambda t, m: t.masked_fill(m, value), lambda a, m: np.where(m, value, a), [x, mask])


@case("where", [Where])
def _where(draw):
    shape_c, shape_a, shape_b = draw(S.broadcast_shapes(num_shapes=3))
    condition = draw(S.hnp.arrays(np.bool_, shape_c))
    a, b = draw(S.arrays(shape_a)), draw(S.arrays(shape_b))
    if draw(st.integers(0, 3)) == 0:
        return Example(lambda c, x: tinylm.where(c, x, 0.5), lambda c, x: np.where(c, x, 0.5), [condition, a])
    return Example(tinylm.where, np.where, [condition, a, b])


# ----- softmax ----------------------------------------------------------------------


def _np_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@case("softmax", [Softmax])
def _softmax(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1, min_side=1)), low=-10.0, high=10.0))
    dim = draw(S.dims(x.ndim))
    return Example(lambda t: t.softmax(dim), lambda a: _np_softmax(a, dim), [x])


@case("log_softmax", [LogSoftmax])
def _log_softmax(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1, min_side=1)), low=-10.0, high=10.0))
    dim = draw(S.dims(x.ndim))
    return Example(lambda t: t.log_softmax(dim), lambda a: np.log(_np_softmax(a, dim)), [x])


# ----- copies ------------------------------------------------------------------------


@case("clone", [Clone])
def _clone(draw):
    return Example(lambda t: t.clone(), np.copy, [draw(S.arrays(draw(S.shapes())))])


# ----- PyTorch's tensor functions (issue 17); each example also says how PyTorch spells it ----


def _same_in_torch(fn):
    """The example's function written with methods PyTorch's tensors share."""
    return lambda torch, *tensors: fn(*tensors)


@case("sin", [Sin])
def _sin(draw):
    fn = lambda t: t.sin()  # noqa: E731
    return Example(fn, np.sin, [draw(S.arrays(draw(S.shapes()), low=-6.0, high=6.0))], _same_in_torch(fn))


@case("cos", [Cos])
def _cos(draw):
    fn = lambda t: tinylm.ops.cos(t)  # noqa: E731
    return Example(fn, np.cos, [draw(S.arrays(draw(S.shapes()), low=-6.0, high=6.0))], lambda torch, t: torch.cos(t))


def _away_from(x, bounds, margin=1e-3):
    """``x`` with elements within ``margin`` of a bound moved off it (clamp has no derivative there)."""
    x = x.copy()
    for bound in bounds:
        if bound is not None:
            x[np.abs(x - bound) < margin] += 4 * margin
    return x


def _clamp_numbers(op):
    @case(op, [Clamp])
    def examples(draw):
        low, high = draw(st.sampled_from([(-1.5, 0.5), (None, 0.7), (-0.3, None), (1.0, 2.0)]))
        x = _away_from(draw(S.arrays(draw(S.shapes()))), (low, high))
        if draw(st.booleans()):  # the method, with positional bounds
            fn = lambda t: getattr(t, op)(low, high)  # noqa: E731
        else:
            fn = lambda t: getattr(tinylm.ops, op)(t, min=low, max=high)  # noqa: E731
        torch_fn = lambda torch, t: getattr(torch, op)(t, min=low, max=high)  # noqa: E731
        return Example(fn, lambda a: np.clip(a, low, high), [x], torch_fn)


_clamp_numbers("clamp")
_clamp_numbers("clip")


@case("clamp", [Where])
def _clamp_tensors(draw):
    shape = draw(S.shapes(max_dims=3))
    bound_shape = tuple(n if draw(st.booleans()) else 1 for n in shape)[draw(st.integers(0, len(shape))) :]
    low = draw(S.arrays(bound_shape, low=-2.0, high=0.0))
    high = low + draw(S.arrays(bound_shape, low=0.5, high=2.0))
    offsets = draw(S.arrays(shape, low=-1.5, high=3.5, margin=0.05))
    x = _away_from(np.broadcast_to(low, shape) + offsets, ())
    x = np.where(np.abs(x - high) < 0.05, x + 0.2, x)  # away from the upper bound too
    return Example(
        lambda t, lo, hi: t.clamp(lo, hi),
        lambda a, lo, hi: np.minimum(np.maximum(a, lo), hi),
        [x, low, high],
        lambda torch, t, lo, hi: torch.clamp(t, lo, hi),
    )


def _triangle_case(op, reference):
    @case(op, [Triangle])
    def examples(draw):
        x = draw(S.arrays(draw(S.shapes(min_dims=2))))
        diagonal = draw(st.integers(-3, 3))
        fn = lambda t: getattr(t, op)(diagonal)  # noqa: E731
        return Example(fn, lambda a: reference(a, diagonal), [x], _same_in_torch(fn))


_triangle_case("triu", np.triu)
_triangle_case("tril", np.tril)


def _np_order(a, axis, descending):
    order = np.argsort(-a if descending else a, axis=axis, kind="stable")
    return np.take_along_axis(a, order, axis=axis)


@case("sort", [Gather])
def _sort(draw):
    x = draw(S.distinct_arrays(draw(S.shapes(min_dims=1))))
    dim = draw(S.dims(x.ndim))
    descending = draw(st.booleans())
    fn = lambda t: t.sort(dim=dim, descending=descending).values  # noqa: E731
    return Example(fn, lambda a: _np_order(a, dim, descending), [x], _same_in_torch(fn))


@case("topk", [Gather])
def _topk(draw):
    x = draw(S.distinct_arrays(draw(S.shapes(min_dims=1, min_side=1))))
    dim = draw(S.dims(x.ndim))
    k = draw(st.integers(0, x.shape[dim]))
    largest = draw(st.booleans())
    fn = lambda t: t.topk(k, dim=dim, largest=largest).values  # noqa: E731
    lead = (slice(None),) * (dim % x.ndim)
    return Example(fn, lambda a: _np_order(a, dim, largest)[lead + (slice(0, k),)], [x], _same_in_torch(fn))


@case("bmm", [MatMul])
def _bmm(draw):
    b, m, k, n = (draw(st.integers(0, 3)) for _ in range(4))
    x, y = draw(S.arrays((b, m, k))), draw(S.arrays((b, k, n)))
    return Example(lambda p, q: tinylm.ops.bmm(p, q), np.matmul, [x, y], lambda torch, p, q: torch.bmm(p, q))


_EINSUM_EQUATIONS = [
    "ij,jk->ik", "bij,bjk->bik", "i,i->", "i,j->ij", "ij->ji", "ij->", "ij->j", "ii->i", "ii->", "iij->j",
    "ij,jk", "ij,jk,kl->il", "...ij,...jk->...ik", "bhqd,bhkd->bhqk", "ijk,k->ij", "i...->...", "ij,ij->ij",
]  # fmt: skip


@case("einsum", [Einsum])
def _einsum(draw):
    equation = draw(st.sampled_from(_EINSUM_EQUATIONS))
    size = {c: draw(st.integers(1, 3)) for c in "abcdefghijklmnopqrstuvwxyz"}
    ellipsis = draw(st.lists(st.integers(1, 3), max_size=2))
    shapes = []
    for term in equation.split("->")[0].split(","):
        before, dots, after = term.partition("...")
        shapes.append(tuple([size[c] for c in before] + (ellipsis if dots else []) + [size[c] for c in after]))
    inputs = [draw(S.arrays(shape)) for shape in shapes]
    return Example(
        lambda *ts: tinylm.ops.einsum(equation, *ts),
        lambda *arrays: np.einsum(equation, *arrays),
        inputs,
        lambda torch, *ts: torch.einsum(equation, *ts),
    )


@case("repeat", [Repeat])
def _repeat(draw):
    x = draw(S.arrays(draw(S.shapes(max_dims=3))))
    sizes = draw(st.lists(st.integers(0, 3), min_size=x.ndim, max_size=x.ndim + 2))
    fn = lambda t: t.repeat(*sizes) if sizes else t.repeat(())  # noqa: E731 (PyTorch needs the tuple then)
    return Example(fn, lambda a: np.tile(a, sizes), [x], _same_in_torch(fn))


@case("index_select", [IndexSelect])
def _index_select(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=1, min_side=1))))
    dim = draw(S.dims(x.ndim))
    index = draw(S.index_arrays((draw(st.integers(0, 4)),), x.shape[dim]))  # repeats allowed
    fn = lambda t, i: t.index_select(dim, i)  # noqa: E731
    return Example(fn, lambda a, i: np.take(a, i, axis=dim), [x, index], _same_in_torch(fn))


def _axes(dim, ndim):
    return None if dim is None else tuple(np.atleast_1d(dim) % ndim)


def _spread_case(op, functions, reference):
    @case(op, functions)
    def examples(draw):
        x = draw(S.distinct_arrays(draw(S.shapes(min_dims=1, min_side=2))))
        dim = draw(S.dim_or_dims(x.ndim))
        keepdim = draw(st.booleans())
        axis = _axes(dim, x.ndim)
        count = x.size if axis is None else int(np.prod([x.shape[a] for a in axis]))  # at least 2
        correction = draw(st.sampled_from([0, 1, 2] if count > 2 else [0, 1]))
        if correction == 2 or draw(st.booleans()):  # the newer spelling
            fn = lambda t: getattr(t, op)(dim, correction=correction, keepdim=keepdim)  # noqa: E731
        else:
            fn = lambda t: getattr(t, op)(dim, unbiased=bool(correction), keepdim=keepdim)  # noqa: E731
        expected = lambda a: reference(a, axis=axis, ddof=correction, keepdims=keepdim)  # noqa: E731
        return Example(fn, expected, [x], _same_in_torch(fn))


_spread_case("var", [Var], np.var)
_spread_case("std", [Var, Sqrt], np.std)


@st.composite
def _distinct_magnitudes(draw, shape):
    """Arrays whose absolute values differ by at least 0.1 and stay 0.2 or more from 0, signs drawn."""
    size = int(np.prod(shape))
    order = np.asarray(draw(st.permutations(range(size))), dtype=np.float64)
    signs = np.asarray(draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=size, max_size=size)))
    return (signs * (order * 0.1 + draw(st.floats(0.2, 1.0)))).reshape(shape)


def _np_norm(a, p, axis, keepdims):
    magnitude = np.abs(a)
    if p == np.inf:
        return magnitude.max(axis=axis, keepdims=keepdims, initial=0.0)
    if p == -np.inf:
        return magnitude.min(axis=axis, keepdims=keepdims)
    return (magnitude**p).sum(axis=axis, keepdims=keepdims) ** (1.0 / p)


@case("norm", [Norm])
def _norm(draw):
    p = draw(st.sampled_from([2, "fro", 1, 3, 1.5, float("inf")]))
    x = draw(_distinct_magnitudes(draw(S.shapes(min_dims=1, min_side=1))))
    dim = draw(S.dim_or_dims(x.ndim))
    keepdim = draw(st.booleans())
    fn = lambda t: t.norm(p, dim=dim, keepdim=keepdim)  # noqa: E731
    reference = lambda a: _np_norm(a, 2 if p == "fro" else p, _axes(dim, a.ndim), keepdim)  # noqa: E731
    return Example(fn, reference, [x], _same_in_torch(fn))


@case("norm", [Abs, Gather])
def _norm_minus_inf(draw):
    x = draw(_distinct_magnitudes(draw(S.shapes(min_dims=1, min_side=1))))
    dim = draw(S.dims(x.ndim))
    fn = lambda t: tinylm.ops.norm(t, float("-inf"), dim=dim)  # noqa: E731
    return Example(fn, lambda a: np.abs(a).min(axis=dim), [x], lambda torch, t: torch.norm(t, float("-inf"), dim=dim))


@case("t", [Permute])
def _t(draw):
    x = draw(S.arrays(draw(S.shapes(min_dims=2, max_dims=2))))
    fn = lambda t: t.t()  # noqa: E731
    return Example(fn, np.transpose, [x], _same_in_torch(fn))
