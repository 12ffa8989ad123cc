"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay (PyTorch's rule)."""

from tinylm.optim.optimizer import Optimizer


class SGD(Optimizer):
    """For each parameter p with gradient g, as ``torch.optim.SGD``::

        g = g + weight_decay * p
        buf = g                                        on the first step
        buf = momentum * buf + (1 - dampening) * g     afterwards
        g = g + momentum * buf  if nesterov  else  buf     (when momentum > 0)
        p = p - lr * g
    """

    state_spec = {"momentum_buffer": "tensor"}

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(
            params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov)
        )

    def check_settings(self, group):
        for setting in ("lr", "momentum", "weight_decay"):
            if group[setting] < 0:
                raise ValueError(f"{setting} must be non-negative, got {group[setting]}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")

    def update(self, group, param, grad, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * param
        momentum = group["momentum"]
        if momentum:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                buffer += (1 - group["dampening"]) * grad
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param -= group["lr"] * grad
