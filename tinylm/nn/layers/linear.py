"""``Linear`` and ``Identity``."""

import math

import numpy as np

from tinylm import backend
from tinylm.nn import functional as F
from tinylm.nn import init
from tinylm.nn.module import Module, Parameter


def new_parameter(*shape, dtype=None, device=None):
    """An uninitialised (zero) parameter; layers fill it with an initialiser."""
    dtype = backend.DEFAULT_FLOAT if dtype is None else np.dtype(dtype)
    device = backend.normalize_device(device)
    return Parameter(backend.xp_for(device).zeros(shape, dtype=dtype))


class Linear(Module):
    """``y = x @ weight.T + bias``: x (..., in_features) -> (..., out_features).

    Initialised as PyTorch: weight and bias from U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = new_parameter(out_features, in_features, dtype=dtype, device=device)
        if bias:
            self.bias = new_parameter(out_features, dtype=dtype, device=device)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input; a placeholder where a layer is optional."""

    def forward(self, x):
        return x
