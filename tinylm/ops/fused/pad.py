"""Constant padding (``torch.nn.functional.pad`` with ``mode="constant"``)."""

from tinylm.backend import array_module
from tinylm.tensor import Function


def pad_slices(shape, widths):
    """For widths ((before, after) per axis; negative ones crop), the output shape and the
    slices ``(source, destination)`` such that ``out[destination] = x[source]``."""
    out_shape, source, destination = [], [], []
    for n, (before, after) in zip(shape, widths):
        size = n + before + after
        start, stop = max(-before, 0), n - max(-after, 0)  # the part of x that is kept
        kept = max(stop - start, 0)
        out_shape.append(size)
        source.append(slice(start, start + kept))
        destination.append(slice(max(before, 0), max(before, 0) + kept))
    return tuple(out_shape), tuple(source), tuple(destination)


class PadFunction(Function):
    """x padded with ``value``: ``widths`` gives (before, after) for every axis of x, a
    negative width cropping that many elements instead.

    Forward: out = full(out_shape, value); out[destination] = x[source].
    Backward: dx = zeros(x.shape); dx[source] = g[destination] (padding takes nothing
    from x; cropped elements got no part in the output, so their gradient is 0).
    """

    def forward(self, x, widths, value):
        xp = array_module(x)
        out_shape, self.source, self.destination = pad_slices(x.shape, widths)
        self.x_shape = x.shape
        out = xp.full(out_shape, value, dtype=x.dtype)
        out[self.destination] = x[self.source]
        return out

    def backward(self, g):
        grad = array_module(g).zeros(self.x_shape, dtype=g.dtype)
        grad[self.source] = g[self.destination]
        return grad
