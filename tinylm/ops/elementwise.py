"""Elementwise arithmetic and math functions, with NumPy broadcasting.

Each binary op reduces its input gradients back to the inputs' own shapes
(``reduce_to``), since broadcasting may have repeated an input along some axes.

The ops that can meet a pole or leave their domain (``div``, ``pow``, ``exp``,
``log``, ``sqrt``) give inf or nan silently, as PyTorch does: their forward
and backward are wrapped in ``_quietly``, which stops NumPy's RuntimeWarnings.
It costs a few tenths of a microsecond, so the ops that cannot meet a pole
(``add``, ``mul``...) do without it.
"""

import math

import numpy as np

from tinylm import backend
from tinylm.backend import array_module
from tinylm.ops.common import (
    broadcast_error,
    can_broadcast,
    constant_like,
    operands,
    reduce_to,
)
from tinylm.tensor import Function, Tensor, wrap


def _quiet_extobj():
    """NumPy's error state with the divide, invalid and overflow warnings off, or None where this
    NumPy keeps its state elsewhere than in the context variable ``np.errstate`` sets (NumPy 2)."""
    try:
        from numpy._core._ufunc_config import _extobj_contextvar
    except ImportError:
        return None, None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _extobj_contextvar, _extobj_contextvar.get()


_ERRSTATE, _QUIET = _quiet_extobj()


def _quietly(method):
    """``method`` (a forward or backward) run with NumPy's floating-point warnings off: inf and nan
    are results, as in PyTorch. Setting the context variable that ``np.errstate`` sets, to a
    state made once, is several times cheaper per call than entering ``np.errstate``
    (measured: docs/performance.md, "Quiet floating-point warnings")."""
    if _ERRSTATE is None:

        def quiet(*args, **kwargs):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                return method(*args, **kwargs)

    else:

        def quiet(*args, **kwargs):
            token = _ERRSTATE.set(_QUIET)
            try:
                return method(*args, **kwargs)
            finally:
                _ERRSTATE.reset(token)

    quiet.__name__, quiet.__qualname__, quiet.__doc__ = method.__name__, method.__qualname__, method.__doc__
    return quiet


class _Binary(Function):
    """An elementwise op of two broadcast inputs; subclasses write ``compute`` and ``backward``."""

    name = ""

    def forward(self, a, b):
        self.a_shape, self.a_dtype = a.shape, a.dtype
        self.b_shape, self.b_dtype = b.shape, b.dtype
        try:
            return self.compute(a, b)
        except ValueError:
            if can_broadcast(a.shape, b.shape):
                raise
            raise broadcast_error(self.name, a.shape, b.shape) from None

    def reduced(self, ga, gb):
        """The two gradients reduced to the inputs' shapes and dtypes (None passes through)."""
        return (
            None if ga is None else reduce_to(ga, self.a_shape, self.a_dtype),
            None if gb is None else reduce_to(gb, self.b_shape, self.b_dtype),
        )


class Add(_Binary):
    name = "add"

    def compute(self, a, b):
        return a + b

    def backward(self, g):
        need_a, need_b = self.needs_input_grad
        return self.reduced(g if need_a else None, g if need_b else None)


class Sub(_Binary):
    name = "sub"

    def compute(self, a, b):
        return a - b

    def backward(self, g):
        need_a, need_b = self.needs_input_grad
        return self.reduced(g if need_a else None, -g if need_b else None)


class Mul(_Binary):
    name = "mul"

    def compute(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        need_a, need_b = self.needs_input_grad
        return self.reduced(g * self.b if need_a else None, g * self.a if need_b else None)


class Div(_Binary):
    name = "div"

    @_quietly
    def compute(self, a, b):
        self.b = b
        self.out = a / b
        return self.out

    @_quietly
    def backward(self, g):
        need_a, need_b = self.needs_input_grad
        return self.reduced(g / self.b if need_a else None, -g * self.out / self.b if need_b else None)


class Pow(_Binary):
    """``a ** b`` for two tensors; the gradient for ``b`` needs ``a > 0``."""

    name = "pow"

    @_quietly
    def compute(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    @_quietly
    def backward(self, g):
        need_a, need_b = self.needs_input_grad
        return self.reduced(
            g * self.b * self.a ** (self.b - 1) if need_a else None,
            g * self.out * array_module(g).log(self.a) if need_b else None,
        )


class PowScalar(Function):
    """``x ** p`` for a fixed number ``p``."""

    @_quietly
    def forward(self, x, exponent):
        self.x, self.exponent = x, exponent
        return x**exponent

    @_quietly
    def backward(self, g):
        p = self.exponent
        return g * (p * self.x ** (p - 1))


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Exp(Function):
    @_quietly
    def forward(self, x):
        self.out = array_module(x).exp(x)
        return self.out

    @_quietly
    def backward(self, g):
        return g * self.out


class Log(Function):
    @_quietly
    def forward(self, x):
        self.x = x
        return array_module(x).log(x)

    @_quietly
    def backward(self, g):
        return g / self.x


class Tanh(Function):
    def forward(self, x):
        self.out = array_module(x).tanh(x)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


class Sigmoid(Function):
    def forward(self, x):
        # 1 / (1 + exp(-x)) overflows exp for large negative x; this form cannot.
        self.out = 0.5 * (array_module(x).tanh(0.5 * x) + 1)
        return self.out

    def backward(self, g):
        return g * self.out * (1 - self.out)


class Erf(Function):
    def forward(self, x):
        self.x = x
        return backend.erf(x)

    def backward(self, g):
        # d/dx erf(x) = 2 / sqrt(pi) * exp(-x^2)
        return g * (_TWO_OVER_SQRT_PI * array_module(g).exp(-self.x * self.x))


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


class Sin(Function):
    """y = sin x; dx = g cos x."""

    def forward(self, x):
        self.x = x
        return array_module(x).sin(x)

    def backward(self, g):
        return g * array_module(g).cos(self.x)


class Cos(Function):
    """y = cos x; dx = -g sin x."""

    def forward(self, x):
        self.x = x
        return array_module(x).cos(x)

    def backward(self, g):
        return -g * array_module(g).sin(self.x)


class Clamp(Function):
    """y = min(max(x, low), high) for numbers ``low`` and ``high`` (either may be None).

    dx = g where low <= x <= high, else 0; the bounds count as inside, as in
    PyTorch. When low > high every element is ``high`` and no gradient flows.
    """

    def forward(self, x, low, high):
        xp = array_module(x)
        inside = None
        if low is not None:
            inside = x >= low
        if high is not None:
            inside = x <= high if inside is None else inside & (x <= high)
        self.inside = inside
        out = x if low is None else xp.maximum(x, low)  # clip, in the form CuPy also takes with one bound
        return out if high is None else xp.minimum(out, high)

    def backward(self, g):
        return g * self.inside


class Relu(Function):
    def forward(self, x):
        self.positive = x > 0
        return array_module(x).maximum(x, 0)

    def backward(self, g):
        return g * self.positive


class Sqrt(Function):
    @_quietly
    def forward(self, x):
        self.out = array_module(x).sqrt(x)
        return self.out

    @_quietly
    def backward(self, g):
        return g / (2 * self.out)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return array_module(x).abs(x)

    def backward(self, g):
        return g * array_module(g).sign(self.x)


# ----- public functions ------------------------------------------------------


def add(a, b):
    return Add.apply(*operands(a, b, "add"))


def sub(a, b):
    """``a - b``. A boolean tensor is refused, as in PyTorch (invert a mask with ``~`` instead)."""
    for operand in (a, b):
        if isinstance(operand, Tensor) and operand.data.dtype.kind == "b":
            raise TypeError(
                "sub: subtraction with a bool tensor is not supported; to invert a mask use ~ or logical_not()"
            )
    return Sub.apply(*operands(a, b, "sub"))


def mul(a, b):
    return Mul.apply(*operands(a, b, "mul"))


def div(a, b):
    a, b = operands(a, b, "div")
    if a.data.dtype.kind not in "fc":  # true division of integers gives floats, as in PyTorch
        a = a.float()
        b = b.float()
    return Div.apply(a, b)


def pow(base, exponent):  # noqa: A001 (the PyTorch name)
    """``base ** exponent``; either may be a number, not both."""
    if isinstance(base, Tensor) and not isinstance(exponent, Tensor):
        constant_like(exponent, base, "pow")  # type check only
        if hasattr(exponent, "item"):
            exponent = exponent.item()  # a NumPy scalar would promote float32 to float64
        if base.data.dtype.kind not in "fc" and isinstance(exponent, float):
            base = base.float()
        return PowScalar.apply(base, exponent=exponent)
    return Pow.apply(*operands(base, exponent, "pow"))


def neg(x):
    return Neg.apply(x)


def _unary_float(function_class, op):
    def unary(x):
        if x.data.dtype.kind not in "fc":  # an integer or bool tensor computes in float32, as in PyTorch
            x = x.to(backend.DEFAULT_FLOAT)
        return function_class.apply(x)

    unary.__name__ = unary.__qualname__ = op
    unary.__doc__ = f"Elementwise {op}; an integer or bool tensor gives float32 (the default dtype)."
    return unary


exp = _unary_float(Exp, "exp")
log = _unary_float(Log, "log")
tanh = _unary_float(Tanh, "tanh")
sigmoid = _unary_float(Sigmoid, "sigmoid")
sqrt = _unary_float(Sqrt, "sqrt")
erf = _unary_float(Erf, "erf")


sin = _unary_float(Sin, "sin")
cos = _unary_float(Cos, "cos")


def relu(x):
    return Relu.apply(x)


def clamp(x, min=None, max=None):  # noqa: A002 (PyTorch's argument names)
    """Each element of ``x`` limited to ``[min, max]``; either bound may be None, not both.

    The bounds are numbers or tensors (broadcast against ``x``). With numbers,
    one op (``Clamp``); with tensors, two ``where``s, so the bounds get
    gradients too: ``min`` where ``x < min``, ``max`` where the result would exceed it.
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        from tinylm.ops.indexing import where  # indexing imports this module

        out = x
        if min is not None:
            out = where(lt(out, min), min, out)
        if max is not None:
            out = where(gt(out, max), max, out)
        return out
    for bound in (min, max):
        if bound is not None:
            constant_like(bound, x, "clamp")  # type check only
    if x.data.dtype.kind not in "fc" and any(isinstance(b, float) for b in (min, max)):
        x = x.float()  # an integer tensor with a float bound computes in float, as in PyTorch
    low = None if min is None else x.data.dtype.type(min)
    high = None if max is None else x.data.dtype.type(max)
    return Clamp.apply(x, low=low, high=high)


clip = clamp


def abs(x):  # noqa: A001 (the PyTorch name)
    return Abs.apply(x)


# ----- comparisons and logic: results are boolean, never differentiable --------


def _comparison(compare, op):
    def comparison(a, b):
        a, b = operands(a, b, op)
        try:
            return wrap(compare(a.data, b.data))
        except ValueError:
            if can_broadcast(a.shape, b.shape):
                raise
            raise broadcast_error(op, a.shape, b.shape) from None

    comparison.__name__ = comparison.__qualname__ = op
    comparison.__doc__ = f"Elementwise ``{op}`` of two broadcast operands; a boolean tensor."
    return comparison


eq = _comparison(lambda a, b: a == b, "eq")
ne = _comparison(lambda a, b: a != b, "ne")
lt = _comparison(lambda a, b: a < b, "lt")
le = _comparison(lambda a, b: a <= b, "le")
gt = _comparison(lambda a, b: a > b, "gt")
ge = _comparison(lambda a, b: a >= b, "ge")
logical_and = _comparison(lambda a, b: a & b, "logical_and")
logical_or = _comparison(lambda a, b: a | b, "logical_or")


def logical_not(x):
    return wrap(~x.data if x.data.dtype.kind == "b" else x.data == 0)
