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


def _adam_after_one_step():
    """An Adam over two parameter groups, stepped once (so every parameter has its moments), and
    its state dict."""
    params = [nn.Parameter(tinylm.tensor(np.ones((2, 3)))), nn.Parameter(tinylm.tensor(np.ones(3)))]
    optimizer = optim.Adam([{"params": params[:1], "weight_decay": 0.1}, {"params": params[1:]}], lr=0.1)
    (params[0].sum(dim=0) * params[1]).sum().backward()
    optimizer.step()
    return params, optimizer.state_dict()


def _edit(path, value):
    """A change to a state dict: set the entry at ``path`` to ``value``, or delete it (``DELETE``)."""

    def change(state_dict):
        *parents, last = path
        entry = state_dict
        for key in parents:
            entry = entry[key]
        if value is DELETE:
            del entry[last]
        else:
            entry[last] = value
        return state_dict

    return change


DELETE = object()

# (change to the saved state, fragments of the ValueError)
MISFITS = {
    "not a state dict": (lambda saved: None, ["expected a dict with 'state' and 'param_groups'", "got NoneType"]),
    "a moment of a parameter in no group": (_edit(["state", 5], {"step": 1, "exp_avg": np.zeros(3)}),
                                            ["an entry for parameter 5, which is in no group", "[0, 1]"]),
    "a missing exp_avg_sq": (_edit(["state", 1, "exp_avg_sq"], DELETE),
                             ["the state of parameter 1 lacks ['exp_avg_sq']", "'exp_avg', 'step'"]),
    "a moment of the wrong shape": (_edit(["state", 0, "exp_avg"], np.zeros(3)),
                                    ["'exp_avg' of parameter 0 has shape (3,), the parameter (2, 3)"]),
    "an integer moment": (_edit(["state", 0, "exp_avg"], np.zeros((2, 3), np.int32)),
                          ["'exp_avg' of parameter 0 has dtype int32, expected a floating dtype"]),
    "a NaN moment": (_edit(["state", 1, "exp_avg"], np.array([0.0, np.nan, np.inf])),
                     ["'exp_avg' of parameter 1 holds 2 non-finite values"]),
    "a negative exp_avg_sq": (_edit(["state", 1, "exp_avg_sq"], -np.ones(3)),
                              ["'exp_avg_sq' of parameter 1 holds negative values"]),
    "a step of 0": (_edit(["state", 0, "step"], 0), ["'step' of parameter 0 must be an integer from 1, got 0"]),
    "a step that is a string": (_edit(["state", 0, "step"], "1"), ["'step' of parameter 0", "got '1'"]),
    "an unknown moment": (_edit(["state", 0, "velocity"], np.zeros((2, 3))),
                          ["parameter 0 holds ['velocity'], which Adam does not keep"]),
    "a missing setting": (_edit(["param_groups", 0, "eps"], DELETE), ["saved group 0 lacks the settings ['eps']"]),
    "an unknown setting": (_edit(["param_groups", 1, "momentum"], 0.9),
                           ["saved group 1 has unknown settings ['momentum']"]),
    "lr a string": (_edit(["param_groups", 0, "lr"], "fast"),
                    ["saved group 0: lr must be a finite number, got 'fast'"]),
    "lr NaN": (_edit(["param_groups", 1, "lr"], float("nan")), ["saved group 1: lr must be a finite number, got nan"]),
    "lr negative": (_edit(["param_groups", 0, "lr"], -1.0), ["saved group 0: lr must be non-negative, got -1.0"]),
    "betas of one number": (_edit(["param_groups", 0, "betas"], [0.9]),
                            ["saved group 0: betas must be a list of 2 finite numbers, got [0.9]"]),
    "beta2 of 1": (_edit(["param_groups", 0, "betas"], [0.9, 1.0]), ["saved group 0: betas must be in [0, 1)"]),
    "a parameter listed twice": (_edit(["param_groups", 1, "params"], [0]),
                                 ["saved group 1 lists parameter 0; expected distinct integer indices"]),
    "param_groups not a list": (_edit(["param_groups"], "groups"), ["'param_groups' must be a list of dicts"]),
}


@pytest.mark.parametrize("case", sorted(MISFITS))
def test_load_state_dict_refuses_state_that_does_not_fit_and_changes_nothing(case):
    change, fragments = MISFITS[case]
    params, saved = _adam_after_one_step()
    fresh = optim.Adam([{"params": params[:1]}, {"params": params[1:]}], lr=0.5)
    with pytest.raises(ValueError) as caught:
        fresh.load_state_dict(change(saved))
    message = str(caught.value)
    assert message.startswith("Adam.load_state_dict: ") and all(f in message for f in fragments), message
    assert fresh.state == {} and [g["lr"] for g in fresh.param_groups] == [0.5, 0.5]  # as it was


def test_a_state_dict_that_went_through_json_loads():
    # what a checkpoint gives back: string indices, lists for tuples, NumPy arrays that may be read-only
    params, saved = _adam_after_one_step()
    saved["state"] = {str(index): {k: (np.asarray(v).copy() if k != "step" else v) for k, v in entries.items()}
                      for index, entries in saved["state"].items()}  # fmt: skip
    for group in saved["param_groups"]:
        group["betas"] = list(group["betas"])
        for entries in saved["state"].values():
            for value in entries.values():
                if isinstance(value, np.ndarray):
                    value.flags.writeable = False
    fresh = optim.Adam([{"params": params[:1]}, {"params": params[1:]}], lr=0.5)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["betas"] == (0.9, 0.999) and fresh.param_groups[0]["weight_decay"] == 0.1
    assert [state["step"] for state in fresh.state.values()] == [1, 1]
    assert all(state["exp_avg"].flags.writeable for state in fresh.state.values())  # copies: the kernel writes them
    fresh.step()  # the restored moments can be updated in place


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: optim.Adam(p, lr=float("nan")), "Adam: lr must be a finite number, got nan"),
        (lambda p: optim.AdamW(p, lr="0.1"), "AdamW: lr must be a finite number, got '0.1'"),
        (lambda p: optim.Adam(p, betas=(0.9,)), "Adam: betas must be a list of 2 finite numbers, got (0.9,)"),
        (lambda p: optim.AdamW([{"params": p, "weight_decay": -0.1}]), "AdamW: weight_decay must be non-negative"),
        (lambda p: optim.SGD([{"params": p, "lr": float("inf")}]), "SGD: lr must be a finite number, got inf"),
        (lambda p: optim.SGD([{"params": p, "nesterov": True}], momentum=0.0),
         "SGD: nesterov momentum needs momentum > 0"),
        (lambda p: optim.SGD(p, nesterov="yes", momentum=0.9), "SGD: nesterov must be true or false, got 'yes'"),
    ],
    ids=["lr NaN", "lr a string", "one beta", "a group's negative decay", "a group's infinite lr",
         "a group's nesterov without momentum", "nesterov a string"],
)
def test_every_groups_settings_are_checked(make, fragment):
    with pytest.raises(ValueError) as caught:
        make([nn.Parameter(tinylm.zeros(2))])
    assert fragment in str(caught.value), str(caught.value)


@pytest.mark.parity
@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_per_group_settings_match_torch(torch, name):
    """Each group's own lr, weight_decay and betas (or momentum), one group added later with
    add_param_group, against torch.optim over five steps."""
    own = {"SGD": [dict(lr=0.05, momentum=0.9, weight_decay=0.01), dict(lr=0.2, momentum=0.5)],
           "Adam": [dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1), dict(lr=0.03, betas=(0.5, 0.9))],
           "AdamW": [dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.3), dict(lr=0.03, weight_decay=0.0)]}[name]
    weights, x, target = _problem(np.float64)
    results = []
    for module, make in ((tinylm, lambda w: nn.Parameter(tinylm.tensor(w))),
                         (torch, lambda w: torch.nn.Parameter(torch.tensor(w)))):  # fmt: skip
        params = [make(w) for w in weights]
        optimizer = getattr(module.optim, name)([dict(params=[params[0]], **own[0])], lr=0.1)
        optimizer.add_param_group(dict(params=[params[1]], **own[1]))
        for _ in range(5):
            optimizer.zero_grad()
            ((module.tensor(x) @ params[0] + params[1] - module.tensor(target)) ** 2).mean().backward()
            optimizer.step()
        results.append(params)
    for mine, reference in zip(*results):
        assert_close(mine, reference, np.float64)
