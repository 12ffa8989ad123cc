"""Softmax cross-entropy, fused: log-softmax, the target pick, label smoothing and the reduction."""

import numpy as np

from tinylm.backend import array_module
from tinylm.kernels.registry import kernel_for
from tinylm.tensor import Function


class CrossEntropyFunction(Function):
    """logits (N, C) and integer targets (N,) -> a scalar (mean or sum) or per-row losses (N,).

    Rows whose target is ``ignore_index`` contribute nothing, and the mean is
    taken over the others, as in PyTorch. The forward keeps each row's
    log-sum-exp; the backward rebuilds the softmax from it:
    dlogits = dloss * (softmax - (1 - eps) onehot(target) - eps / C).
    """

    def forward(self, logits, targets, ignore_index, label_smoothing, reduction):
        losses, self.lse = kernel_for("cross_entropy_forward", logits)(logits, targets, ignore_index, label_smoothing)
        self.logits, self.targets = logits, targets
        self.ignore_index, self.label_smoothing, self.reduction = ignore_index, label_smoothing, reduction
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        self.count = int((targets != ignore_index).sum())
        with np.errstate(invalid="ignore", divide="ignore"):  # all targets ignored: NaN, as PyTorch
            return losses.sum() / logits.dtype.type(self.count)

    def backward(self, g, _targets_grad=None):
        xp = array_module(g)
        n = self.logits.shape[0]
        if self.reduction == "none":
            dlosses = g
        elif self.reduction == "sum":
            dlosses = xp.broadcast_to(g, (n,))
        elif self.count:
            dlosses = xp.broadcast_to(g / self.count, (n,))
        else:  # every target ignored: the loss was NaN and nothing depends on the logits
            dlosses = xp.zeros(n, dtype=g.dtype)
        backward = kernel_for("cross_entropy_backward", self.logits)
        dlogits = backward(dlosses, self.logits, self.targets, self.lse, self.ignore_index, self.label_smoothing)
        return dlogits, None
