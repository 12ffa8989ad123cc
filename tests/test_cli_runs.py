"""The ``tinylm`` command run as a newcomer runs it: twice in a row, interrupted and resumed,
resumed with its settings remembered, and with the small things users reached for."""

import json
import os
import shlex
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from tinylm import __version__, cli
from tinylm.training import trainer as trainer_module

from tests.small_runs import SMALL, corpus, one_line_error  # noqa: F401 (a fixture)

# A non-default run: another width, learning rate, schedule and evaluation interval.
CUSTOM = [*SMALL, "--lr", "0.003", "--warmup-iters", "3", "--eval-interval", "4", "--log-interval", "1"]


def _train(corpus, *arguments):
    return cli.main(["train", "--data", str(corpus), "--quiet", *CUSTOM, *arguments])


def _log_steps(run):
    return [json.loads(line)["step"] for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def _training_entries(run):
    return [e for e in map(json.loads, (Path(run) / "log.jsonl").read_text().splitlines()) if "loss" in e]


# ----- the main job, twice --------------------------------------------------------------------


def test_the_same_command_twice_makes_two_numbered_runs_and_latest_follows(corpus, capsys):
    assert _train(corpus, "--max-iters", "4") == 0
    assert _train(corpus, "--max-iters", "4") == 0
    runs = Path("out")
    assert sorted(p.name for p in runs.iterdir()) == ["latest", "run-001", "run-002"]
    assert os.readlink(runs / "latest") == "run-002"
    assert (runs / "run-001" / "ckpt.json").is_file() and (runs / "run-002" / "ckpt.json").is_file()
    capsys.readouterr()
    assert cli.main(["sample", "--prompt", "to be", "--max-new-tokens", "5"]) == 0  # reads out/latest
    assert capsys.readouterr().out.startswith("to be")
    assert cli.main(["eval", "--data", str(corpus)]) == 0
    assert "perplexity" in capsys.readouterr().out


def test_a_run_that_fails_before_training_leaves_no_numbered_directory(capsys):
    one_line_error(capsys, cli.main(["train", "--data", "/no/such/file.txt"]), "does not exist")
    assert not Path("out").exists() or not [p for p in Path("out").iterdir() if p.name.startswith("run-")]


def test_sample_names_what_it_found_when_there_is_no_run(capsys):
    one_line_error(capsys, cli.main(["sample"]), "no checkpoint in out")


# ----- resume that remembers ------------------------------------------------------------------


@contextmanager
def _interrupted_at(step):
    """Within the block, the trainer sends itself Ctrl-C once it has trained ``step`` steps."""
    original = trainer_module.Trainer.train_step

    def train_step(self):
        result = original(self)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module.Trainer, "train_step", train_step)
        yield


def test_the_hint_printed_on_ctrl_c_works_verbatim_after_a_non_default_run(corpus, capsys):
    with _interrupted_at(6):
        assert _train(corpus, "--max-iters", "12") == cli.EXIT_INTERRUPTED
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    command = shlex.split(hint.split("continue with: ")[1])
    assert command[:3] == ["tinylm", "train", "--resume"]
    assert cli.main(command[1:]) == 0, capsys.readouterr().err
    record = json.loads((Path("out/latest") / "ckpt.json").read_text())
    assert record["step"] == 12 and record["train_config"]["n_embd"] == 16 and record["train_config"]["lr"] == 0.003


def test_resume_takes_every_setting_from_the_checkpoint(corpus, capsys):
    assert _train(corpus, "--max-iters", "4", "--out", "run") == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", "run", "--max-iters", "8", "--quiet"]) == 0
    assert capsys.readouterr().err.startswith("continuing from step 4 a gpt of")
    record = json.loads(Path("run/ckpt.json").read_text())
    assert record["step"] == 8
    assert {k: record["train_config"][k] for k in ("n_embd", "block_size", "lr", "eval_interval", "data")} == {
        "n_embd": 16, "block_size": 8, "lr": 0.003, "eval_interval": 4, "data": str(corpus)}  # fmt: skip


@pytest.mark.parametrize(
    "flag, value, shown",
    [("--n-embd", "32", "--n-embd 32 differs from the run's 16"), ("--lr", "0.01", "--lr 0.01 differs"),
     ("--model", "lstm", "--model 'lstm' differs"), ("--tokenizer", "word", "--tokenizer 'word' differs"),
     ("--seed", "5", "--seed 5 differs")],
)  # fmt: skip
def test_resume_refuses_a_setting_given_again_with_another_value(corpus, capsys, flag, value, shown):
    assert _train(corpus, "--max-iters", "4", "--out", "run") == 0
    before = Path("run/ckpt.json").read_bytes()
    capsys.readouterr()
    code = cli.main(["train", "--resume", "--out", "run", flag, value, "--quiet"])
    one_line_error(capsys, code, shown)
    assert Path("run/ckpt.json").read_bytes() == before


def test_resume_accepts_the_same_settings_and_those_that_may_change(corpus):
    assert _train(corpus, "--max-iters", "4", "--out", "run") == 0
    assert _train(corpus, "--resume", "--out", "run", "--max-iters", "6", "--eval-iters", "1", "--threads", "1") == 0
    assert json.loads(Path("run/ckpt.json").read_text())["step"] == 6


def test_a_longer_max_iters_on_resume_keeps_the_schedule_continuous(corpus):
    """The cosine decay was fixed to end at the first run's last step; further steps stay at min-lr."""
    assert _train(corpus, "--max-iters", "8", "--out", "run") == 0
    assert cli.main(["train", "--resume", "--out", "run", "--max-iters", "12", "--quiet"]) == 0
    rates = {e["step"]: e["lr"] for e in _training_entries("run")}
    assert sorted(rates) == list(range(1, 13))
    min_lr = 0.0003
    assert all(rates[s] == pytest.approx(min_lr) for s in range(9, 13))  # past the end of the first run's decay
    assert all(rates[s + 1] <= rates[s] + 1e-12 for s in range(4, 12))  # no jump after warm-up


def test_resuming_a_finished_run_says_so(corpus, capsys):
    assert _train(corpus, "--max-iters", "4", "--out", "run") == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--out", "run"]) == 0
    err = capsys.readouterr().err
    assert "has already finished its 4 steps" in err and "--max-iters" in err and "nan" not in err


def test_a_truncated_last_log_line_and_steps_after_the_checkpoint_do_not_survive_resume(corpus):
    with _interrupted_at(6):
        assert _train(corpus, "--max-iters", "12", "--out", "run") == cli.EXIT_INTERRUPTED
    with open("run/log.jsonl", "a") as log:  # what a kill -9 after the checkpoint leaves: later steps, a cut line
        log.write(json.dumps({"step": 7, "loss": 1.0, "lr": 0.001, "tokens_per_second": 1.0}) + "\n")
        log.write('{"step": 8, "loss": 0.9')
    assert cli.main(["train", "--resume", "--out", "run", "--quiet"]) == 0
    steps = [e["step"] for e in _training_entries("run")]
    assert steps == list(range(1, 13))
    assert all(e["loss"] != 1.0 for e in _training_entries("run"))


def test_a_missing_log_does_not_block_resume(corpus):
    with _interrupted_at(6):
        assert _train(corpus, "--max-iters", "8", "--out", "run") == cli.EXIT_INTERRUPTED
    Path("run/log.jsonl").unlink()
    assert cli.main(["train", "--resume", "--out", "run", "--quiet"]) == 0
    assert _log_steps("run") == [7, 8, 8]  # a new log: two training steps and the last evaluation


# ----- small things ---------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.build_parser().parse_args(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"tinylm {__version__}"


def test_help_says_what_each_option_accepts_and_its_default(capsys):
    for command in ("train", "sample", "eval", "prepare"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        if command == "train":
            assert "training steps in all (may change on --resume) (default: 600)" in text
            assert "{gpt,lstm,gru,rnn}" in text and "(default: 0.001)" in text
        if command == "sample":
            assert "(default: 0.8)" in text and "(default: 200)" in text and "(default: 500)" in text


def test_keep_best_and_latest(corpus, capsys):
    assert _train(corpus, "--max-iters", "8", "--out", "run", "--keep", "best,latest") == 0
    best = json.loads(Path("run/best/ckpt.json").read_text())
    latest = json.loads(Path("run/ckpt.json").read_text())
    assert best["best_val_loss"] == latest["best_val_loss"]
    evals = [e for e in map(json.loads, Path("run/log.jsonl").read_text().splitlines()) if "val_loss" in e]
    best_eval = min(evals, key=lambda e: e["val_loss"])
    assert best["step"] == best_eval["step"] and "optimizer" not in best
    capsys.readouterr()
    assert cli.main(["sample", "--ckpt", "run/best", "--prompt", "to", "--max-new-tokens", "3"]) == 0
    capsys.readouterr()
    one_line_error(capsys, _train(corpus, "--out", "other", "--keep", "best"), "keep must be latest or best,latest")


def test_the_sample_after_training_comes_under_a_heading(corpus, capsys):
    assert cli.main(["train", "--data", str(corpus), *SMALL, "--max-iters", "2", "--out", "run"]) == 0
    out = capsys.readouterr().out
    heading = next(line for line in out.splitlines() if line.startswith("--- a sample of 300 tokens"))
    assert "tinylm sample --ckpt run" in heading
    assert len(out.split(heading, 1)[1].strip()) > 100
