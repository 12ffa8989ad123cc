"""What the tests that train share: a small corpus, a small model (as flags for the ``tinylm``
command, as a config for the Trainer), and the check that an error is one line with exit code 2."""

import pytest

from tinylm import cli
from tinylm.training.config import make_config

TEXT = "".join(f"{w} " for w in "to be or not to be that is the question whether tis nobler".split()) * 60
SMALL = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4",
         "--eval-iters", "2", "--warmup-iters", "2"]  # fmt: skip


def small_config(corpus, out, **overrides):
    """A TrainConfig of a one-layer GPT, 16 wide, for 12 steps evaluated every 4, on ``corpus`` into ``out``.

    The threads are pinned: a run whose thread count the tuner changes rounds
    differently, and tests compare runs bit for bit.
    """
    settings = dict(data=str(corpus), out=str(out), n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4,
                    max_iters=12, eval_interval=4, eval_iters=2, warmup_iters=2, log_interval=1, seed=3,
                    threads=1)  # fmt: skip
    settings.update(overrides)
    return make_config(("test", settings))


def one_line_error(capsys, code, pattern):
    """Assert that the command failed with exit code 2 and one line on stderr holding ``pattern``."""
    captured = capsys.readouterr()
    assert code == cli.EXIT_USER_ERROR, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert pattern in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def trained(corpus, tmp_path):
    """A finished run of 8 steps on ``corpus``, evaluated every 4, in ``tmp_path/run``."""
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(corpus), "--out", str(out), "--max-iters", "8", "--eval-interval", "4",
                     "--quiet", *SMALL]) == 0  # fmt: skip
    return out
