"""The ``tinylm`` command: the main job end to end, and one-line errors with exit code 2."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinylm import cli
from tinylm.training import trainer as trainer_module

from tests.small_runs import SMALL, TEXT, corpus, one_line_error, trained  # noqa: F401 (fixtures)


def test_train_sample_and_eval_end_to_end(trained, corpus, capsys):
    assert (trained / "ckpt.json").is_file() and (trained / "log.jsonl").is_file() and (trained / "loss.png").is_file()
    capsys.readouterr()
    assert cli.main(["sample", "--ckpt", str(trained), "--prompt", "to be", "--max-new-tokens", "30", "--seed", "5"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("to be") and len(first.strip()) >= len("to be") + 20
    cli.main(["sample", "--ckpt", str(trained), "--prompt", "to be", "--max-new-tokens", "30", "--seed", "5", "--no-cache"])
    assert capsys.readouterr().out == first
    assert cli.main(["eval", "--ckpt", str(trained), "--data", str(corpus)]) == 0
    report = capsys.readouterr().out
    assert "loss" in report and "perplexity" in report and "accuracy" in report and f"{len(TEXT) - 1:,} tokens" in report


def test_sample_several_at_once(trained, capsys):
    capsys.readouterr()
    cli.main(["sample", "--ckpt", str(trained), "--prompt", "the", "--max-new-tokens", "10", "--num-samples", "3"])
    assert capsys.readouterr().out.count("---------------") == 2


def test_prepare_then_train_from_the_prepared_directory(corpus, tmp_path, capsys):
    data = tmp_path / "tokens"
    assert cli.main(["prepare", "--data", str(corpus), "--tokenizer", "bpe", "--vocab-size", "300", "--out", str(data)]) == 0
    assert "bpe tokenizer" in capsys.readouterr().out
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--out", str(out), "--max-iters", "2", "--quiet", *SMALL]) == 0
    record = json.loads((out / "ckpt.json").read_text())
    prepared = json.loads((data / "meta.json").read_text())  # BPE may stop short of 300 on a small text
    assert record["model"]["vocab_size"] == prepared["vocab_size"] and 256 < prepared["vocab_size"] <= 300


def test_a_config_file_sets_options_and_flags_override_it(corpus, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(f'data = "{corpus}"\nmax-iters = 3\nn_layer = 1\nn-head = 2\nn-embd = 16\nblock-size = 8\n')
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(config), "--out", str(out), "--max-iters", "2", "--eval-iters", "1",
                     "--quiet"]) == 0  # fmt: skip
    record = json.loads((out / "ckpt.json").read_text())
    assert record["step"] == 2 and record["train_config"]["n_embd"] == 16 and record["train_config"]["max_iters"] == 2


def test_no_arguments_trains_the_default_gpt_on_the_bundled_text(monkeypatch, tmp_path):
    seen = {}

    def fake_run(self):
        seen["config"] = self.config
        seen["tokens"] = len(self.data.train)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer_module.Trainer, "run", fake_run)
    assert cli.main([]) == cli.EXIT_INTERRUPTED
    assert seen["config"].model == "gpt" and seen["config"].data == "" and seen["tokens"] == 1_003_854


@pytest.mark.parametrize(
    "arguments, pattern",
    [
        (["train", "--data", "/no/such/file.txt"], "data file /no/such/file.txt does not exist"),
        (["train", "--n-layers", "2"], "unrecognized arguments: --n-layers"),
        (["train", "--max-iters", "many"], "max_iters must be a int, got 'many'"),
        (["train", "--model", "cnn"], "model must be one of gpt, lstm, gru, rnn"),
        (["train", "--n-embd", "30", "--n-head", "4"], "must be a multiple of n-head"),
        (["sample", "--ckpt", "/no/such/run"], "no checkpoint in /no/such/run"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(capsys, arguments, pattern):
    one_line_error(capsys, cli.main(arguments), pattern)


def test_threads_beyond_the_pool_are_one_line(corpus, tmp_path, capsys):
    code = cli.main(["train", "--data", str(corpus), "--out", str(tmp_path / "o"), "--threads", "999"])
    one_line_error(capsys, code, "--threads 999: configure_threads: n must be between 1 and")


def test_an_empty_data_file_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    one_line_error(capsys, cli.main(["train", "--data", str(empty), "--out", str(tmp_path / "o")]), "is empty")


def test_a_block_size_larger_than_the_data_is_one_line(corpus, tmp_path, capsys):
    code = cli.main(["train", "--data", str(corpus), "--out", str(tmp_path / "o"), "--block-size", "100000"])
    one_line_error(capsys, code, "--block-size 100000 is larger than the training data")


def test_an_unknown_config_key_is_one_line(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("max_iter = 10\n")
    code = cli.main(["train", "--config", str(config)])
    one_line_error(capsys, code, "unknown setting 'max_iter' (did you mean max-iters")


def test_a_prompt_outside_the_vocabulary_is_one_line(trained, capsys):
    code = cli.main(["sample", "--ckpt", str(trained), "--prompt", "Zebra!"])
    one_line_error(capsys, code, "the prompt 'Zebra!' cannot be encoded")


def test_an_eval_text_outside_the_vocabulary_names_the_file(trained, tmp_path, capsys):
    text = tmp_path / "other.txt"
    text.write_text("Zebra!")
    code = cli.main(["eval", "--ckpt", str(trained), "--data", str(text)])
    one_line_error(capsys, code, f"the text of {text} cannot be encoded")


def test_a_corrupt_checkpoint_is_one_line_and_a_failed_run_overwrites_nothing(trained, corpus, capsys):
    record = json.loads((trained / "ckpt.json").read_text())
    weights = trained / record["weights"]["file"]
    weights.write_bytes(weights.read_bytes()[:-100])
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    one_line_error(capsys, cli.main(["sample", "--ckpt", str(trained)]), "truncated or corrupt")
    code = cli.main(["train", "--data", str(corpus), "--out", str(trained), "--resume", "--max-iters", "20", *SMALL])
    one_line_error(capsys, code, "truncated or corrupt")
    code = cli.main(["train", "--data", str(corpus), "--out", str(trained), "--max-iters", "20"])
    one_line_error(capsys, code, "already holds a checkpoint")
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before


def test_a_checkpoint_whose_vocabulary_does_not_match_its_tokenizer_is_one_line(trained, capsys):
    record = json.loads((trained / "ckpt.json").read_text())
    record["tokenizer"]["chars"] = record["tokenizer"]["chars"][:-1]  # one character fewer
    (trained / "ckpt.json").write_text(json.dumps(record))
    one_line_error(capsys, cli.main(["sample", "--ckpt", str(trained)]), "a tokenizer of")


def test_ctrl_c_in_a_real_process_checkpoints_and_exits_130(corpus, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "tinylm", "train", "--data", str(corpus), "--out", str(out), "--max-iters",
               "100000", "--eval-interval", "50000", "--quiet", *SMALL]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for a few training steps to be logged
        log = out / "log.jsonl"
        if log.is_file() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "tinylm train --resume" in err
    record = json.loads((out / "ckpt.json").read_text())
    assert record["step"] >= 4
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert record["step"] - 10 < max(steps) <= record["step"]  # the log keeps every 10th step
    assert np.isfinite(record["best_val_loss"])
