"""Learning-rate schedules: each sets ``group["lr"]`` of an optimizer's groups on ``step()``.

As in PyTorch, a scheduler sets the learning rate for step 0 when it is made,
and ``scheduler.step()`` after each ``optimizer.step()`` moves to the next.
"""

import math


class LRScheduler:
    """Base class: ``lr_at(step, base_lr)`` gives each group's learning rate at ``step``."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def lr_at(self, step, base_lr):
        raise NotImplementedError

    def _apply(self):
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_step, base_lr)

    def step(self):
        self.last_step += 1
        self._apply()

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_step, self.base_lrs = state["last_step"], list(state["base_lrs"])
        self._apply()


class ConstantLR(LRScheduler):
    """The base learning rate throughout."""

    def lr_at(self, step, base_lr):
        return base_lr


class LambdaLR(LRScheduler):
    """``base_lr * factor(step)`` for a function ``factor``."""

    def __init__(self, optimizer, lr_lambda):
        self.lr_lambda = lr_lambda
        super().__init__(optimizer)

    def lr_at(self, step, base_lr):
        return base_lr * self.lr_lambda(step)


def warmup_cosine(step, base_lr, warmup_steps, decay_steps, min_lr):
    """nanoGPT's schedule: linear warmup from 0 over ``warmup_steps``, cosine decay to ``min_lr`` at
    ``decay_steps``, then ``min_lr``.

    During warmup the rate is ``base_lr * (step + 1) / (warmup_steps + 1)``, so step 0 trains too.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / (warmup_steps + 1)
    if step > decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - min_lr)


class WarmupCosineLR(LRScheduler):
    """Linear warmup, then cosine decay to ``min_lr`` at ``decay_steps`` (see ``warmup_cosine``).

    ``min_lr`` is for the first group; other groups scale it by their base rate.
    """

    def __init__(self, optimizer, warmup_steps, decay_steps, min_lr):
        self.warmup_steps, self.decay_steps, self.min_lr = warmup_steps, decay_steps, min_lr
        super().__init__(optimizer)

    def lr_at(self, step, base_lr):
        min_lr = self.min_lr * base_lr / self.base_lrs[0] if self.base_lrs[0] else self.min_lr
        return warmup_cosine(step, base_lr, self.warmup_steps, self.decay_steps, min_lr)
