"""Parameter initialisers, with PyTorch's names and formulas; each fills a tensor in place.

All draw from tinylm's one generator (``tinylm.manual_seed``), in float64,
then round to the tensor's dtype, so a seed gives the same initial weights in
float32 and float64.
"""

import math

import numpy as np

from tinylm import backend, random
from tinylm.tensor import no_grad


def _fill(tensor, values):
    with no_grad():
        tensor.data[...] = backend.to_device(np.asarray(values), tensor.device).astype(tensor.dtype)
    return tensor


def fans(tensor):
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel), as PyTorch computes them."""
    if tensor.ndim < 2:
        raise ValueError(f"fans: need a tensor of at least 2 dimensions, got shape {tuple(tensor.shape)}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0):
    return _fill(tensor, random.generator().uniform(a, b, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    return _fill(tensor, random.generator().normal(mean, std, size=tensor.shape))


def constant_(tensor, value):
    return _fill(tensor, np.full(tensor.shape, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fans(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def kaiming_uniform_(tensor, a=0.0):
    """U(-b, b) with b = sqrt(6 / ((1 + a^2) fan_in)) (He et al., 2015), for leaky-ReLU slope ``a``.

    ``nn.Linear`` uses ``a = sqrt(5)``, which gives b = 1 / sqrt(fan_in).
    """
    fan_in, _ = fans(tensor)
    bound = math.sqrt(6.0 / ((1 + a * a) * fan_in)) if fan_in else 0.0
    return uniform_(tensor, -bound, bound)
