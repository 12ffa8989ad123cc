"""``LayerNorm``."""

from tinylm.nn import functional as F
from tinylm.nn import init
from tinylm.nn.layers.linear import new_parameter
from tinylm.nn.module import Module


class LayerNorm(Module):
    """Normalise over the last dimensions ``normalized_shape``; weight starts at 1, bias at 0.

    ``elementwise_affine=False`` has neither; ``bias=False`` has a weight only.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None, device=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        if elementwise_affine:
            self.weight = init.ones_(new_parameter(*shape, dtype=dtype, device=device))
            if bias:
                self.bias = new_parameter(*shape, dtype=dtype, device=device)
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
