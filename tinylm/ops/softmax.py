"""Softmax and log-softmax along one dimension, stable for logits of any size.

Both subtract the row maximum before exponentiating, so ``exp`` never
overflows: with logits of ±1e4 the largest term is ``exp(0) = 1``.
"""

from tinylm.backend import array_module
from tinylm.ops.common import check_floating, normalize_dim
from tinylm.tensor import Function


class Softmax(Function):
    def forward(self, x, axis):
        xp = array_module(x)
        self.axis = axis
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        self.out = e / e.sum(axis=axis, keepdims=True)
        return self.out

    def backward(self, g):
        # dx_i = y_i * (g_i - sum_j g_j y_j): the Jacobian diag(y) - y y^T applied to g.
        y = self.out
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def forward(self, x, axis):
        xp = array_module(x)
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        return self.out

    def backward(self, g):
        # dx_i = g_i - softmax_i * sum_j g_j, with softmax = exp(log_softmax).
        xp = array_module(g)
        return g - xp.exp(self.out) * g.sum(axis=self.axis, keepdims=True)


def softmax(x, dim):
    """``exp(x) / sum(exp(x))`` along ``dim``."""
    check_floating(x, "softmax")
    return Softmax.apply(x, axis=normalize_dim(dim, x.ndim, "softmax"))


def log_softmax(x, dim):
    """``x - log(sum(exp(x)))`` along ``dim``, computed without overflow."""
    check_floating(x, "log_softmax")
    return LogSoftmax.apply(x, axis=normalize_dim(dim, x.ndim, "log_softmax"))
