"""Hypothesis strategies for shapes, arrays and tensors, shared by every test module.

Shapes run from 0-d to 4-d with sides of 0 to 3 by default, so size-1
(broadcast) and size-0 (empty) dimensions turn up often. Values are float64
unless asked otherwise, since gradients are checked in float64.
"""

import math

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinylm


def shapes(min_dims=0, max_dims=4, min_side=0, max_side=3):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcast_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=3):
    """A tuple of ``num_shapes`` shapes that broadcast together."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda result: result.input_shapes)


def arrays(shape, low=-3.0, high=3.0, dtype=np.float64, margin=0.0):
    """Float arrays with values in ``[low, high]``; ``margin > 0`` keeps them that far from 0."""
    elements = st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    if margin:
        elements = elements.filter(lambda v: abs(v) >= margin)
    return hnp.arrays(np.dtype(dtype), shape, elements=elements)


@st.composite
def distinct_arrays(draw, shape, spacing=0.1):
    """Arrays whose elements differ by at least ``spacing``: no ties for max/min to break."""
    size = math.prod(shape)
    order = draw(st.permutations(range(size)))
    offset = draw(st.floats(-1, 1))
    return (np.asarray(order, dtype=np.float64) * spacing + offset).reshape(shape)


@st.composite
def index_arrays(draw, shape, bound):
    """Integer arrays of ``shape`` with values in ``[0, bound)``, repeats allowed."""
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(0, max(bound - 1, 0))))


def dims(ndim):
    """A valid dimension index for a tensor of ``ndim`` dimensions, negative ones included."""
    if ndim == 0:
        return st.sampled_from([0, -1])
    return st.integers(-ndim, ndim - 1)


@st.composite
def dim_or_dims(draw, ndim):
    """None, one dimension, or a tuple of distinct dimensions (for sum/mean)."""
    choice = draw(st.sampled_from(["none", "one", "several"]))
    if choice == "none" or ndim == 0:
        return None
    if choice == "one":
        return draw(dims(ndim))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(axis - ndim if draw(st.booleans()) else axis for axis in axes)


@st.composite
def reshape_targets(draw, size):
    """A shape with ``size`` elements, sometimes with one -1 to infer."""
    if size == 0:
        shape = list(draw(shapes(min_dims=1, max_dims=3, min_side=0)))
        shape[draw(st.integers(0, len(shape) - 1))] = 0
        return tuple(shape)
    factors, remaining = [], size
    for _ in range(draw(st.integers(0, 3))):
        divisors = [d for d in range(1, remaining + 1) if remaining % d == 0]
        factor = draw(st.sampled_from(divisors))
        factors.append(factor)
        remaining //= factor
    factors.append(remaining)
    factors = draw(st.permutations(factors))
    if draw(st.booleans()):
        factors[draw(st.integers(0, len(factors) - 1))] = -1
    return tuple(factors)


def as_tensor(array, device="cpu"):
    """A tensor of ``array`` that requires grad exactly when it is floating-point."""
    return tinylm.tensor(array, device=device, requires_grad=array.dtype.kind == "f")
