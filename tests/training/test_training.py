"""The training loop: it learns, resumes exactly, survives Ctrl-C, and writes its checkpoints safely."""

import json
import os
import signal

import numpy as np
import pytest

from tinylm.errors import CheckpointError, ConfigError, DataError
from tinylm.training import checkpoint
from tinylm.training.trainer import Trainer, TrainingInterrupted, read_log

from tests.small_runs import corpus, small_config  # noqa: F401 (a fixture)



def _weights(directory):
    _, model_state, _ = checkpoint.load_checkpoint(directory)
    return model_state


def _losses(directory):
    return [(e["step"], e.get("loss", e.get("val_loss"))) for e in read_log(directory)]


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_training_lowers_the_loss(corpus, tmp_path, model):
    result = Trainer(small_config(corpus, tmp_path / "run", model=model, max_iters=60, eval_interval=30, lr=3e-3),
                     progress=False).run()  # fmt: skip
    evals = [e for e in result.history if "val_loss" in e]
    assert [e["step"] for e in evals] == [0, 30, 60]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5
    assert (tmp_path / "run" / "loss.png").stat().st_size > 1000


@pytest.mark.parametrize("model", ["gpt", "gru"])
def test_resume_continues_exactly_as_one_run(corpus, tmp_path, model):
    # 12 steps in one go, or 6, stop, resume, 6 more: the schedule is fixed by lr_decay_iters,
    # and step 6 is evaluated either way (it is a multiple of eval_interval)
    same = dict(model=model, dropout=0.1, eval_interval=3, lr_decay_iters=12)
    straight = tmp_path / "straight"
    Trainer(small_config(corpus, straight, **same), progress=False).run()

    split = tmp_path / "split"
    Trainer(small_config(corpus, split, max_iters=6, **same), progress=False).run()
    Trainer(small_config(corpus, split, resume=True, **same), progress=False).run()

    assert _losses(split) == _losses(straight)
    for name, value in _weights(straight).items():
        np.testing.assert_array_equal(_weights(split)[name], value, err_msg=name)


def test_ctrl_c_writes_a_checkpoint_that_resumes_exactly(corpus, tmp_path):
    straight = tmp_path / "straight"
    Trainer(small_config(corpus, straight), progress=False).run()

    stopped = tmp_path / "stopped"
    trainer = Trainer(small_config(corpus, stopped), progress=False)
    original = trainer.train_step

    def step_then_ctrl_c():
        result = original()
        if trainer.step == 6:  # a Ctrl-C in the middle of the run, at a step that also evaluates
            os.kill(os.getpid(), signal.SIGINT)
        return result

    trainer.train_step = step_then_ctrl_c
    with pytest.raises(TrainingInterrupted) as stop:
        trainer.run()
    assert stop.value.step == 6
    record = json.loads((stopped / "ckpt.json").read_text())
    assert record["step"] == 6 and record["evaluated"] is False
    Trainer(small_config(corpus, stopped, resume=True), progress=False).run()
    assert _losses(stopped) == _losses(straight)
    for name, value in _weights(straight).items():
        np.testing.assert_array_equal(_weights(stopped)[name], value, err_msg=name)


def test_an_existing_checkpoint_is_never_overwritten_without_being_asked(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(corpus, out, max_iters=4), progress=False).run()
    before = (out / "ckpt.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        Trainer(small_config(corpus, out), progress=False)
    with pytest.raises(DataError, match="block-size 5000"):
        Trainer(small_config(corpus, out, block_size=5000, overwrite=True), progress=False)
    assert (out / "ckpt.json").read_bytes() == before
    Trainer(small_config(corpus, out, max_iters=4, overwrite=True), progress=False).run()


def test_resume_refuses_a_checkpoint_of_another_vocabulary(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(corpus, out, max_iters=4), progress=False).run()
    data_dir = tmp_path / "other"
    from tinylm.data import prepare

    prepare(corpus, data_dir, tokenizer="bpe", vocab_size=300)
    with pytest.raises(ConfigError, match="--data .* differs from the run's"):
        Trainer(small_config(corpus, out, data=str(data_dir), resume=True), progress=False)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(small_config(corpus, tmp_path / "empty", resume=True), progress=False)


def test_a_truncated_or_corrupt_checkpoint_is_reported(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(corpus, out, max_iters=4), progress=False).run()
    record = json.loads((out / "ckpt.json").read_text())
    weights = out / record["weights"]["file"]
    payload = weights.read_bytes()
    weights.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load_checkpoint(out)
    weights.write_bytes(payload[:-8] + b"garbage!")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load_checkpoint(out)
    (out / "ckpt.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load_checkpoint(out)


def test_a_checkpoint_write_leaves_no_temporary_files_and_one_weights_file(corpus, tmp_path):
    out = tmp_path / "run"
    Trainer(small_config(corpus, out), progress=False).run()
    assert sorted(p.name for p in out.glob("ckpt*")) == ["ckpt-00000012.safetensors", "ckpt.json"]
    assert not list(out.glob("*.tmp"))


def test_the_log_records_evaluations_and_training_steps(corpus, tmp_path):
    Trainer(small_config(corpus, tmp_path / "run"), progress=False).run()
    entries = read_log(tmp_path / "run")
    evals = [e for e in entries if "val_loss" in e]
    steps = [e for e in entries if "loss" in e]
    assert [e["step"] for e in evals] == [0, 4, 8, 12]
    assert [e["step"] for e in steps] == list(range(1, 13))
    assert all(e["perplexity"] == pytest.approx(np.exp(e["val_loss"])) for e in evals)
    assert all(e["tokens_per_second"] > 0 for e in steps)


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_evaluation_in_groups_is_the_mean_of_the_batch_losses(corpus, tmp_path, model, monkeypatch):
    # 7 batches: passes of 5 and 2, against nanoGPT's one batch per forward, from the same draws
    from tinylm import random
    from tinylm.training import trainer as trainer_module

    config = small_config(corpus, tmp_path / "run", model=model, dtype="float64", eval_iters=7)
    trainer = Trainer(config, progress=False)
    state = random.get_rng_state()
    grouped = trainer_module.estimate_loss(trainer.model, trainer.data, config, 7)
    random.set_rng_state(state)
    monkeypatch.setattr(trainer_module, "EVAL_BATCHES_PER_PASS", 1)
    one_by_one = trainer_module.estimate_loss(trainer.model, trainer.data, config, 7)
    assert grouped.keys() == one_by_one.keys() == {"train", "val"}
    for split in grouped:
        assert grouped[split] == pytest.approx(one_by_one[split], rel=1e-12)
