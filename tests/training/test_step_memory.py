"""Memory over whole training steps of the language models (AdamW, clipping, float32):
no growth from step to step, parameters and optimizer state updated in place,
and no float64 tensor anywhere in a float32 step."""

import importlib
import tracemalloc

import numpy as np
import pytest

import tinylm
from tinylm.models import GPT, GPTConfig
from tinylm.models.rnn_lm import RNNLM, RNNLMConfig
from tinylm.nn.utils import clip_grad_norm_
from tinylm.optim import AdamW

tensor_module = importlib.import_module("tinylm.tensor")  # the module; ``tinylm.tensor`` is the function
VOCAB, BATCH, LENGTH = 23, 4, 16
MODELS = {
    "gpt": lambda: GPT(GPTConfig(vocab_size=VOCAB, block_size=LENGTH, n_layer=2, n_head=2, n_embd=32, bias=False)),
    "lstm": lambda: RNNLM(RNNLMConfig(vocab_size=VOCAB, cell="lstm", n_embd=8, hidden_size=16, block_size=LENGTH)),
    "gru": lambda: RNNLM(RNNLMConfig(vocab_size=VOCAB, cell="gru", n_embd=8, hidden_size=16, block_size=LENGTH)),
}


def _training(name):
    """A model of ``name``, its AdamW, and ``step()``: one training step on fresh random ids."""
    tinylm.manual_seed(0)
    model = MODELS[name]()
    optimizer = AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    rng = np.random.default_rng(0)

    def step():
        ids = rng.integers(0, VOCAB, (BATCH, LENGTH + 1))
        _, loss = model(tinylm.tensor(ids[:, :-1]), tinylm.tensor(ids[:, 1:]))
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss

    return model, optimizer, step


@pytest.mark.parametrize("name", MODELS)
def test_memory_does_not_grow_over_50_training_steps(name):
    _, _, step = _training(name)
    for _ in range(3):  # compiled kernels, optimizer state and caches are made in the first steps
        step()
    tracemalloc.start()  # NumPy reports its arrays' memory to tracemalloc
    try:
        usage = []
        for _ in range(50):
            step()
            usage.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # A leak of one step's activations or gradients would be tens of KiB a step here.
    assert usage[-1] <= usage[4] + 16 * 1024, f"{name}: memory grew from {usage[4]} to {usage[-1]} bytes"


@pytest.mark.parametrize("name", MODELS)
def test_the_optimizer_updates_parameters_and_its_state_in_place(name):
    model, optimizer, step = _training(name)
    step()  # makes the state

    def addresses():
        arrays = [p.data for p in model.parameters()]
        arrays += [s[key] for s in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq")]
        return [a.__array_interface__["data"][0] for a in arrays]

    before = [p.data.copy() for p in model.parameters()]
    where = addresses()
    step()
    assert addresses() == where, f"{name}: a parameter or a moment was replaced instead of updated"
    assert any(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters())), "nothing was updated"


@pytest.mark.parametrize("name", MODELS)
def test_a_float32_training_step_makes_no_float64_tensor(name, monkeypatch):
    """Every op's output in a step is float32 or an integer id tensor; the backward engine refuses
    a gradient whose dtype differs from its input's, so the gradients are float32 too. Arrays a
    kernel or an op keeps inside itself are not Tensors and are not seen here."""
    model, optimizer, step = _training(name)
    step()
    made = []
    make = tensor_module._make_output  # every op's outputs, and each leaf's .grad, are made here

    def recording(array, fn, index):
        made.append(array.dtype)
        return make(array, fn, index)

    monkeypatch.setattr(tensor_module, "_make_output", recording)
    loss = step()
    monkeypatch.undo()
    floats = {dtype for dtype in made if dtype.kind == "f"}
    assert len(made) > 20 and floats == {np.dtype(np.float32)}, f"{name}: tensors of {sorted(map(str, set(made)))}"
    assert loss.dtype == np.float32
    for parameter in model.parameters():
        assert parameter.dtype == np.float32 and parameter.grad.dtype == np.float32
    for state in optimizer.state.values():
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == np.float32
