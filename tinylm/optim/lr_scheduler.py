"""Learning-rate schedules, with ``torch.optim.lr_scheduler``'s names, arguments and values.

As in PyTorch, a scheduler sets every group's ``lr`` for step 0 when it is
made (``last_epoch`` becomes 0), and ``scheduler.step()`` after each
``optimizer.step()`` moves to the next step. ``get_last_lr()`` gives the rates
it last set; ``state_dict()`` / ``load_state_dict()`` save and restore where it
is (``load_state_dict`` also puts those rates back into the optimizer).

As in PyTorch, the first scheduler made on an optimizer records each group's
rate as ``group["initial_lr"]``, and every schedule starts from that
(``base_lrs``), so schedules made one after another (``SequentialLR``) share it,
and ``last_epoch`` resumes from it.

Where tinylm differs from PyTorch (``docs/pytorch.md``): every schedule but
``ReduceLROnPlateau`` is computed in closed form from its step count and
``base_lrs``, where some of PyTorch's rescale the group's current rate step by
step; the two agree to rounding unless something else changes ``group["lr"]``
meanwhile (two schedules stepped on one optimizer at once: combine them in one
``LambdaLR``). ``OneCycleLR`` keeps its ``max_lr``, ``min_lr``, ``max_momentum``
and ``base_momentum`` in itself rather than in the param groups.
"""

import bisect
import copy
import math
import warnings
from collections.abc import Mapping

from tinylm.optim.optimizer import Optimizer


def _check_optimizer(scheduler, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{scheduler}: expected a tinylm optimizer, got {type(optimizer).__name__}")


def _per_group(scheduler, name, value, optimizer):
    """A setting given once or once per param group, as a list with one value per group."""
    count = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{scheduler}: expected {count} values of {name}, one per param group, got {len(value)}")
        return list(value)
    return [value] * count


class LRScheduler:
    """Base class: subclasses write ``get_lr()``, the rate of every group at ``self.last_epoch``
    (or ``lr_at(step, base_lr)`` for a rate that depends only on the step and the group's base rate)."""

    def __init__(self, optimizer, last_epoch=-1):
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{name}: last_epoch={last_epoch} resumes from each param group's 'initial_lr', "
                                   f"which param_groups[{i}] lacks; load the optimizer's state_dict first, or make "
                                   "the scheduler with last_epoch=-1 and load its own state_dict")  # fmt: skip
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def lr_at(self, step, base_lr):
        raise NotImplementedError

    def get_lr(self):
        """Every group's rate at step ``self.last_epoch``."""
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def step(self, epoch=None):
        """Move to the next step (or, deprecated in PyTorch too, to step ``epoch``) and set the rates."""
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
        else:
            warnings.warn("passing an epoch to scheduler.step() is deprecated, as in PyTorch; call step() "
                          "once per step instead", UserWarning, stacklevel=2)  # fmt: skip
            self.last_epoch = epoch
        rates = self.get_lr()
        if len(rates) != len(self.optimizer.param_groups):
            raise ValueError(f"{type(self).__name__}: the optimizer has {len(self.optimizer.param_groups)} param "
                             f"groups, but the schedule was made for {len(rates)}")  # fmt: skip
        for group, lr in zip(self.optimizer.param_groups, rates):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The rates the last ``step()`` (or the constructor) set, one per group."""
        return list(self._last_lr)

    _unsaved = ("optimizer", "lr_lambdas")  # attributes state_dict() leaves out

    def state_dict(self):
        """Everything but the optimizer and functions (as PyTorch's, which saves functions as None)."""
        return {key: copy.deepcopy(value) for key, value in self.__dict__.items()
                if key not in self._unsaved and not callable(value)}  # fmt: skip

    def load_state_dict(self, state_dict):
        """Restore a ``state_dict()``, and set the optimizer's rates to the ones it had then.

        Raises ValueError, changing nothing, for a state that is not this kind of
        scheduler's or that has another number of param groups."""
        name = type(self).__name__
        own = LRScheduler.state_dict(self)
        if not isinstance(state_dict, Mapping) or not set(own) <= set(state_dict):
            missing = sorted(set(own) - set(state_dict)) if isinstance(state_dict, Mapping) else "everything"
            raise ValueError(f"{name}.load_state_dict: not a {name} state (it lacks {missing})")
        if len(state_dict["_last_lr"]) != len(self.optimizer.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state is for {len(state_dict['_last_lr'])} param groups, "
                             f"the optimizer has {len(self.optimizer.param_groups)}")  # fmt: skip
        self.__dict__.update(copy.deepcopy(dict(state_dict)))
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


_LRScheduler = LRScheduler  # the name older PyTorch code subclasses


class LambdaLR(LRScheduler):
    """``base_lr * lr_lambda(step)``; ``lr_lambda`` a function, or a list of one per group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        _check_optimizer(type(self).__name__, optimizer)
        self.lr_lambdas = _per_group("LambdaLR", "lr_lambda", lr_lambda, optimizer)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * factor(self.last_epoch) for factor, base_lr in zip(self.lr_lambdas, self.base_lrs)]


class ConstantLR(LRScheduler):
    """``base_lr * factor`` for the first ``total_iters`` steps, then ``base_lr``."""

    def __init__(self, optimizer, factor=1.0 / 3, total_iters=5, last_epoch=-1):
        if not 0 <= factor <= 1:
            raise ValueError(f"ConstantLR: factor must be between 0 and 1, got {factor}")
        self.factor, self.total_iters = factor, total_iters
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step, base_lr):
        return base_lr * (self.factor if step < self.total_iters else 1.0)


class LinearLR(LRScheduler):
    """``base_lr * factor``, the factor going linearly from ``start_factor`` to ``end_factor`` over
    the first ``total_iters`` steps, then staying there (a warmup, from ``start_factor`` up to 1)."""

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5, last_epoch=-1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                             f"{start_factor} and {end_factor}")  # fmt: skip
        self.start_factor, self.end_factor, self.total_iters = start_factor, end_factor, total_iters
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step, base_lr):
        progress = min(self.total_iters, step) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)


class SequentialLR(LRScheduler):
    """``schedulers[i]`` from step ``milestones[i - 1]`` (0 for the first) until ``milestones[i]``,
    each counting its own steps from 0 where it takes over (a warmup, then a decay)."""

    def __init__(self, optimizer, schedulers, milestones, last_epoch=-1):
        name = "SequentialLR"
        _check_optimizer(name, optimizer)
        schedulers, milestones = list(schedulers), list(milestones)
        if not schedulers or len(milestones) != len(schedulers) - 1:
            raise ValueError(f"{name}: expected one milestone fewer than schedulers, got {len(schedulers)} "
                             f"schedulers and {len(milestones)} milestones")  # fmt: skip
        for i, scheduler in enumerate(schedulers):
            if isinstance(scheduler, (ReduceLROnPlateau, SequentialLR)):
                raise ValueError(f"{name}: schedulers[{i}] is a {type(scheduler).__name__}, which cannot be "
                                 "sequenced (as in PyTorch)")  # fmt: skip
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"{name}: schedulers[{i}] is for another optimizer")
        self.optimizer, self._schedulers, self._milestones = optimizer, schedulers, milestones
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def step(self):
        self._step_count += 1
        self.last_epoch += 1
        index = bisect.bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        scheduler.last_epoch = self.last_epoch - (self._milestones[index - 1] if index else 0)
        for group, lr in zip(self.optimizer.param_groups, scheduler.get_lr()):
            group["lr"] = lr
        self._last_lr = scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    _unsaved = ("optimizer", "_schedulers")  # saved through their own state_dict()

    def state_dict(self):
        state = super().state_dict()
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        saved = state.pop("_schedulers", None)
        if not isinstance(saved, list) or len(saved) != len(self._schedulers):
            raise ValueError(f"SequentialLR.load_state_dict: expected the states of {len(self._schedulers)} "
                             "schedulers")  # fmt: skip
        for scheduler, scheduler_state in zip(self._schedulers, saved):
            scheduler.load_state_dict(scheduler_state)
        super().load_state_dict(state)


class StepLR(LRScheduler):
    """``base_lr * gamma ** (step // step_size)``: decay by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step, base_lr):
        return base_lr * self.gamma ** (step // self.step_size)


class MultiStepLR(LRScheduler):
    """``base_lr * gamma ** (number of milestones reached)``."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones, self.gamma = sorted(milestones), gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step, base_lr):
        return base_lr * self.gamma ** sum(step >= milestone for milestone in self.milestones)


class ExponentialLR(LRScheduler):
    """``base_lr * gamma ** step``."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step, base_lr):
        return base_lr * self.gamma**step


class CosineAnnealingLR(LRScheduler):
    """``eta_min + (base_lr - eta_min) (1 + cos(pi step / T_max)) / 2``: from base_lr at step 0 to
    eta_min at T_max (and, past it, back up, as PyTorch's does: no restart)."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):  # noqa: N803 (PyTorch's name)
        if not T_max or T_max < 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive number of steps, got {T_max!r}")
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step, base_lr):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * step / self.T_max)) / 2


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin, 2017), as ``torch.optim.lr_scheduler.OneCycleLR``.

    Over ``total_steps`` (or ``epochs * steps_per_epoch``) steps the rate goes from
    ``initial = max_lr / div_factor`` up to ``max_lr`` by step ``pct_start * total - 1``, then
    down to ``initial / final_div_factor`` at step ``total - 1``; with ``three_phase`` it
    first comes back to ``initial`` by step ``2 pct_start total - 2``, and only then
    goes down. Each phase anneals from its start value to its end value by
    ``anneal_strategy``: "cos", ``end + (start - end) (1 + cos(pi pct)) / 2``, or "linear".

    With ``cycle_momentum`` the momentum (SGD's ``momentum``, or Adam's beta1) moves the
    other way, between ``max_momentum`` and ``base_momentum``.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):  # fmt: skip
        name = "OneCycleLR"
        _check_optimizer(name, optimizer)
        if total_steps is not None:
            if not isinstance(total_steps, int) or total_steps <= 0:
                raise ValueError(f"{name}: expected a positive integer total_steps, got {total_steps!r}")
            self.total_steps = total_steps
        elif epochs is not None and steps_per_epoch is not None:
            for setting, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
                if not isinstance(value, int) or value <= 0:
                    raise ValueError(f"{name}: expected a positive integer {setting}, got {value!r}")
            self.total_steps = epochs * steps_per_epoch
        else:
            raise ValueError(f"{name}: give either total_steps or both epochs and steps_per_epoch")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: expected pct_start a float between 0 and 1, got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        self.max_lrs = [float(lr) for lr in _per_group(name, "max_lr", max_lr, optimizer)]
        self.initial_lrs = [lr / div_factor for lr in self.max_lrs]
        if last_epoch == -1:
            for group, initial in zip(optimizer.param_groups, self.initial_lrs):
                group["initial_lr"] = initial
        self.min_lrs = [lr / final_div_factor for lr in self.initial_lrs]
        total = self.total_steps
        # (last step of the phase, where the rate starts, where it ends, where the momentum starts, ends)
        if three_phase:
            self.phases = [
                (float(pct_start * total) - 1, "initial", "max", "max_momentum", "base_momentum"),
                (float(2 * pct_start * total) - 2, "max", "initial", "base_momentum", "max_momentum"),
                (total - 1, "initial", "min", "max_momentum", "max_momentum"),
            ]
        else:
            self.phases = [
                (float(pct_start * total) - 1, "initial", "max", "max_momentum", "base_momentum"),
                (total - 1, "max", "min", "base_momentum", "max_momentum"),
            ]
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"{name}: cycle_momentum needs an optimizer with momentum or betas "
                                 f"({type(optimizer).__name__} has neither); pass cycle_momentum=False")  # fmt: skip
            self.use_beta1 = "betas" in optimizer.defaults
            self.max_momentums = _per_group(name, "max_momentum", max_momentum, optimizer)
            self.base_momentums = _per_group(name, "base_momentum", base_momentum, optimizer)
            for group, momentum in zip(optimizer.param_groups, self.max_momentums):
                self._set_momentum(group, momentum)
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group, momentum):
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {step} times; the schedule has total_steps="
                             f"{self.total_steps}")  # fmt: skip
        rates = []
        for i, group in enumerate(self.optimizer.param_groups):
            values = {"initial": self.initial_lrs[i], "max": self.max_lrs[i], "min": self.min_lrs[i]}
            if self.cycle_momentum:
                values.update(max_momentum=self.max_momentums[i], base_momentum=self.base_momentums[i])
            phase_start = 0.0
            for number, (end_step, lr_from, lr_to, momentum_from, momentum_to) in enumerate(self.phases):
                if step <= end_step or number == len(self.phases) - 1:
                    pct = (step - phase_start) / (end_step - phase_start)
                    rates.append(self._anneal(values[lr_from], values[lr_to], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(values[momentum_from], values[momentum_to], pct))
                    break
                phase_start = end_step
        return rates


class ReduceLROnPlateau(LRScheduler):
    """Multiply every group's rate by ``factor`` (not below its ``min_lr``) once the metric
    given to ``step(metric)`` has not improved for more than ``patience`` steps in a row.

    "Improved" means below ``best * (1 - threshold)`` ("min" mode, "rel") or
    ``best - threshold`` ("abs"); above ``best * (1 + threshold)`` or
    ``best + threshold`` in "max" mode. After a reduction, ``cooldown`` steps pass
    before bad steps count again; a change smaller than ``eps`` is not made.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):  # fmt: skip
        name = "ReduceLROnPlateau"
        _check_optimizer(name, optimizer)
        if factor >= 1.0:
            raise ValueError(f"{name}: factor must be below 1, got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"{name}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.mode, self.factor, self.patience, self.threshold = mode, factor, patience, threshold
        self.threshold_mode, self.cooldown, self.eps = threshold_mode, cooldown, eps
        self.min_lrs = _per_group(name, "min_lr", min_lr, optimizer)
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def is_better(self, value, best):
        if self.mode == "min":
            return value < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return value > (best * (1.0 + self.threshold) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metrics, epoch=None):
        """Record this step's metric (a number or a 0-d tensor); reduce the rates if it is time."""
        current = float(metrics.item() if hasattr(metrics, "item") else metrics)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.is_better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad steps in the cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                new_lr = max(float(group["lr"]) * self.factor, min_lr)
                if float(group["lr"]) - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


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
    """Linear warmup, then cosine decay to ``min_lr`` at ``decay_steps`` (see ``warmup_cosine``); tinylm's own.

    ``min_lr`` is for the first group; other groups scale it by their base rate.
    """

    def __init__(self, optimizer, warmup_steps, decay_steps, min_lr):
        self.warmup_steps, self.decay_steps, self.min_lr = warmup_steps, decay_steps, min_lr
        super().__init__(optimizer)

    def lr_at(self, step, base_lr):
        min_lr = self.min_lr * base_lr / self.base_lrs[0] if self.base_lrs[0] else self.min_lr
        return warmup_cosine(step, base_lr, self.warmup_steps, self.decay_steps, min_lr)
