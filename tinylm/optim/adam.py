"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), with PyTorch's update rules.

For each parameter p with gradient g, at step t (from 1)::

    m = beta1 * m + (1 - beta1) * g            first moment
    v = beta2 * v + (1 - beta2) * g^2          second moment
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Adam's ``weight_decay`` adds ``weight_decay * p`` to g (an L2 penalty, which
the moments then rescale); AdamW's decouples it: ``p = p * (1 - lr * weight_decay)``
before the step.
"""

from tinylm.backend import array_module
from tinylm.kernels.registry import kernel_for
from tinylm.optim.optimizer import Optimizer


class Adam(Optimizer):
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        name = type(self).__name__
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"{name}: lr, eps and weight_decay must be non-negative, got {lr}, {eps}, {weight_decay}")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"{name}: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def update(self, group, param, grad, state):
        xp = array_module(param)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros(param.shape, dtype=param.dtype)  # C order, for the flat views below
            state["exp_avg_sq"] = xp.zeros(param.shape, dtype=param.dtype)
        state["step"] += 1
        (beta1, beta2), decay = group["betas"], group["weight_decay"]
        if decay and not self.decoupled_weight_decay:
            grad = grad + decay * param  # Adam's L2 penalty goes through the moments
            decay = 0.0
        # One fused pass over the parameter (tinylm.kernels.adamw) instead of ten
        # NumPy operations with their temporaries. It writes into flat views; a
        # parameter that is not C-contiguous (tinylm makes none) goes through a copy.
        flat = param.reshape(-1) if param.flags.c_contiguous else xp.ascontiguousarray(param).reshape(-1)
        update = kernel_for("adamw_update", param)
        update(flat, grad.reshape(-1), state["exp_avg"].reshape(-1), state["exp_avg_sq"].reshape(-1),
               lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=decay,
               step=state["step"])  # fmt: skip
        if not param.flags.c_contiguous:
            param[...] = flat.reshape(param.shape)


class AdamW(Adam):
    """Adam with decoupled weight decay; PyTorch's default ``weight_decay=0.01``."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
