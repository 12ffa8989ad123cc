"""Everything a user or a file can get wrong on the command line gives one line and exit code 2."""

from pathlib import Path

import pytest

from tinylm import backend, cli

from tests.small_runs import SMALL, corpus, one_line_error, trained  # noqa: F401 (fixtures)


def _train(corpus, *arguments):
    return cli.main(["train", "--data", str(corpus), "--quiet", "--max-iters", "2", *SMALL, *arguments])


def test_out_naming_a_file_is_one_line(corpus, capsys):
    Path("a-file").write_text("mine")
    one_line_error(capsys, _train(corpus, "--out", "a-file"), "--out a-file is a file, not a directory")
    one_line_error(capsys, _train(corpus, "--out", "a-file/run"), "--out a-file/run cannot be created")
    assert Path("a-file").read_text() == "mine"
    one_line_error(capsys, cli.main(["prepare", "--data", str(corpus), "--out", "a-file"]), "is a file")


def test_a_config_file_that_is_not_utf8_is_one_line(capsys):
    Path("run.toml").write_bytes("max-iters = 3 # café".encode("latin-1"))
    one_line_error(capsys, cli.main(["train", "--config", "run.toml"]), "config file run.toml is not UTF-8 text")


@pytest.mark.parametrize("command", [["train"], ["sample"], ["eval", "--data", "x.txt"]])
def test_an_unknown_device_is_one_line(capsys, command):
    code = cli.main([*command, "--device", "tpu"])
    line = one_line_error(capsys, code, "'tpu'")
    assert "cpu" in line and "cuda" in line


@pytest.mark.skipif(backend.cuda_is_available(), reason="a usable GPU is here")
@pytest.mark.parametrize("command", [["sample"], ["eval", "--data", "x.txt"]])
def test_cuda_without_a_usable_gpu_is_one_line(capsys, command):
    one_line_error(capsys, cli.main([*command, "--device", "cuda"]), "device 'cuda' was requested, but")


@pytest.mark.skipif(backend.cuda_is_available(), reason="a usable GPU is here")
def test_training_on_cuda_without_a_usable_gpu_is_one_line(corpus, capsys):
    one_line_error(capsys, _train(corpus, "--device", "cuda", "--out", "run"), "--device cuda: device 'cuda' was")
    assert not Path("run").exists()


@pytest.mark.parametrize(
    "arguments, shown",
    [(["--temperature", "nan"], "argument --temperature: expected a finite number >= 0, got 'nan'"),
     (["--temperature", "-1"], "argument --temperature"), (["--top-k", "0"], "argument --top-k"),
     (["--top-p", "0"], "argument --top-p: expected a finite number > 0 and <= 1"), (["--top-p", "inf"], "--top-p"),
     (["--max-new-tokens", "-5"], "argument --max-new-tokens"), (["--num-samples", "0"], "--num-samples"),
     (["--seed", "x"], "argument --seed: expected an integer, got 'x'")],
)  # fmt: skip
def test_sampling_options_out_of_range_are_one_line(trained, capsys, arguments, shown):
    one_line_error(capsys, cli.main(["sample", "--ckpt", str(trained), *arguments]), shown)


@pytest.mark.parametrize("flag, value", [("--n-embd", "1048576"), ("--batch-size", "1000000000"),
                                         ("--n-layer", "100000000")])  # fmt: skip
def test_settings_that_cannot_fit_in_memory_are_refused_before_anything_is_allocated(corpus, capsys, flag, value):
    code = _train(corpus, "--n-head", "1", flag, value, "--out", "run")
    line = one_line_error(capsys, code, "these settings need about")
    assert "GiB is available" in line and not Path("run").exists()


def test_a_gpt_with_a_block_of_one_trains_and_samples(corpus, capsys):
    assert _train(corpus, "--block-size", "1", "--out", "run") == 0
    capsys.readouterr()
    assert cli.main(["sample", "--ckpt", "run", "--prompt", "to be", "--max-new-tokens", "20"]) == 0
    assert len(capsys.readouterr().out) >= len("to be") + 20


def test_eval_on_a_text_too_short_for_one_window_names_the_text(trained, capsys):
    Path("short.txt").write_text("t")
    code = cli.main(["eval", "--ckpt", str(trained), "--data", "short.txt"])
    one_line_error(capsys, code, "the text of short.txt is 1 token long; eval needs at least 2")


def test_eval_shows_progress_on_a_terminal(trained, corpus, capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main(["eval", "--ckpt", str(trained), "--data", str(corpus), "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert "eval:" in err and "batch/s" in err  # tqdm's bar, cleared when done


@pytest.mark.parametrize("tokenizer, size, shown", [("word", "1", "--vocab-size 1 is too small for the word tokenizer"),
                                                    ("bpe", "200", "expected at least 256")])  # fmt: skip
def test_a_vocabulary_too_small_for_the_special_tokens_is_one_line(corpus, capsys, tokenizer, size, shown):
    code = _train(corpus, "--tokenizer", tokenizer, "--vocab-size", size, "--out", "run")
    one_line_error(capsys, code, shown)
    assert not Path("run").exists()


def test_a_prepared_directory_with_ids_beyond_its_vocabulary_is_refused_before_training(corpus, capsys):
    import numpy as np

    assert cli.main(["prepare", "--data", str(corpus), "--out", "tokens"]) == 0
    ids = np.fromfile("tokens/train.bin", dtype=np.uint16)
    ids[100] = 60000
    ids.tofile("tokens/train.bin")
    capsys.readouterr()
    one_line_error(capsys, cli.main(["train", "--data", "tokens", "--out", "run", *SMALL]), "train.bin")
    assert not Path("run").exists()


def test_sample_and_eval_need_no_optimizer_state(trained, corpus, capsys):
    import json

    record = json.loads((trained / "ckpt.json").read_text())
    record["optimizer"] = {"param_groups": "damaged"}
    (trained / "ckpt.json").write_text(json.dumps(record))
    assert cli.main(["sample", "--ckpt", str(trained), "--prompt", "to", "--max-new-tokens", "5"]) == 0
    assert cli.main(["eval", "--ckpt", str(trained), "--data", str(corpus)]) == 0
    del record["optimizer"]
    (trained / "ckpt.json").write_text(json.dumps(record))
    assert cli.main(["sample", "--ckpt", str(trained), "--prompt", "to", "--max-new-tokens", "5"]) == 0
    capsys.readouterr()
    one_line_error(capsys, cli.main(["train", "--resume", "--out", str(trained), "--max-iters", "9"]), "optimizer")


def test_a_vocab_size_with_the_char_tokenizer_is_refused_not_ignored(corpus, capsys):
    one_line_error(capsys, _train(corpus, "--vocab-size", "50"), "--vocab-size 50 is for the word and bpe tokenizers")


def test_a_failed_prepare_leaves_no_folder_behind(corpus, capsys):
    code = cli.main(["prepare", "--data", str(corpus), "--tokenizer", "bpe", "--vocab-size", "10", "--out", "tokens"])
    one_line_error(capsys, code, "--vocab-size 10 is too small")
    assert not Path("tokens").exists()


def test_an_integer_option_says_it_wants_an_integer(trained, capsys):
    one_line_error(capsys, cli.main(["sample", "--ckpt", str(trained), "--top-k", "0"]), "expected an integer >= 1")
