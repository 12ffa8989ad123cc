"""The public operations on tensors, each a function of tensors returning a tensor.

Every name in ``__all__`` is public; ``tinylm.Tensor`` methods and operators
call these. The differentiable ones are each checked against finite
differences by ``tests/test_ops.py``; ``tests/test_coverage.py`` fails for any
name here that has no gradient test unless it is listed in ``NON_DIFFERENTIABLE``.
"""

from tinylm.ops import inplace  # Tensor.add_ and the other in-place methods
from tinylm.ops.conversion import clone, convert
from tinylm.ops.elementwise import (
    abs,
    add,
    clamp,
    clip,
    cos,
    div,
    eq,
    erf,
    exp,
    ge,
    gt,
    le,
    log,
    logical_and,
    logical_not,
    logical_or,
    lt,
    mul,
    ne,
    neg,
    pow,
    relu,
    sigmoid,
    sin,
    sqrt,
    sub,
    tanh,
)
from tinylm.ops.indexing import as_index, gather, getitem, index_select, masked_fill, tril, triu, where
from tinylm.ops.linalg import bmm, einsum, matmul
from tinylm.ops.reduction import (
    ValuesIndices,
    all,
    any,
    argmax,
    argmin,
    max,
    mean,
    min,
    norm,
    std,
    sum,
    var,
)
from tinylm.ops.shape import (
    cat,
    chunk,
    expand,
    flatten,
    permute,
    repeat,
    reshape,
    split,
    squeeze,
    stack,
    t,
    transpose,
    unsqueeze,
    view,
)
from tinylm.ops.softmax import log_softmax, softmax
from tinylm.ops.sorting import argsort, sort, topk

__all__ = [
    # elementwise
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "erf",
    "sin", "cos", "clamp", "clip",
    # comparisons and logic
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
    # reductions
    "sum", "mean", "max", "min", "argmax", "argmin", "any", "all", "var", "std", "norm",
    # sorting
    "sort", "argsort", "topk",
    # linear algebra
    "matmul", "bmm", "einsum",
    # shape
    "reshape", "view", "permute", "transpose", "expand", "squeeze", "unsqueeze", "flatten",
    "cat", "stack", "split", "chunk", "t", "repeat",
    # indexing
    "getitem", "gather", "masked_fill", "where", "index_select", "triu", "tril",
    # normalisation
    "softmax", "log_softmax",
    # copies
    "convert", "clone",
]  # fmt: skip

#: Public ops whose results carry no gradient (booleans and indices).
NON_DIFFERENTIABLE = frozenset(
    {"eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not",
     "argmax", "argmin", "any", "all", "argsort"}
)  # fmt: skip
