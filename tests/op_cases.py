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
from tinylm.ops.elementwise import Abs, Add, Div, Erf, Exp, Log, Mul, Neg, Pow, PowScalar, Relu, Sigmoid, Sqrt, Sub, Tanh
from tinylm.ops.indexing import Gather, GetItem, MaskedFill, Where
from tinylm.ops.linalg import MatMul
from tinylm.ops.reduction import Extreme, Mean, Sum
from tinylm.ops.shape import Cat, Expand, Permute, Reshape, Split, Stack
from tinylm.ops.softmax import LogSoftmax, Softmax
from tests import strategies as S


@dataclass
class Example:
    fn: Callable  # tensors -> tensor (or tuple of tensors)
    reference: Callable  # arrays -> array (or tuple of arrays)
    inputs: list  # NumPy arrays, in the order both functions take them


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
    @case(op, [Extreme])
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
