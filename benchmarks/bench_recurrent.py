"""The LSTM and GRU layers' compiled loops against the Python loops they replaced, in one process.

    python benchmarks/bench_recurrent.py [--cells lstm,gru] [--rounds 12] [--steps 4] [--threads 2]

Trains the recurrent language model of ``compare.py`` (2 layers, hidden 256,
embedding 64, batch 32 x 100 tokens, AdamW) and alternates, round by round,
``--steps`` training steps with the compiled loops (``lstm_sequence_*`` /
``gru_sequence_*``, which call OpenBLAS from Numba code) and as many with the
Python loops (NumPy's matmul between the Numba cell kernels, what the kernels
run where NumPy has no OpenBLAS: ``kernels.blas.pretend_no_openblas``). The
two sides share the process, so the machine's drift from one process to the
next, larger here than the difference, does not enter the ratio; the order
within a round alternates too.

Prints, per cell, the median step of each side and the median over rounds of
(Python loop's median step) / (compiled loop's median step).
"""

import argparse
import statistics
import time

import numpy as np

import tinylm
from compare import RNN_BATCH, RNN_LENGTH, RNN_SHAPE, VOCAB  # the model compare.py times
from tinylm.kernels import blas, configure_threads
from tinylm.models.rnn_lm import RNNLM, RNNLMConfig
from tinylm.nn.utils import clip_grad_norm_
from tinylm.optim import AdamW


def training_step(cell):
    """A function that runs one training step of a fresh model with this cell."""
    tinylm.manual_seed(0)
    rng = np.random.default_rng(0)
    model = RNNLM(RNNLMConfig(vocab_size=VOCAB, cell=cell, block_size=RNN_LENGTH, **RNN_SHAPE))
    optimizer = AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def step():
        ids = rng.integers(0, VOCAB, (RNN_BATCH, RNN_LENGTH + 1))
        _, loss = model(tinylm.tensor(ids[:, :-1]), tinylm.tensor(ids[:, 1:]))
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def median_step(step, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def compare(cell, rounds, steps):
    step = training_step(cell)
    if blas.find_gemm(np.float32) is None:
        raise SystemExit("bench_recurrent: NumPy has no OpenBLAS here, so there is no compiled loop to compare")
    for _ in range(3):  # warm-up (and compilation) of both sides
        step()
        with blas.pretend_no_openblas():
            step()
    times = {"compiled": [], "python": []}
    ratios = []
    for r in range(rounds):
        medians = {}
        for side in ("compiled", "python") if r % 2 == 0 else ("python", "compiled"):
            if side == "python":
                with blas.pretend_no_openblas():
                    medians[side], run = median_step(step, steps)
            else:
                medians[side], run = median_step(step, steps)
            times[side] += run
        ratios.append(medians["python"] / medians["compiled"])
    return {side: statistics.median(values) for side, values in times.items()}, ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated, from lstm,gru")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4, help="training steps per side and round")
    parser.add_argument("--threads", type=int, default=2, help="Numba and OpenBLAS threads")
    args = parser.parse_args(argv)
    info = configure_threads(args.threads)
    print(f"threads: Numba {info['threads']} ({info['layer']}), OpenBLAS {info['blas_threads']}; "
          f"{args.rounds} rounds of {args.steps} steps per side")
    for cell in args.cells.split(","):
        medians, ratios = compare(cell, args.rounds, args.steps)
        print(f"{cell}: compiled loop {medians['compiled'] * 1e3:.1f} ms/step, Python loop "
              f"{medians['python'] * 1e3:.1f} ms/step; Python/compiled per round: median "
              f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
