"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""

import numpy as np

from tinylm import backend, random
from tinylm.tensor import Function


def keep_mask(shape, p, like):
    """A mask of ``shape`` holding 1/(1-p) where an element is kept and 0 where it is dropped.

    Drawn on the CPU from tinylm's generator (so a seed gives the same mask on
    every device) in ``like``'s dtype.
    """
    keep = random.generator().random(shape, dtype=np.float32) >= p
    scale = like.dtype.type(1.0 / (1.0 - p))
    return backend.to_device(keep.astype(like.dtype) * scale, backend.device_of(like))


class DropoutFunction(Function):
    """x -> x * mask, with ``mask`` from ``keep_mask``; backward multiplies by the same mask."""

    def forward(self, x, p):
        self.mask = keep_mask(x.shape, p, x)
        return x * self.mask

    def backward(self, g):
        return g * self.mask
