"""Copies that change dtype or device, and plain copies; gradients flow back through them."""

import numpy as np

from tinylm import backend
from tinylm.tensor import Function


class Convert(Function):
    """A copy with another dtype and/or on another device; the gradient goes back the same way."""

    def forward(self, x, dtype, device):
        self.x_dtype, self.x_device = x.dtype, backend.device_of(x)
        return backend.to_device(x, device).astype(dtype, copy=False)

    def backward(self, g):
        return backend.to_device(g, self.x_device).astype(self.x_dtype, copy=False)


class Clone(Function):
    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


def convert(x, dtype=None, device=None):
    """``x`` with ``dtype`` and on ``device`` (each None keeps the current one); ``x`` itself if unchanged.

    A copy to an integer or boolean dtype leaves the graph, as in PyTorch.
    """
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    device = x.device if device is None else backend.normalize_device(device)
    if dtype == x.dtype and device == x.device:
        return x
    return Convert.apply(x, dtype=dtype, device=device)


def clone(x):
    """A copy that owns its memory; gradients flow back unchanged."""
    return Clone.apply(x)
