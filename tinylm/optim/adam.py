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
    state_spec = {"step": "count", "exp_avg": "tensor", "exp_avg_sq": "tensor"}

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        betas = tuple(betas) if isinstance(betas, (list, tuple)) else betas  # anything else is refused below
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def check_settings(self, group):
        for setting in ("lr", "eps", "weight_decay"):
            if group[setting] < 0:
                raise ValueError(f"{setting} must be non-negative, got {group[setting]}")
        if not all(0.0 <= beta < 1.0 for beta in group["betas"]):
            raise ValueError(f"betas must be in [0, 1), got {group['betas']}")

    def _check_saved_state(self, index, parameter, entries):
        super()._check_saved_state(index, parameter, entries)
        if entries and (entries["exp_avg_sq"] < 0).any():  # a mean of squares; its square root is taken
            raise ValueError(f"'exp_avg_sq' of parameter {index} holds negative values")

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
