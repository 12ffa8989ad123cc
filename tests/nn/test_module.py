"""``Module``, ``Parameter`` and the containers: registration, naming, state, modes, dtype/device."""

import numpy as np
import pytest

import tinylm
from tinylm import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(3, 4)
        self.scale = nn.Parameter(tinylm.ones(4))
        self.register_buffer("steps", tinylm.zeros(1, dtype=tinylm.int64))
        self.register_buffer("scratch", tinylm.zeros(2), persistent=False)

    def forward(self, x):
        return self.inner(x) * self.scale


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.embed.weight  # weight tying, as GPT does


def test_parameters_are_registered_in_assignment_order_with_dotted_names():
    block = Block()  # a module's own parameters come before its children's, as in PyTorch
    assert [name for name, _ in block.named_parameters()] == ["scale", "inner.weight", "inner.bias"]
    model = nn.Sequential(Block(), nn.ReLU(), Block())
    names = [name for name, _ in model.named_parameters()]
    assert "0.inner.weight" in names and "2.scale" in names and len(names) == 6
    assert model.num_parameters() == 2 * (3 * 4 + 4 + 4)


def test_a_shared_parameter_is_listed_once_but_saved_under_both_names():
    model = Tied()
    assert [name for name, _ in model.named_parameters()] == ["embed.weight"]
    state = model.state_dict()
    assert set(state) == {"embed.weight", "head.weight"}


def test_state_dict_holds_parameters_and_persistent_buffers():
    state = Block().state_dict()
    assert set(state) == {"inner.weight", "inner.bias", "scale", "steps"}
    assert all(not tensor.requires_grad for tensor in state.values())


def test_load_state_dict_copies_in_place_and_casts_to_the_parameter_dtype():
    block = Block()
    weight = block.inner.weight
    values = {key: np.full(tensor.shape, 0.5, dtype=np.float64) for key, tensor in block.state_dict().items()}
    values["steps"] = np.array([7])
    block.load_state_dict(values)
    assert block.inner.weight is weight  # an optimizer holding it keeps working
    assert weight.dtype == np.float32 and np.all(weight.numpy() == 0.5)
    assert block.steps.tolist() == [7] and block.steps.dtype == np.int64


def test_load_state_dict_names_missing_unexpected_and_mismatched_keys():
    block = Block()
    state = {key: tensor.numpy() for key, tensor in block.state_dict().items()}
    del state["scale"]
    state["extra"] = np.zeros(1)
    state["inner.weight"] = np.zeros((5, 3))
    with pytest.raises(ValueError) as error:
        block.load_state_dict(state)
    message = str(error.value)
    assert "missing keys: scale" in message
    assert "unexpected keys: extra" in message
    assert "inner.weight: expected (4, 3), got (5, 3)" in message


def test_load_state_dict_non_strict_reports_what_it_skipped():
    block = Block()
    result = block.load_state_dict({"scale": np.full(4, 2.0), "other": np.zeros(1)}, strict=False)
    assert "inner.weight" in result.missing_keys and result.unexpected_keys == ["other"]
    assert block.scale.tolist() == [2.0] * 4


def test_train_and_eval_reach_every_submodule():
    model = nn.Sequential(Block(), nn.Dropout(0.5))
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_to_double_converts_parameters_and_gradients_in_place():
    block = Block()
    block(tinylm.randn(2, 3)).sum().backward()
    weight = block.inner.weight
    block.double()
    assert block.inner.weight is weight and weight.dtype == np.float64 and weight.grad.dtype == np.float64
    assert block.steps.dtype == np.int64  # integer buffers keep their dtype
    assert block(tinylm.randn(2, 3, dtype=tinylm.float64)).dtype == np.float64
    with pytest.raises(TypeError, match="floating-point"):
        block.to(tinylm.int64)


def test_zero_grad_clears_every_gradient():
    block = Block()
    block(tinylm.randn(2, 3)).sum().backward()
    block.zero_grad()
    assert all(p.grad is None for p in block.parameters())


def test_apply_visits_children_before_the_parent():
    visited = []
    nn.Sequential(nn.Linear(1, 1), nn.Sequential(nn.ReLU())).apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "ReLU", "Sequential", "Sequential"]


def test_repr_shows_the_tree():
    text = repr(nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Dropout(0.1))))
    assert text == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): Dropout(p=0.1)\n"
        "  )\n"
        ")"
    )


def test_containers_register_their_members():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and isinstance(layers[-1], nn.Linear)
    assert len(list(layers.parameters())) == 8
    table = nn.ModuleDict({"a": nn.Linear(1, 1)})
    table["b"] = nn.Linear(1, 2)
    assert list(table) == ["a", "b"] and "b" in table
    assert {name for name, _ in table.named_parameters()} == {"a.weight", "a.bias", "b.weight", "b.bias"}
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    assert isinstance(model[0], nn.Linear) and len(model[1:]) == 1


def test_assigning_before_init_says_what_is_wrong():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Broken()


def test_parameter_is_a_leaf_that_requires_grad():
    p = nn.Parameter(tinylm.zeros(2))
    assert p.requires_grad and p.is_leaf and isinstance(p, tinylm.Tensor)
    assert repr(p).startswith("Parameter containing:")
