"""Layer normalisation over the last dimensions, with a learnable scale and shift."""

import math

from tinylm.kernels.registry import kernel_for
from tinylm.tensor import Function


class LayerNormFunction(Function):
    """x (..., *normalized_shape), weight and bias (normalized_shape) or absent -> same shape as x.

    Each row (the normalized dimensions, flattened to C values) is centred and
    scaled to unit variance (biased, as PyTorch), then scaled by ``weight`` and
    shifted by ``bias``. The forward saves the row means and reciprocal standard
    deviations; the backward kernel rebuilds the normalised values from them.
    """

    def forward(self, x, *affine, normalized_ndim, has_weight, has_bias, eps):
        width = math.prod(x.shape[x.ndim - normalized_ndim :])
        rows = x.reshape(-1, width) if width else x.reshape(math.prod(x.shape[: x.ndim - normalized_ndim]), 0)
        affine = iter(affine)
        weight = next(affine).reshape(width) if has_weight else None
        bias = next(affine).reshape(width) if has_bias else None
        y, self.mean, self.rstd = kernel_for("layernorm_forward", rows)(rows, weight, bias, eps)
        self.rows, self.weight, self.has_bias = rows, weight, has_bias
        self.x_shape = x.shape
        self.affine_shape = x.shape[x.ndim - normalized_ndim :]
        return y.reshape(x.shape)

    def backward(self, g):
        dy = g.reshape(self.rows.shape)
        backward = kernel_for("layernorm_backward", dy)
        dx, dweight, dbias = backward(dy, self.rows, self.weight, self.mean, self.rstd, has_bias=self.has_bias)
        grads = [dx.reshape(self.x_shape)]
        if dweight is not None:
            grads.append(dweight.reshape(self.affine_shape))
        if dbias is not None:
            grads.append(dbias.reshape(self.affine_shape))
        return tuple(grads)
