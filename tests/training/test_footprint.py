"""The memory estimate that refuses settings too large to train: its parameter count is exact."""

import pytest

from tinylm.errors import ConfigError
from tinylm.models import build_model
from tinylm.training import footprint

MODELS = [
    dict(type="gpt", vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0, bias=False),
    dict(type="gpt", vocab_size=50, block_size=8, n_layer=1, n_head=4, n_embd=16, dropout=0.0, bias=True),
    dict(type="lstm", vocab_size=40, block_size=16, n_layer=2, n_embd=24, hidden_size=32, dropout=0.0),
    dict(type="gru", vocab_size=40, block_size=16, n_layer=1, n_embd=24, hidden_size=32, dropout=0.0),
    dict(type="rnn", vocab_size=40, block_size=16, n_layer=3, n_embd=8, hidden_size=12, dropout=0.0),
]


@pytest.mark.parametrize("settings", MODELS, ids=lambda s: f"{s['type']}-{s['n_layer']}")
def test_the_parameter_count_is_the_models(settings):
    model = build_model(settings)  # every parameter (num_parameters leaves out the GPT's positions)
    assert footprint.parameter_count(settings) == sum(p.numel() for p in model.parameters())


def test_settings_beyond_the_available_memory_are_refused_with_both_figures():
    settings = dict(MODELS[0], n_embd=4096, n_head=1)
    needed = footprint.training_bytes(settings, 12, "float32")
    assert footprint.check_fits(settings, 12, "float32", available=needed) == needed
    with pytest.raises(ConfigError, match=r"need about 6\.1 GiB .* but 6\.1 GiB is available"):
        footprint.check_fits(settings, 12, "float32", available=needed - 1)
    assert footprint.training_bytes(settings, 12, "float64") == 2 * needed
