"""The reference mode: every CPU kernel's NumPy reference in place of the compiled one, for study.

A few training steps of each language model, in float64, give the same losses
and weights both ways (to 1e-10), and the environment variable turns the mode
on in a fresh process.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import tinylm
from tinylm.kernels import registry, use_reference_kernels
from tinylm.models import build_model
from tinylm.optim import AdamW

MODELS = {
    "gpt": dict(type="gpt", vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True),
    "lstm": dict(type="lstm", vocab_size=23, block_size=12, n_layer=2, n_embd=16, hidden_size=24, dropout=0.0),
    "gru": dict(type="gru", vocab_size=23, block_size=12, n_layer=2, n_embd=16, hidden_size=24, dropout=0.0),
}


def _train(settings, steps=3):
    """Losses and final weights of ``steps`` AdamW steps from a fixed start, in float64."""
    tinylm.manual_seed(7)
    model = build_model(settings).double()
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        ids = rng.integers(0, settings["vocab_size"], size=(3, settings["block_size"] + 1))
        _, loss = model(tinylm.tensor(ids[:, :-1]), tinylm.tensor(ids[:, 1:]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, {name: p.numpy().copy() for name, p in model.named_parameters()}


@pytest.fixture
def reference_mode():
    yield use_reference_kernels
    use_reference_kernels(False)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_training_steps_are_the_same_with_the_reference_kernels(kind, reference_mode):
    compiled_losses, compiled_weights = _train(MODELS[kind])
    reference_mode(True)
    assert registry.kernel_for("layernorm_forward", np.zeros(1)).__name__.endswith("_reference")
    reference_losses, reference_weights = _train(MODELS[kind])
    np.testing.assert_allclose(reference_losses, compiled_losses, rtol=1e-10, atol=0)
    for name, value in compiled_weights.items():
        np.testing.assert_allclose(reference_weights[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    reference_mode(False)
    assert registry.kernel_for("layernorm_forward", np.zeros(1)).__name__.endswith("_numba")


def test_the_environment_variable_turns_it_on_from_the_start():
    code = ("import numpy as np; from tinylm.kernels import kernel_for; "
            "print(kernel_for('cross_entropy_forward', np.zeros(1)).__name__)")  # fmt: skip

    def kernel_chosen(setting):
        environment = dict(os.environ, TINYLM_KERNELS=setting)
        return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    assert kernel_chosen("reference") == "cross_entropy_forward_reference"
    assert kernel_chosen("") == "cross_entropy_forward_numba"
