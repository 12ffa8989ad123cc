"""Vectorizable ``exp``, ``tanh``, ``sigmoid`` and ``erf`` for the Numba CPU kernels.

Numba lowers ``math.exp``, ``math.tanh`` and ``math.erf`` to calls into the C
math library, one element at a time; without Intel's SVML nothing vectorizes a
loop that calls them. NumPy's own ``np.exp`` and ``np.tanh`` use AVX2, so a
fused Numba kernel built on ``math.exp`` can lose to a chain of NumPy calls
that reads memory five times.

The functions here use only arithmetic, comparisons and one bit trick, so a
loop over them becomes AVX2 code, faster per element than NumPy's ufuncs and
several times as fast as Numba's ``math.*`` (measured: docs/performance.md,
"Vectorized exp, tanh, sigmoid and erf").

``fast_exp`` and friends are scalar functions, generic over float32 and float64
(``numba.extending.overload`` picks the constants for the argument's type at
compile time, and inlines the body). They also run as plain Python on NumPy
scalars. The kernels do not call them directly but through ``exp_into``,
``tanh_into``, ``sigmoid_into``, ``erf_into`` and ``erf_and_gauss_into`` (erf
and exp(-x**2) from one exponential, for GELU's slope) at the end of this module.

Accuracy, checked against long-double NumPy and ``math.erf`` in
``tests/kernels/test_special_functions.py``:

- ``fast_exp``: within 1.2 ulp; results below the smallest normal number
  (``exp(x)`` for x < -87.3 in float32, < -708.4 in float64) are flushed to 0.
- ``fast_tanh`` within 2 ulp, ``fast_sigmoid`` within 3 ulp.
- ``fast_erf``: float32 within 2.5 ulp (two fitted polynomials, see below);
  float64 is ``math.erf`` itself: float64 is the dtype of gradient checks,
  where the last bit matters more than speed.
"""

import functools
import math
from fractions import Fraction

import numpy as np
import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._common import jit


# --------------------------------------------------------------------------- exp

# exp(x) = 2**k * exp(r) with k = round(x / ln 2) and r = x - k ln 2, |r| <= ln(2)/2.
# ln 2 is split Cody-Waite style into a high part with trailing zero bits (so
# k * high is exact) and the rounded rest; the constants are fdlibm's.
_LN2_HIGH = {np.float32: 6.9314575195e-01, np.float64: 6.93147180369123816490e-01}
_LN2_LOW = {np.float32: 1.4286067653e-06, np.float64: 1.90821492927058770002e-10}
# Taylor degree that makes the truncation error r**(d+1)/(d+1)! < half an ulp.
_EXP_DEGREE = {np.float32: 7, np.float64: 13}
# Beyond these exp overflows to inf / falls below the smallest normal number.
_EXP_MAX = {np.float32: 88.72283935546875, np.float64: 709.782712893384}
_EXP_MIN = {np.float32: -87.33654022216797, np.float64: -708.3964185322641}


@intrinsic
def _pow2(typingctx, k, like):
    """``2.0**k`` in the float type of ``like``, for an integer ``k`` in the normal range.

    Built by writing ``k`` plus the exponent bias straight into the exponent bits.
    """

    def codegen(context, builder, signature, args):
        k_value = args[0]
        if signature.return_type == types.float32:
            i32 = ir.IntType(32)
            bits = builder.shl(builder.add(k_value, ir.Constant(i32, 127)), ir.Constant(i32, 23))
            return builder.bitcast(bits, ir.FloatType())
        i64 = ir.IntType(64)
        wide = builder.sext(k_value, i64)
        bits = builder.shl(builder.add(wide, ir.Constant(i64, 1023)), ir.Constant(i64, 52))
        return builder.bitcast(bits, ir.DoubleType())

    if not isinstance(k, types.Integer) or like not in (types.float32, types.float64):
        return None
    return like(types.int32, like), codegen  # numba converts k to int32 at the call


def _make_exp(dtype):
    coefficients = np.array([1 / math.factorial(n) for n in range(_EXP_DEGREE[dtype], -1, -1)], dtype)
    log2e = dtype(1 / math.log(2))
    ln2_high, ln2_low = dtype(_LN2_HIGH[dtype]), dtype(_LN2_LOW[dtype])
    top, bottom = dtype(_EXP_MAX[dtype]), dtype(_EXP_MIN[dtype])
    half, inf, zero = dtype(0.5), dtype(np.inf), dtype(0)

    def exp_impl(x):
        clamped = min(max(x, bottom), top)
        k_float = np.floor(clamped * log2e + half)
        k = np.int32(k_float)
        r = (clamped - k_float * ln2_high) - k_float * ln2_low
        p = coefficients[0]
        for j in range(1, coefficients.size):
            p = p * r + coefficients[j]
        # 2**k in two factors, so that k = 128 (float32) does not overflow the bits.
        k_half = k >> np.int32(1)
        result = p * _pow2(k_half, x) * _pow2(k - k_half, x)
        # Selects, not early returns, so that a loop over this stays vectorizable.
        result = inf if x > top else result
        result = zero if x < bottom else result
        return x if x != x else result

    return exp_impl


def fast_exp(x):
    """``exp(x)`` for a float32 or float64 scalar; vectorizes inside Numba loops."""
    return np.exp(x)


@overload(fast_exp, inline="always")
def _fast_exp_overload(x):
    if x == types.float32:
        return _make_exp(np.float32)
    if x == types.float64:
        return _make_exp(np.float64)
    return None


# --------------------------------------------------------------------------- sigmoid


def fast_sigmoid(x):
    """``1 / (1 + exp(-x))``, never overflowing; vectorizes inside Numba loops."""
    e = np.exp(-np.abs(x))
    s = 1 / (1 + e)
    return s if x >= 0 else e * s


def _make_sigmoid():
    def sigmoid_impl(x):
        one = type(x)(1)
        e = fast_exp(-abs(x))  # in (0, 1], so 1 + e cannot overflow
        s = one / (one + e)
        return s if x >= 0 else e * s

    return sigmoid_impl


@overload(fast_sigmoid, inline="always")
def _fast_sigmoid_overload(x):
    if x in (types.float32, types.float64):
        return _make_sigmoid()
    return None


# --------------------------------------------------------------------------- tanh


def _bernoulli_even(count):
    """The Bernoulli numbers B_0, B_2, ..., B_{2(count-1)} as exact fractions."""
    b = [Fraction(1)]
    for m in range(1, 2 * count):
        b.append(-sum(math.comb(m + 1, k) * b[k] for k in range(m)) / (m + 1))
    return b[0::2]


def _tanh_series(terms):
    """Coefficients c_n of tanh(x) = x * sum_n c_n x**(2n), exact (from Bernoulli numbers)."""
    b = _bernoulli_even(terms + 1)
    return [
        Fraction(2 ** (2 * n) * (2 ** (2 * n) - 1)) * b[n] / math.factorial(2 * n)
        for n in range(1, terms + 1)
    ]


# Below |x| = 0.5 the odd Taylor series (ratio of terms <= (2x/pi)**2 ~ 0.1) needs
# this many terms for half an ulp; above it 1 - 2 / (1 + exp(2|x|)) loses at most
# two bits to cancellation.
_TANH_SWITCH = 0.5
_TANH_TERMS = {np.float32: 8, np.float64: 17}


def _make_tanh(dtype):
    series = np.array([float(c) for c in reversed(_tanh_series(_TANH_TERMS[dtype]))], dtype)
    switch, one, two = dtype(_TANH_SWITCH), dtype(1), dtype(2)

    def tanh_impl(x):
        a = abs(x)
        x2 = x * x
        p = series[0]
        for j in range(1, series.size):
            p = p * x2 + series[j]
        small = x * p
        # exp(2a) may be inf for large a, which gives exactly 1.
        large = one - two / (one + fast_exp(two * a))
        large = large if x >= 0 else -large
        return small if a < switch else large

    return tanh_impl


def fast_tanh(x):
    """``tanh(x)`` for a float32 or float64 scalar; vectorizes inside Numba loops."""
    return np.tanh(x)


@overload(fast_tanh, inline="always")
def _fast_tanh_overload(x):
    if x == types.float32:
        return _make_tanh(np.float32)
    if x == types.float64:
        return _make_tanh(np.float64)
    return None


# --------------------------------------------------------------------------- erf

# float32, all in float32 arithmetic, from two polynomials fitted (least squares
# at Chebyshev nodes, against the C library's erf/erfc) when this module loads:
#   |x| < 1:      erf(x) = x * P(x**2),                   P of degree 5
#   1 <= |x| < 4: erf(x) = 1 - exp(-x**2) * Q(s),         Q of degree 8, where
#                 Q approximates erfcx(x) = exp(x**2) erfc(x), a smooth function
#                 of 1/x, and s maps 1/x from [1/4, 1] onto [-1, 1].
#   |x| >= 4:     erfc(4) = 1.5e-8 is below half an ulp of 1.0f, so erf = +-1.
# The rounding of x**2 inside exp(-x**2) costs at most 16 ulp of a term that is
# at most 0.16 times erfc, so it does not show in erf. Measured: within 2.5 ulp.
_ERF32_SWITCH = 1.0
_ERF32_END = 4.0


def _chebyshev_nodes(low, high, count=400):
    t = np.cos(np.pi * (np.arange(count) + 0.5) / count)
    return low + (high - low) * (t + 1) / 2


def _fit_erf32():
    """Power-basis coefficients (highest first) of P and Q described above."""
    u = _chebyshev_nodes(0.0, _ERF32_SWITCH**2)
    ratio = [math.erf(math.sqrt(v)) / math.sqrt(v) for v in u]
    p = np.polynomial.Polynomial.fit(u, ratio, 5, domain=[0.0, _ERF32_SWITCH**2], window=[0.0, _ERF32_SWITCH**2])
    inv = _chebyshev_nodes(1 / _ERF32_END, 1 / _ERF32_SWITCH)
    erfcx = [math.erfc(1 / v) * math.exp(1 / (v * v)) for v in inv]
    q = np.polynomial.Polynomial.fit(inv, erfcx, 8, domain=[1 / _ERF32_END, 1 / _ERF32_SWITCH])
    # q is a polynomial in s = (2 * (1/x) - (low + high)) / (high - low).
    return p.coef[::-1].astype(np.float32), q.coef[::-1].astype(np.float32)


@functools.cache  # one fit and one jitted function, shared by fast_erf and fast_erf_and_gauss
def _make_erf32_from_gauss():
    """erf(x) for a float32 x, given gauss = exp(-x**2) (the far branch's factor)."""
    p_coef, q_coef = _fit_erf32()
    low, high = 1 / _ERF32_END, 1 / _ERF32_SWITCH
    s_scale = np.float32(2 / (high - low))
    s_shift = np.float32((high + low) / (high - low))
    switch, end = np.float32(_ERF32_SWITCH), np.float32(_ERF32_END)
    one = np.float32(1)

    def erf32_from_gauss_impl(x, gauss):
        a = abs(x)
        x2 = x * x
        p = p_coef[0]
        for j in range(1, p_coef.size):
            p = p * x2 + p_coef[j]
        near = a * p
        s = s_scale / a - s_shift
        q = q_coef[0]
        for j in range(1, q_coef.size):
            q = q * s + q_coef[j]
        far = one - gauss * q
        value = near if a < switch else far
        value = value if a < end else one
        return x if x != x else math.copysign(value, x)

    # Called from the overload implementations below, so jitted itself; inlined
    # into them, it is compiled (and cached) as part of each kernel.
    return numba.njit(inline="always")(erf32_from_gauss_impl)


def _make_erf32():
    from_gauss = _make_erf32_from_gauss()

    def erf32_impl(x):
        return from_gauss(x, fast_exp(-(x * x)))

    return erf32_impl


def _make_erf32_and_gauss():
    from_gauss = _make_erf32_from_gauss()

    def erf32_and_gauss_impl(x):
        gauss = fast_exp(-(x * x))
        return from_gauss(x, gauss), gauss

    return erf32_and_gauss_impl


def _erf64_impl(x):
    return math.erf(x)


def fast_erf(x):
    """``erf(x)`` for a float32 (vectorizable) or float64 (``math.erf``) scalar."""
    return type(x)(math.erf(x))


@overload(fast_erf, inline="always")
def _fast_erf_overload(x):
    if x == types.float32:
        return _make_erf32()
    if x == types.float64:
        return _erf64_impl
    return None


def fast_erf_and_gauss(x):
    """``(erf(x), exp(-x**2))`` for a float32 or float64 scalar.

    In float32 the erf is computed from that same exponential for |x| >= 1, so
    the pair costs one exp; GELU's slope needs both (``kernels/gelu.py``).
    """
    return type(x)(math.erf(x)), type(x)(math.exp(-(x * x)))


def _erf64_and_gauss_impl(x):
    return math.erf(x), fast_exp(-(x * x))


@overload(fast_erf_and_gauss, inline="always")
def _fast_erf_and_gauss_overload(x):
    if x == types.float32:
        return _make_erf32_and_gauss()
    if x == types.float64:
        return _erf64_and_gauss_impl
    return None


# --------------------------------------------------------------------------- array versions
#
# The kernels call these on a row (or a block of a flat array) rather than the
# scalar functions inside their own loops: each function is then compiled once
# per dtype and shared by every kernel, which keeps compile times down, and
# the loop is a plain map that LLVM vectorizes. ``out`` must not overlap ``x``:
# with an overlap LLVM's run-time alias check sends the loop down its scalar
# path, several times slower (measured: docs/performance.md, "Loops that vectorize").


@jit
def exp_into(x, out):
    """``out[k] = exp(x[k])`` for 1-D arrays."""
    for k in range(x.shape[0]):
        out[k] = fast_exp(x[k])


@jit
def tanh_into(x, out):
    """``out[k] = tanh(x[k])`` for 1-D arrays."""
    for k in range(x.shape[0]):
        out[k] = fast_tanh(x[k])


@jit
def sigmoid_into(x, out):
    """``out[k] = 1 / (1 + exp(-x[k]))`` for 1-D arrays."""
    for k in range(x.shape[0]):
        out[k] = fast_sigmoid(x[k])


@jit
def erf_into(x, out):
    """``out[k] = erf(x[k])`` for 1-D arrays."""
    for k in range(x.shape[0]):
        out[k] = fast_erf(x[k])


@jit
def erf_and_gauss_into(x, erf_out, gauss_out):
    """``erf_out[k] = erf(x[k])`` and ``gauss_out[k] = exp(-x[k]**2)`` for 1-D arrays, one exp each."""
    for k in range(x.shape[0]):
        erf_out[k], gauss_out[k] = fast_erf_and_gauss(x[k])
