"""Optimizers, schedules and gradient clipping, against PyTorch and against their own state dicts."""

import numpy as np
import pytest

import tinylm
from tinylm import nn, optim
from tinylm.nn.utils import clip_grad_norm_
from tinylm.optim.lr_scheduler import WarmupCosineLR, warmup_cosine
from tests.parity import assert_close


def _problem(dtype):
    """A fixed least-squares problem: weights (3, 4) and (4,), a batch of inputs and targets."""
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)]
    x = rng.standard_normal((8, 3)).astype(dtype)
    target = rng.standard_normal((8, 4)).astype(dtype)
    return weights, x, target


def _run_tinylm(make, dtype, steps=5):
    weights, x, target = _problem(dtype)
    params = [nn.Parameter(tinylm.tensor(w)) for w in weights]
    optimizer = make(params)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((tinylm.tensor(x) @ params[0] + params[1] - tinylm.tensor(target)) ** 2).mean()
        loss.backward()
        optimizer.step()
    return params


def _run_torch(torch, make, dtype, steps=5):
    weights, x, target = _problem(dtype)
    params = [torch.nn.Parameter(torch.tensor(w)) for w in weights]
    optimizer = make(params)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = ((torch.tensor(x) @ params[0] + params[1] - torch.tensor(target)) ** 2).mean()
        loss.backward()
        optimizer.step()
    return params


CONFIGS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd-momentum-decay": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    "sgd-nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam-l2": ("Adam", dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)),
    "adamw": ("AdamW", dict(lr=0.01)),
    "adamw-nanogpt": ("AdamW", dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)),
}


@pytest.mark.parity
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_optimizer_matches_torch_over_five_steps(torch, config, dtype):
    name, settings = CONFIGS[config]
    ours = _run_tinylm(lambda p: getattr(optim, name)(p, **settings), dtype)
    theirs = _run_torch(torch, lambda p: getattr(torch.optim, name)(p, **settings), dtype)
    for mine, reference in zip(ours, theirs):
        assert mine.dtype == dtype
        assert_close(mine, reference, dtype)


def test_parameter_groups_take_their_own_settings():
    weights, x, target = _problem(np.float64)
    decayed, plain = nn.Parameter(tinylm.tensor(weights[0])), nn.Parameter(tinylm.tensor(weights[1]))
    optimizer = optim.AdamW(
        [{"params": [decayed], "weight_decay": 0.1}, {"params": [plain], "weight_decay": 0.0}], lr=0.1
    )
    assert optimizer.param_groups[0]["weight_decay"] == 0.1 and optimizer.param_groups[1]["lr"] == 0.1
    with pytest.raises(ValueError, match="unknown settings"):
        optim.SGD([{"params": [plain], "momentun": 0.9}])
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [plain]}, {"params": [plain]}])


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_state_dict_resume_continues_the_same_run(name):
    settings = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.05)
    straight = _run_tinylm(lambda p: getattr(optim, name)(p, **settings), np.float64, steps=6)

    weights, x, target = _problem(np.float64)
    params = [nn.Parameter(tinylm.tensor(w)) for w in weights]
    first = getattr(optim, name)(params, **settings)

    def train(optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            ((tinylm.tensor(x) @ params[0] + params[1] - tinylm.tensor(target)) ** 2).mean().backward()
            optimizer.step()

    train(first, 3)
    saved = first.state_dict()
    second = getattr(optim, name)(params, **settings)  # a fresh optimizer, as after a restart
    second.load_state_dict(saved)
    train(second, 3)
    for resumed, reference in zip(params, straight):
        np.testing.assert_array_equal(resumed.numpy(), reference.numpy())


def test_load_state_dict_rejects_a_different_model():
    params = [nn.Parameter(tinylm.zeros(2)) for _ in range(2)]
    saved = optim.Adam(params).state_dict()
    with pytest.raises(ValueError, match="groups of sizes"):
        optim.Adam([nn.Parameter(tinylm.zeros(2))]).load_state_dict(saved)


def test_warmup_cosine_follows_nanogpts_schedule():
    lr, min_lr, warmup, decay = 1e-3, 1e-4, 100, 2000
    assert warmup_cosine(0, lr, warmup, decay, min_lr) == pytest.approx(lr / 101)
    assert warmup_cosine(99, lr, warmup, decay, min_lr) == pytest.approx(lr * 100 / 101)
    assert warmup_cosine(100, lr, warmup, decay, min_lr) == pytest.approx(lr)
    assert warmup_cosine(1050, lr, warmup, decay, min_lr) == pytest.approx((lr + min_lr) / 2)
    assert warmup_cosine(2000, lr, warmup, decay, min_lr) == pytest.approx(min_lr)
    assert warmup_cosine(5000, lr, warmup, decay, min_lr) == min_lr


def test_scheduler_sets_every_groups_rate_and_restores_from_its_state():
    params = [nn.Parameter(tinylm.zeros(1)), nn.Parameter(tinylm.zeros(1))]
    optimizer = optim.AdamW([{"params": [params[0]]}, {"params": [params[1]], "lr": 2e-3}], lr=1e-3)
    schedule = WarmupCosineLR(optimizer, warmup_steps=10, decay_steps=100, min_lr=1e-4)
    assert schedule.get_last_lr() == pytest.approx([1e-3 / 11, 2e-3 / 11])
    for _ in range(50):
        schedule.step()
    rates = schedule.get_last_lr()
    again = WarmupCosineLR(optimizer, warmup_steps=10, decay_steps=100, min_lr=1e-4)
    again.load_state_dict(schedule.state_dict())
    assert again.get_last_lr() == pytest.approx(rates)
    assert rates[1] == pytest.approx(2 * rates[0])


@pytest.mark.parity
def test_clip_grad_norm_matches_torch(torch):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)) * 5, rng.standard_normal(7)]
    ours = [nn.Parameter(tinylm.zeros(*g.shape, dtype=tinylm.float64)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = tinylm.tensor(g)
        q.grad = torch.tensor(g)
    norm = clip_grad_norm_(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert norm.item() == pytest.approx(expected.item(), rel=1e-12)
    for p, q in zip(ours, theirs):
        assert_close(p.grad, q.grad, np.float64)


def test_clip_grad_norm_leaves_small_gradients_alone():
    p = nn.Parameter(tinylm.zeros(2, dtype=tinylm.float64))
    p.grad = tinylm.tensor(np.array([0.3, 0.4]))
    assert clip_grad_norm_([p], 1.0).item() == pytest.approx(0.5)
    assert p.grad.tolist() == [0.3, 0.4]
    assert clip_grad_norm_([], 1.0).item() == 0.0
