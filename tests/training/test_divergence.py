"""Training never silently turns to NaN, and a run that fails under --overwrite leaves the old run whole."""

import json
import math

import numpy as np
import pytest

from tinylm.errors import ConfigError
from tinylm.training import checkpoint
from tinylm.training import trainer as trainer_module
from tinylm.training.trainer import MAX_SKIPPED_IN_A_ROW, Trainer, TrainingDiverged, read_log

from tests.small_runs import corpus, small_config  # noqa: F401 (a fixture)


def _files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _poison_weights_at(trainer, step):
    """From ``step`` on, the first weight matrix is NaN before each step trains."""
    original = trainer.train_step

    def train_step():
        if trainer.step >= step:
            trainer.parameters[0].data[...] = np.nan
        return original()

    trainer.train_step = train_step


def test_a_loss_that_stays_nan_stops_the_run_and_keeps_the_good_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(small_config(corpus, out), progress=False)
    _poison_weights_at(trainer, 5)  # steps 6, 7 and 8 (counted as the log counts them) have a NaN loss
    with pytest.raises(TrainingDiverged, match=r"the loss is nan at steps 6, 7, 8, each skipped.*\(step 4\) was kept"):
        trainer.run()
    _, weights, _ = checkpoint.load_checkpoint(out)
    assert json.loads((out / "ckpt.json").read_text())["step"] == 4
    assert all(np.isfinite(array).all() for array in weights.values())
    skipped = [e for e in read_log(out) if "skipped" in e]
    assert [e["step"] for e in skipped] == [6, 7, 8] and "nan" in skipped[0]["skipped"]
    assert MAX_SKIPPED_IN_A_ROW == 3


def test_an_evaluation_that_is_not_finite_writes_no_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(small_config(corpus, out), progress=False)
    _poison_weights_at(trainer, 7)  # step 8 trains on NaN weights (skipped), then step 8 evaluates
    with pytest.raises(TrainingDiverged, match=r"at step 8 the evaluation loss is not finite.*\(step 4\) was kept"):
        trainer.run()
    assert json.loads((out / "ckpt.json").read_text())["step"] == 4


def test_non_finite_weights_are_never_written_over_a_good_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(small_config(corpus, out, max_iters=4), progress=False)
    trainer.run()
    before = _files(out)
    trainer.parameters[0].data[0, 0] = np.inf
    with pytest.raises(TrainingDiverged, match=r"the weights transformer.wte.weight.* are not finite"):
        trainer.save(evaluated=False)
    assert _files(out) == before


def test_one_bad_step_is_skipped_counted_and_the_run_goes_on(corpus, tmp_path, monkeypatch):
    calls = []
    real_clip = trainer_module.clip_grad_norm_

    def clip_with_one_nan(parameters, max_norm):
        calls.append(max_norm)
        norm = real_clip(parameters, max_norm)
        return norm * math.nan if len(calls) == 5 else norm

    monkeypatch.setattr(trainer_module, "clip_grad_norm_", clip_with_one_nan)
    trainer = Trainer(small_config(corpus, tmp_path / "run", grad_clip=0.0), progress=False)
    before = [p.data.copy() for p in trainer.parameters]
    original = trainer.optimizer.step
    steps_taken = []
    trainer.optimizer.step = lambda: (steps_taken.append(trainer.step), original())[1]
    result = trainer.run()
    assert calls[0] == math.inf  # without clipping the norm is still taken, to see it is finite
    assert result.skipped_steps == 1 and 4 not in steps_taken and len(steps_taken) == 11
    assert [e["step"] for e in read_log(tmp_path / "run") if "skipped" in e] == [5]
    assert json.loads((tmp_path / "run" / "ckpt.json").read_text())["skipped_steps"] == 1
    assert not np.array_equal(before[0], trainer.parameters[0].data)


@pytest.mark.parametrize(
    "setting, value, message",
    [("lr", math.nan, "--lr must be a positive finite number"), ("lr", math.inf, "--lr must be a positive"),
     ("lr", 0.0, "--lr must be a positive"), ("min_lr", math.inf, "--min-lr must be a finite number >= 0"),
     ("min_lr", 0.5, "--min-lr (0.5) must not exceed --lr"), ("weight_decay", math.nan, "--weight-decay must be"),
     ("weight_decay", -0.1, "--weight-decay must be"), ("grad_clip", math.inf, "--grad-clip must be"),
     ("dropout", math.nan, "--dropout must be in [0, 1)"), ("beta2", 1.0, "--beta2 must be in [0, 1)"),
     ("val_fraction", math.nan, "--val-fraction must be in (0, 1)")],
)  # fmt: skip
def test_rates_and_factors_must_be_finite_and_in_range(corpus, tmp_path, setting, value, message):
    with pytest.raises(ConfigError) as error:
        small_config(corpus, tmp_path / "run", **{setting: value})
    assert message in str(error.value)


# ----- --overwrite ------------------------------------------------------------------------------


def test_overwrite_that_fails_during_training_leaves_the_old_run_as_it_was(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(corpus, out, max_iters=8, keep="best,latest"), progress=False).run()
    before = _files(out)
    trainer = Trainer(small_config(corpus, out, overwrite=True, seed=5), progress=False)
    _poison_weights_at(trainer, 5)
    with pytest.raises(TrainingDiverged):
        trainer.run()
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "run"]  # nothing left beside it


def test_overwrite_that_fails_before_training_leaves_the_old_run_as_it_was(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(corpus, out, max_iters=4), progress=False).run()
    before = _files(out)
    with pytest.raises(ConfigError, match="need about"):  # refused only once the data is read
        Trainer(small_config(corpus, out, overwrite=True, n_embd=2**20, n_head=1), progress=False)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "run"]


def test_overwrite_that_finishes_replaces_the_old_run(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(corpus, out, max_iters=4), progress=False).run()
    Trainer(small_config(corpus, out, max_iters=8, overwrite=True), progress=False).run()
    assert json.loads((out / "ckpt.json").read_text())["step"] == 8
    assert [e["step"] for e in read_log(out) if "val_loss" in e] == [0, 4, 8]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "run"]
