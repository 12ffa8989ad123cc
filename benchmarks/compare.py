"""tinylm beside PyTorch: training speed, sampling speed and peak memory on the same models.

    python benchmarks/compare.py [--threads N] [--steps 30] [--rounds 5] [--configs gpt,lstm,gru,sample]
                                 [--json FILE] [--machine-blas]

Every measurement runs in a fresh process (so peak RSS is that run's alone),
and the runs alternate: tinylm, PyTorch, tinylm, PyTorch, ... ``--rounds``
times per config; the table gives medians over the rounds, each round's
figure being the median step after ``--warmup`` steps. Both sides use float32,
the same thread count, the same model shapes, AdamW, and synthetic uniform
tokens. By default tinylm runs as a user's own loop runs it: no
``configure_threads`` call and no thread variable in the environment, so it
sets itself up at its first kernel (one thread per core); PyTorch gets
``torch.set_num_threads`` with the same count. ``--threads N`` pins both to N
(``configure_threads(N)`` and the thread variables for tinylm).
The timed processes run OpenBLAS's own choice of kernels for the processor
unless ``--machine-blas`` (see ``blas_env.py``: this machine pins an older
family through OPENBLAS_CORETYPE); the table's first line names the family.

Configs:
  gpt     GPT, 4 layers, 4 heads, 128 wide, block 64, batch 12 (nanoGPT's Shakespeare-char CPU setting)
  lstm    2-layer LSTM language model, hidden 256, embedding 64, sequence 100, batch 32
  gru     the same with a GRU
  sample  the GPT above sampling 256 tokens from a 1-token prompt, with and without the key/value cache

Without torch installed it prints tinylm's figures alone.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import blas_env  # noqa: E402

VOCAB = 65
GPT_SHAPE = dict(block_size=64, n_layer=4, n_head=4, n_embd=128)
GPT_BATCH = 12
RNN_SHAPE = dict(n_embd=64, hidden_size=256, n_layer=2)
RNN_BATCH, RNN_LENGTH = 32, 100
SAMPLE_TOKENS = 256
CONFIGS = ("gpt", "lstm", "gru", "sample")


# ----- model FLOPs ----------------------------------------------------------------------


def gpt_training_flops():
    """Matmul FLOPs of one training step (forward 2 per multiply-add, backward twice that)."""
    c, t, layers = GPT_SHAPE["n_embd"], GPT_SHAPE["block_size"], GPT_SHAPE["n_layer"]
    tokens = GPT_BATCH * t
    per_token = layers * (3 * c * c + c * c + 2 * 4 * c * c) + c * VOCAB  # qkv, proj, mlp, head
    attention = layers * GPT_BATCH * 2 * t * t * c  # q k^T and p v
    return 3 * 2 * (tokens * per_token + attention)


def rnn_training_flops(cell):
    gates = {"lstm": 4, "gru": 3}[cell]
    e, h, layers = RNN_SHAPE["n_embd"], RNN_SHAPE["hidden_size"], RNN_SHAPE["n_layer"]
    per_token = gates * h * (e + h) + (layers - 1) * gates * h * (h + h) + h * VOCAB
    return 3 * 2 * RNN_BATCH * RNN_LENGTH * per_token


# ----- one measurement, in its own process ------------------------------------------------


def _median_step_seconds(step, steps, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _tinylm_worker(config, steps, warmup, threads):
    import numpy as np

    import tinylm
    from tinylm.kernels import configure_threads
    from tinylm.models import GPT, GPTConfig
    from tinylm.models.rnn_lm import RNNLM, RNNLMConfig
    from tinylm.nn.utils import clip_grad_norm_
    from tinylm.optim import AdamW

    if threads:  # else as a user's loop: tinylm sets the threads up at its first kernel
        configure_threads(threads)
    tinylm.manual_seed(0)
    rng = np.random.default_rng(0)
    if config in ("gpt", "sample"):
        model = GPT(GPTConfig(vocab_size=VOCAB, bias=False, **GPT_SHAPE))
        batch, length = GPT_BATCH, GPT_SHAPE["block_size"]
    else:
        model = RNNLM(RNNLMConfig(vocab_size=VOCAB, cell=config, block_size=RNN_LENGTH, **RNN_SHAPE))
        batch, length = RNN_BATCH, RNN_LENGTH
    if config == "sample":
        prompt = tinylm.tensor(np.zeros((1, 1), dtype=np.int64))
        result = {}
        for use_cache in (True, False):
            seconds = _median_step_seconds(
                lambda: model.generate(prompt, SAMPLE_TOKENS, use_cache=use_cache), steps, warmup)
            result["cache" if use_cache else "no_cache"] = seconds
        return result
    optimizer = AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def step():
        ids = rng.integers(0, VOCAB, (batch, length + 1))
        _, loss = model(tinylm.tensor(ids[:, :-1]), tinylm.tensor(ids[:, 1:]))
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return {"step": _median_step_seconds(step, steps, warmup)}


def _torch_worker(config, steps, warmup, threads):
    import torch

    import torch_peers

    torch.set_num_threads(threads or default_threads())
    torch.manual_seed(0)
    if config in ("gpt", "sample"):
        model = torch_peers.GPT(VOCAB, **GPT_SHAPE)
        batch, length = GPT_BATCH, GPT_SHAPE["block_size"]
    else:
        model = torch_peers.RecurrentLM(config, VOCAB, **RNN_SHAPE)
        batch, length = RNN_BATCH, RNN_LENGTH
    if config == "sample":
        model.eval()
        prompt = torch.zeros((1, 1), dtype=torch.long)
        result = {}
        for use_cache in (True, False):
            seconds = _median_step_seconds(lambda: model.generate(prompt, SAMPLE_TOKENS, use_cache), steps, warmup)
            result["cache" if use_cache else "no_cache"] = seconds
        return result
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def step():
        ids = torch.randint(0, VOCAB, (batch, length + 1))
        _, loss = model(ids[:, :-1], ids[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    return {"step": _median_step_seconds(step, steps, warmup)}


def run_worker(args):
    worker = _tinylm_worker if args.worker == "tinylm" else _torch_worker
    result = worker(args.config, args.steps, args.warmup, args.threads)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def default_threads():
    """tinylm's thread count when nobody chooses: one per core this process may run on (Numba's pool)."""
    return len(os.sched_getaffinity(0))


def measure(side, config, args):
    """Run one worker process; returns its dict of figures."""
    variables = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read when BLAS loads, before any call
    pinned = {variable: str(args.threads) for variable in variables} if args.threads else {}
    env = blas_env.child_environment(args.machine_blas, **pinned)
    command = [sys.executable, __file__, "--worker", side, "--config", config, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the {side} run of {config} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def matmul_gflops(threads, machine_blas):
    """This machine's float32 matmul speed through NumPy, at a GPT-sized and a large shape, and
    the OpenBLAS kernel family that ran (None without OpenBLAS)."""
    code = (
        "import time, numpy as np\n"
        "from tinylm.kernels.threads import blas_core\n"
        "def rate(m, k, n):\n"
        "    a = np.ones((m, k), np.float32); b = np.ones((k, n), np.float32); a @ b\n"
        "    best = 1e9\n"
        "    for _ in range(20):\n"
        "        t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)\n"
        "    return 2 * m * k * n / best / 1e9\n"
        "print(rate(768, 128, 512), rate(1024, 1024, 1024), blas_core())\n"
    )
    env = blas_env.child_environment(machine_blas, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    small, large, core = out.stdout.split()
    return float(small), float(large), None if core == "None" else core


def torch_available():
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


# ----- the table ---------------------------------------------------------------------------


def rows_for(config, tinylm_runs, torch_runs):
    """Table rows (name, tinylm seconds, torch seconds or None, speed ratio or None, tokens per unit,
    flops or None, rss pair).

    The speed ratio is the median over the rounds of PyTorch's time over tinylm's in the same
    round: each pair of runs sits side by side in time, so the machine's drift from round to
    round (larger than the differences measured) cancels in it, as it does not in a ratio of
    the two columns' medians.
    """
    def med(runs, key):
        return statistics.median(run[key] for run in runs) if runs else None

    rss = (med(tinylm_runs, "peak_rss_mb"), med(torch_runs, "peak_rss_mb"))

    def row(name, key, tokens, flops=None):
        ratio = None
        if torch_runs:
            ratio = statistics.median(theirs[key] / ours[key] for ours, theirs in zip(tinylm_runs, torch_runs))
        return name, med(tinylm_runs, key), med(torch_runs, key), ratio, tokens, flops, rss

    if config == "sample":
        return [row("GPT sample 256, KV cache", "cache", SAMPLE_TOKENS),
                row("GPT sample 256, no cache", "no_cache", SAMPLE_TOKENS)]  # fmt: skip
    if config == "gpt":
        return [row("GPT train step", "step", GPT_BATCH * GPT_SHAPE["block_size"], gpt_training_flops())]
    return [row(f"{config.upper()} LM train step", "step", RNN_BATCH * RNN_LENGTH, rnn_training_flops(config))]


def _cell(value, fmt, width):
    """``value`` right-aligned in ``width`` columns, or a dash for a figure that is missing."""
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"


def print_table(rows, threads, gflops, machine_blas):
    small, large, core = gflops
    how = "pinned" if threads else "tinylm's default, set up at its first kernel"
    print(f"threads = {threads or default_threads()} ({how}); {blas_env.describe(core, machine_blas)}; "
          f"NumPy float32 matmul: "
          f"{small:.0f} GFLOP/s at 768x128x512, {large:.0f} GFLOP/s at 1024^3")  # fmt: skip
    header = (f"{'config':<28}{'tinylm ms':>10}{'torch ms':>10}{'tinylm tok/s':>14}{'torch tok/s':>13}"
              f"{'speed ratio':>12}{'GFLOP/s':>9}{'RSS MB':>8}{'torch RSS':>10}{'RSS ratio':>10}")  # fmt: skip
    print(header)
    for name, ours, theirs, ratio, tokens, flops, (rss_ours, rss_theirs) in rows:
        # `theirs and ...`: no PyTorch figures without torch, so those cells get a dash
        print(
            f"{name:<28}{_cell(ours * 1e3, '.1f', 10)}{_cell(theirs and theirs * 1e3, '.1f', 10)}"
            f"{_cell(tokens / ours, ',.0f', 14)}{_cell(theirs and tokens / theirs, ',.0f', 13)}"
            f"{_cell(ratio, '.2f', 12)}{_cell(flops and flops / ours / 1e9, '.1f', 9)}"
            f"{_cell(rss_ours, '.0f', 8)}{_cell(rss_theirs, '.0f', 10)}"
            f"{_cell(rss_theirs and rss_ours / rss_theirs, '.2f', 10)}"
        )
    print("speed ratio = tinylm tokens/s over PyTorch's (above 1: tinylm is faster), the median over the rounds of")
    print("              the ratio within each round; ms and RSS are medians over the rounds; RSS ratio = tinylm over PyTorch")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0,
                        help="0 (default): tinylm as a user's loop gets it, PyTorch on as many threads; N: both on N")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (or samples) per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, caches)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating tinylm/PyTorch runs per config")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from {','.join(CONFIGS)}")
    parser.add_argument("--json", metavar="FILE", help="also write every run's figures to FILE")
    blas_env.add_option(parser)
    parser.add_argument("--worker", choices=("tinylm", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(args.configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    with_torch = torch_available()
    if not with_torch:
        print("PyTorch is not installed: tinylm's figures alone (pip install 'tinylm[parity]' to compare)")
    rows, record = [], {"threads": args.threads, "steps": args.steps, "rounds": args.rounds, "runs": {}}
    for config in args.configs:
        tinylm_runs, torch_runs = [], []
        for _ in range(args.rounds):
            tinylm_runs.append(measure("tinylm", config, args))
            if with_torch:
                torch_runs.append(measure("torch", config, args))
        record["runs"][config] = {"tinylm": tinylm_runs, "torch": torch_runs}
        rows.extend(rows_for(config, tinylm_runs, torch_runs))
    gflops = matmul_gflops(args.threads or default_threads(), args.machine_blas)
    record.update(matmul_gflops=gflops[:2], blas_core=gflops[2], machine_blas=args.machine_blas)
    print_table(rows, args.threads, gflops, args.machine_blas)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
