"""Losses with a hand-written backward: negative log-likelihood and binary cross-entropy on logits.

``tinylm.nn.functional`` checks the arguments and reduces; these ops compute
the per-element losses (NLL also its reductions, whose weighted mean divides
by the summed weights of the kept targets, as PyTorch's does).
"""

import numpy as np

from tinylm.backend import array_module
from tinylm.tensor import Function


class NLLLossFunction(Function):
    """log-probabilities (N, C) and integer targets (N,) -> per-row losses (N,), or their sum or mean.

    With class weights w (C,) (all 1 without), row i that is not ``ignore_index``
    loses ``l_i = -w[t_i] * logp[i, t_i]``; an ignored row loses 0 and has weight 0.
    "mean" is ``sum_i l_i / sum_i w[t_i]``, "sum" is ``sum_i l_i``.

    Backward: only the picked entries get a gradient,
    ``dlogp[i, t_i] = -w[t_i] * dl_i`` with dl_i = g_i ("none"), g ("sum")
    or g / sum_i w[t_i] ("mean"); every other entry, and every ignored row, gets 0.
    """

    def forward(self, logp, targets, weight, ignore_index, reduction):
        xp = array_module(logp)
        kept = targets != ignore_index
        safe = xp.where(kept, targets, 0)  # an index for every row; ignored ones are zeroed by the weight
        row_weights = (weight[safe] if weight is not None else xp.ones(safe.shape, dtype=logp.dtype)) * kept
        row_weights = row_weights.astype(logp.dtype, copy=False)
        picked = xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
        losses = -row_weights * picked
        self.shape, self.safe, self.row_weights, self.reduction = logp.shape, safe, row_weights, reduction
        if reduction == "none":
            return losses
        if reduction == "sum":
            return losses.sum()
        self.total_weight = row_weights.sum()
        with np.errstate(invalid="ignore", divide="ignore"):  # every target ignored: NaN, as PyTorch
            return losses.sum() / self.total_weight

    def backward(self, g, _targets_grad=None):
        xp = array_module(g)
        if self.reduction == "none":
            d_rows = g
        elif self.reduction == "sum":
            d_rows = xp.broadcast_to(g, self.row_weights.shape)
        elif self.total_weight:
            d_rows = xp.broadcast_to(g / self.total_weight, self.row_weights.shape)
        else:  # the loss was NaN and no row counted
            d_rows = xp.zeros(self.row_weights.shape, dtype=g.dtype)
        grad = xp.zeros(self.shape, dtype=g.dtype)
        grad[xp.arange(self.shape[0]), self.safe] = -self.row_weights * d_rows
        return grad, None


def _softplus_of_negative(x, xp):
    """softplus(-x) = log(1 + exp(-x)) = log1p(exp(-|x|)) + max(-x, 0): exp of a non-positive number only."""
    return xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)


class BCEWithLogitsFunction(Function):
    """Binary cross-entropy of logits x and targets y (same shape), per element:

        l = w * [(1 - y) x + L softplus(-x)],   L = 1 + (p - 1) y

    which is ``-w [p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))]`` written so
    that no exp overflows (without ``pos_weight`` p = 1, L = 1 and
    l = w [max(x, 0) - x y + log1p(exp(-|x|))]). ``weight`` w broadcasts to x;
    ``pos_weight`` p broadcasts along the last axis (one per class).

    Backward, with sigmoid(-x) = exp(-softplus(x)) = exp(-(softplus(-x) + x)):

        dx = g w [(1 - y) - L sigmoid(-x)]      (= g w (sigmoid(x) - y) when p = 1)
        dy = g w [-x + (p - 1) softplus(-x)]
    """

    def forward(self, x, y, weight=None, pos_weight=None):
        xp = array_module(x)
        soft = _softplus_of_negative(x, xp)
        log_weight = 1 + (pos_weight - 1) * y if pos_weight is not None else None
        losses = (1 - y) * x + (soft if log_weight is None else log_weight * soft)
        if weight is not None:
            losses = losses * weight
        self.x, self.y, self.soft, self.log_weight = x, y, soft, log_weight
        self.weight, self.pos_weight = weight, pos_weight
        return losses.astype(x.dtype, copy=False)

    def backward(self, g):
        xp = array_module(g)
        if self.weight is not None:
            g = g * self.weight
        d_x = d_y = None
        if self.needs_input_grad[0]:
            sigmoid_neg = xp.exp(-(self.soft + self.x))
            d_x = g * ((1 - self.y) - (sigmoid_neg if self.log_weight is None else self.log_weight * sigmoid_neg))
            d_x = d_x.astype(self.x.dtype, copy=False)
        if self.needs_input_grad[1]:
            d_y = -self.x if self.pos_weight is None else -self.x + (self.pos_weight - 1) * self.soft
            d_y = (g * d_y).astype(self.y.dtype, copy=False)
        return d_x, d_y
