"""Learning-rate schedules against ``torch.optim.lr_scheduler``: the rate of every param group at
every step, the momentum ``OneCycleLR`` cycles, the parameters after optimizer steps with per-group
settings, and the state dict."""

import math

import numpy as np
import pytest

import tinylm
from tinylm import nn, optim
from tinylm.optim import lr_scheduler
from tests.parity import assert_close


def _torch_groups(torch, lrs, extra=()):
    params = [torch.nn.Parameter(torch.tensor(np.ones(3) * (i + 1))) for i in range(2)]
    return params, [dict({"params": [p], "lr": lr}, **dict(extra)) for p, lr in zip(params, lrs)]


def _tinylm_groups(lrs, extra=()):
    params = [nn.Parameter(tinylm.tensor(np.ones(3) * (i + 1))) for i in range(2)]
    return params, [dict({"params": [p], "lr": lr}, **dict(extra)) for p, lr in zip(params, lrs)]


SCHEDULES = {
    "StepLR": (dict(step_size=3, gamma=0.5), 12),
    "StepLR-default-gamma": (dict(step_size=2), 7),
    "MultiStepLR": (dict(milestones=[2, 5, 9], gamma=0.3), 12),
    "ExponentialLR": (dict(gamma=0.9), 10),
    "ConstantLR": (dict(factor=0.5, total_iters=4), 8),
    "LinearLR": (dict(start_factor=0.1, end_factor=0.8, total_iters=4), 8),
    "CosineAnnealingLR": (dict(T_max=10), 25),  # past T_max it goes back up, as PyTorch's
    "CosineAnnealingLR-eta_min": (dict(T_max=7, eta_min=1e-3), 12),
    "OneCycleLR": (dict(max_lr=[0.1, 0.05], total_steps=20), 20),
    "OneCycleLR-linear-three-phase": (dict(max_lr=0.2, epochs=4, steps_per_epoch=5, pct_start=0.25,
                                           anneal_strategy="linear", three_phase=True, div_factor=10.0,
                                           final_div_factor=100.0), 20),  # fmt: skip
    "OneCycleLR-no-momentum": (dict(max_lr=0.1, total_steps=9, cycle_momentum=False), 9),
}


def _drive(optimizer, scheduler, steps, params, loss_of):
    """Optimizer step, scheduler step, ``steps`` times; the rates (and momentum) seen at each step."""
    seen = []
    for _ in range(steps):
        groups = optimizer.param_groups
        seen.append([(g["lr"], g.get("momentum"), tuple(g.get("betas", ()))) for g in groups])
        assert scheduler.get_last_lr() == [g["lr"] for g in groups]
        optimizer.zero_grad()
        loss_of(params).backward()
        optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parity
@pytest.mark.parametrize("optimizer_name", ["SGD", "Adam"])
@pytest.mark.parametrize("case", sorted(SCHEDULES))
def test_schedule_matches_pytorch_step_by_step(torch, case, optimizer_name):
    settings, steps = SCHEDULES[case]
    name = case.split("-")[0]
    lrs = [0.1, 0.02]
    extra = {"momentum": 0.9} if optimizer_name == "SGD" else {}
    ours_params, ours_groups = _tinylm_groups(lrs, extra)
    theirs_params, theirs_groups = _torch_groups(torch, lrs, extra)
    ours_optimizer = getattr(optim, optimizer_name)(ours_groups, lr=0.1)
    theirs_optimizer = getattr(torch.optim, optimizer_name)(theirs_groups, lr=0.1)
    ours = getattr(lr_scheduler, name)(ours_optimizer, **settings)
    theirs = getattr(torch.optim.lr_scheduler, name)(theirs_optimizer, **settings)
    loss = lambda p: (p[0] * p[0]).sum() * 0.5 + (p[1] * p[1]).sum() * 0.25  # noqa: E731 (no divergence)
    ours_seen = _drive(ours_optimizer, ours, steps, ours_params, loss)
    theirs_seen = _drive(theirs_optimizer, theirs, steps, theirs_params, loss)
    for step, (mine, reference) in enumerate(zip(ours_seen, theirs_seen)):
        for (lr, momentum, betas), (their_lr, their_momentum, their_betas) in zip(mine, reference):
            assert lr == pytest.approx(their_lr, rel=1e-12, abs=1e-15), f"lr at step {step}"
            assert (momentum is their_momentum is None) or momentum == pytest.approx(their_momentum, rel=1e-12), \
                f"momentum at step {step}"
            assert betas == pytest.approx(their_betas, rel=1e-12), f"betas at step {step}"
    for mine, reference in zip(ours_params, theirs_params):
        assert_close(mine, reference, np.float64, "parameters after the run")


@pytest.mark.parity
def test_lambda_lr_with_one_function_per_group_matches_pytorch(torch):
    factors = [lambda step: 0.9**step, lambda step: 1.0 / (1 + step)]
    ours_params, ours_groups = _tinylm_groups([0.1, 0.3])
    theirs_params, theirs_groups = _torch_groups(torch, [0.1, 0.3])
    ours_optimizer, theirs_optimizer = optim.AdamW(ours_groups), torch.optim.AdamW(theirs_groups)
    ours = lr_scheduler.LambdaLR(ours_optimizer, factors)
    theirs = torch.optim.lr_scheduler.LambdaLR(theirs_optimizer, factors)
    loss = lambda p: (p[0] * p[1]).sum()  # noqa: E731
    ours_seen = _drive(ours_optimizer, ours, 6, ours_params, loss)
    theirs_seen = _drive(theirs_optimizer, theirs, 6, theirs_params, loss)
    assert [lr for step in ours_seen for lr, *_ in step] == pytest.approx(
        [lr for step in theirs_seen for lr, *_ in step], rel=1e-12
    )
    for mine, reference in zip(ours_params, theirs_params):
        assert_close(mine, reference, np.float64, "parameters")


@pytest.mark.parity
@pytest.mark.parametrize("mode, threshold_mode", [("min", "rel"), ("min", "abs"), ("max", "rel"), ("max", "abs")])
def test_reduce_lr_on_plateau_matches_pytorch(torch, mode, threshold_mode):
    metrics = [5.0, 4.0, 4.0, 3.9999, 4.1, 4.2, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5]
    if mode == "max":
        metrics = [-m for m in metrics]
    settings = dict(mode=mode, factor=0.5, patience=1, threshold=0.01, threshold_mode=threshold_mode,
                    cooldown=1, min_lr=[0.0, 0.004])  # fmt: skip
    ours_optimizer = optim.SGD(_tinylm_groups([0.1, 0.01])[1])
    theirs_optimizer = torch.optim.SGD(_torch_groups(torch, [0.1, 0.01])[1])
    ours = lr_scheduler.ReduceLROnPlateau(ours_optimizer, **settings)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_optimizer, **settings)
    for step, metric in enumerate(metrics):
        ours.step(tinylm.tensor(metric) if step % 2 else metric)  # a 0-d tensor or a number
        theirs.step(metric)
        assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12), f"step {step}"
    assert ours.get_last_lr()[0] < 0.1 and ours.get_last_lr()[1] == 0.004  # it did reduce, down to min_lr


def test_per_group_settings_reach_the_optimizer_step():
    """A group's own lr and weight_decay are used, and a schedule scales each group's own rate."""
    ours_params, groups = _tinylm_groups([0.1, 0.01], {"weight_decay": 0.0})
    groups[1]["weight_decay"] = 0.5
    optimizer = optim.SGD(groups)
    schedule = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.zero_grad()
    (ours_params[0].sum() + ours_params[1].sum()).backward()
    optimizer.step()
    np.testing.assert_allclose(ours_params[0].numpy(), 1 - 0.1)  # grad 1, lr 0.1
    np.testing.assert_allclose(ours_params[1].numpy(), 2 - 0.01 * (1 + 0.5 * 2))  # grad 1 + decay * p
    schedule.step()
    assert schedule.get_last_lr() == pytest.approx([0.05, 0.005])
    extra = nn.Parameter(tinylm.zeros(2))
    optimizer.add_param_group({"params": [extra], "lr": 0.3})
    assert optimizer.param_groups[2]["lr"] == 0.3 and optimizer.param_groups[2]["weight_decay"] == 0.0


@pytest.mark.parametrize("make", [
    lambda o: lr_scheduler.StepLR(o, step_size=2),
    lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
    lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=12),
    lambda o: lr_scheduler.LambdaLR(o, lambda step: 1 / (step + 1)),
    lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=0),
], ids=["StepLR", "CosineAnnealingLR", "OneCycleLR", "LambdaLR", "ReduceLROnPlateau"])  # fmt: skip
def test_state_dict_resumes_the_same_schedule(make):
    def run(scheduler, steps):
        rates = []
        for step in range(steps):
            if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
                scheduler.step(1.0 + (step % 3))
            else:
                scheduler.step()
            rates.append(scheduler.get_last_lr())
        return rates

    straight = run(make(optim.SGD(_tinylm_groups([0.1, 0.2], {"momentum": 0.9})[1])), 8)
    first_optimizer = optim.SGD(_tinylm_groups([0.1, 0.2], {"momentum": 0.9})[1])
    first = make(first_optimizer)
    resumed = run(first, 4)
    saved_optimizer, saved = first_optimizer.state_dict(), first.state_dict()
    optimizer = optim.SGD(_tinylm_groups([0.1, 0.2], {"momentum": 0.9})[1])
    second = make(optimizer)  # fresh, as after a restart
    optimizer.load_state_dict(saved_optimizer)
    second.load_state_dict(saved)
    assert second.get_last_lr() == resumed[-1] == [g["lr"] for g in optimizer.param_groups]
    assert resumed + run(second, 4) == straight


def test_schedulers_refuse_what_they_cannot_do():
    optimizer = optim.SGD(_tinylm_groups([0.1, 0.2])[1])
    with pytest.raises(KeyError, match=r"last_epoch=3 resumes from each param group's 'initial_lr', which "
                                       r"param_groups\[0\] lacks"):
        lr_scheduler.StepLR(optimizer, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="give either total_steps or both epochs and steps_per_epoch"):
        lr_scheduler.OneCycleLR(optimizer, max_lr=0.1)
    with pytest.raises(ValueError, match="expected 2 values of max_lr, one per param group, got 3"):
        lr_scheduler.OneCycleLR(optimizer, max_lr=[0.1, 0.2, 0.3], total_steps=5)
    schedule = lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=2)
    schedule.step()
    schedule.step()
    with pytest.raises(ValueError, match="tried to step 3 times; the schedule has total_steps=2"):
        schedule.step()
    with pytest.raises(ValueError, match="factor must be below 1"):
        lr_scheduler.ReduceLROnPlateau(optimizer, factor=1.0)
    with pytest.raises(ValueError, match="StepLR.load_state_dict: not a StepLR state"):
        lr_scheduler.StepLR(optimizer, step_size=2).load_state_dict({"last_epoch": 1})
    with pytest.raises(TypeError, match="expected a tinylm optimizer"):
        lr_scheduler.StepLR(object(), step_size=2)
    fresh = optim.SGD(_tinylm_groups([0.1, 0.2])[1])
    assert math.isclose(lr_scheduler.ExponentialLR(fresh, 0.5).get_last_lr()[0], 0.1)


@pytest.mark.parity
def test_sequential_warmup_then_cosine_matches_pytorch(torch):
    """Schedulers made one after another share the groups' initial_lr, as in PyTorch; SequentialLR
    hands over at the milestone, the next schedule counting from 0 there."""
    def build(module, groups):
        optimizer = module.optim.SGD(groups, lr=0.1, momentum=0.9)
        schedules = module.optim.lr_scheduler
        warmup = schedules.LinearLR(optimizer, start_factor=0.1, total_iters=4)
        cosine = schedules.CosineAnnealingLR(optimizer, T_max=10, eta_min=1e-3)
        return optimizer, schedules.SequentialLR(optimizer, [warmup, cosine], milestones=[4])

    ours_params, ours_groups = _tinylm_groups([0.1, 0.04])
    theirs_params, theirs_groups = _torch_groups(torch, [0.1, 0.04])
    ours_optimizer, ours = build(tinylm, ours_groups)
    theirs_optimizer, theirs = build(torch, theirs_groups)
    loss = lambda p: (p[0] * p[0]).sum() + (p[1] * p[1]).sum() * 0.5  # noqa: E731
    ours_seen = _drive(ours_optimizer, ours, 16, ours_params, loss)
    theirs_seen = _drive(theirs_optimizer, theirs, 16, theirs_params, loss)
    assert [lr for step in ours_seen for lr, *_ in step] == pytest.approx(
        [lr for step in theirs_seen for lr, *_ in step], rel=1e-12
    )
    for mine, reference in zip(ours_params, theirs_params):
        assert_close(mine, reference, np.float64, "parameters")
    again = build(tinylm, _tinylm_groups([0.1, 0.04])[1])[1]
    again.load_state_dict(ours.state_dict())
    assert again.get_last_lr() == ours.get_last_lr() and again.last_epoch == ours.last_epoch


@pytest.mark.parity
def test_resuming_with_last_epoch_from_the_optimizers_state_matches_pytorch(torch):
    """PyTorch's way to resume: load the optimizer's state (which holds initial_lr), then make the
    scheduler with last_epoch set to the last step it saw."""
    rates = {}
    for module, make_groups in ((tinylm, _tinylm_groups), (torch, lambda lrs: _torch_groups(torch, lrs))):
        first = module.optim.Adam(make_groups([0.1, 0.02])[1])
        schedule = module.optim.lr_scheduler.StepLR(first, step_size=3, gamma=0.5)
        for _ in range(5):
            schedule.step()
        second = module.optim.Adam(make_groups([0.7, 0.7])[1])
        second.load_state_dict(first.state_dict())
        resumed = module.optim.lr_scheduler.StepLR(second, step_size=3, gamma=0.5, last_epoch=schedule.last_epoch)
        seen = [resumed.get_last_lr()]
        for _ in range(4):
            resumed.step()
            seen.append(resumed.get_last_lr())
        rates[module.__name__] = [lr for step in seen for lr in step]
    assert rates["tinylm"] == pytest.approx(rates["torch"], rel=1e-12)


def test_optimizer_state_with_a_bad_initial_lr_is_refused():
    optimizer = optim.SGD(_tinylm_groups([0.1, 0.2])[1])
    lr_scheduler.StepLR(optimizer, step_size=2)
    saved = optimizer.state_dict()
    assert saved["param_groups"][1]["initial_lr"] == 0.2
    saved["param_groups"][1]["initial_lr"] = "fast"
    with pytest.raises(ValueError, match="saved group 1: initial_lr must be a finite number, got 'fast'"):
        optim.SGD(_tinylm_groups([0.1, 0.2])[1]).load_state_dict(saved)
