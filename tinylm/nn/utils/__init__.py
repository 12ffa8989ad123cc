"""Utilities over a model's parameters (gradient clipping) and, in ``tinylm.nn.utils.rnn``,
over batches of sequences of different lengths (padding and packing). PyTorch's weight
reparametrisations (``prune``, ``weight_norm``, ``spectral_norm``) raise ``NotInTinylmError``."""

import math

import numpy as np

from tinylm.backend import array_module
from tinylm.errors import refusing_getattr
from tinylm.nn.utils import rnn  # noqa: F401 (as PyTorch's torch.nn.utils.rnn)
from tinylm.tensor import wrap


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so their global norm is at most ``max_norm``; return the
    norm before clipping (a 0-d tensor).

    The norm is taken over every gradient at once (as if concatenated), as in
    PyTorch, and the gradients are scaled by ``max_norm / (norm + 1e-6)`` only
    when that is below 1.
    """
    grads = [p.grad for p in ([parameters] if hasattr(parameters, "grad") else parameters) if p.grad is not None]
    if not grads:
        return wrap(np.asarray(0.0, dtype=np.float32))
    if norm_type == math.inf:
        total = max(float(abs(g.data).max()) for g in grads)
    elif norm_type == 2.0:
        # A dot product per gradient (BLAS, no temporaries) instead of |g|**2 summed.
        total = math.sqrt(sum(float(array_module(g.data).vdot(g.data, g.data)) for g in grads))
    else:
        total = sum(float((array_module(g.data).abs(g.data) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}")
    coefficient = max_norm / (total + 1e-6)
    if coefficient < 1.0:
        for g in grads:
            g.data = g.data * g.data.dtype.type(coefficient)  # a new array: others may hold the old one
    return wrap(np.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element to ``[-clip_value, clip_value]`` in place; returns None, as PyTorch.

    ``foreach`` (PyTorch's choice of a batched kernel) is accepted and changes nothing.
    """
    clip_value = float(clip_value)
    for p in [parameters] if hasattr(parameters, "grad") else parameters:
        if p.grad is not None:
            g = p.grad.data  # a new array, not clipped in place: others may hold this one
            p.grad.data = array_module(g).clip(g, g.dtype.type(-clip_value), g.dtype.type(clip_value))


_NO_REPARAMETRISATION = "there are no weight reparametrisations (hooks that recompute a weight each step)"

NOT_IN_TINYLM = {
    "prune": "there is no pruning; zero weights yourself under tinylm.no_grad()",
    "weight_norm": _NO_REPARAMETRISATION,
    "spectral_norm": _NO_REPARAMETRISATION,
}

__getattr__ = refusing_getattr(__name__, "torch.nn.utils", NOT_IN_TINYLM)
