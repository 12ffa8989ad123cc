"""What the autograd engine costs per op, beside NumPy doing the same arithmetic bare.

For ``c = a * b`` the engine runs the forward, records a node, and on
``c.backward(g)`` computes ``g * b`` and ``g * a`` and stores them as the
leaves' gradients. Bare NumPy does the same three multiplications. The
difference is the engine's overhead per op (Python bookkeeping; for big
arrays, any extra copies). Runs alternate between the two, and medians are
reported. Also times ``import tinylm`` in a fresh process.

    python benchmarks/bench_overhead.py [--threads 1] [--repeats 15]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (set before NumPy loads)")
    parser.add_argument("--repeats", type=int, default=15, help="alternating rounds; medians are reported")
    return parser.parse_args()


ARGS = parse_args()
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402

import tinylm  # noqa: E402


def per_call_seconds(function, calls):
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def engine_and_bare(shape, calls):
    a = tinylm.randn(*shape, requires_grad=True)
    b = tinylm.randn(*shape, requires_grad=True)
    g = np.ones(shape, dtype=np.float32)
    a_data, b_data = a.data, b.data

    def engine():
        a.grad = b.grad = None  # a training loop zeroes gradients each step
        c = a * b
        c.backward(g)

    def bare():
        c = a_data * b_data  # noqa: F841 (the forward's work)
        grad_a = g * b_data  # noqa: F841
        grad_b = g * a_data  # noqa: F841

    engine_times, bare_times = [], []
    for _ in range(ARGS.repeats):
        engine_times.append(per_call_seconds(engine, calls))
        bare_times.append(per_call_seconds(bare, calls))
    return statistics.median(engine_times), statistics.median(bare_times)


def chain_overhead(length=200, calls=50):
    """Per op, in a chain of multiplications followed by one backward (the engine's set-up amortised)."""
    x = tinylm.ones(1, requires_grad=True)
    factor = tinylm.tensor([1.0001])
    x_data, factor_data = x.data, factor.data

    def engine():
        x.grad = None
        y = x
        for _ in range(length):
            y = y * factor
        y.backward(np.ones(1, dtype=np.float32))

    def bare():
        values = [x_data]
        for _ in range(length):
            values.append(values[-1] * factor_data)
        g = np.ones(1, dtype=np.float32)
        for _ in range(length):
            g = g * factor_data

    engine_times, bare_times = [], []
    for _ in range(ARGS.repeats):
        engine_times.append(per_call_seconds(engine, calls) / length)
        bare_times.append(per_call_seconds(bare, calls) / length)
    return statistics.median(engine_times), statistics.median(bare_times)


def import_seconds(runs=7):
    code = "import time; t = time.perf_counter(); import tinylm; print(time.perf_counter() - t)"
    env = dict(os.environ)
    times = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout)
        for _ in range(runs)
    ]
    return statistics.median(times)


def main():
    print(f"tinylm engine overhead per op (float32, BLAS threads = {ARGS.threads}, median of {ARGS.repeats})")
    print(f"{'case':<34}{'tinylm (us)':>14}{'NumPy bare (us)':>18}{'overhead (us)':>16}")
    rows = [
        ("a * b, fwd + bwd, 1 element", *engine_and_bare((1,), 5000)),
        ("a * b, fwd + bwd, 768x512", *engine_and_bare((768, 512), 50)),
        ("chain of 200 muls, per op", *chain_overhead()),
    ]
    for name, engine, bare in rows:
        print(f"{name:<34}{engine * 1e6:>14.2f}{bare * 1e6:>18.2f}{(engine - bare) * 1e6:>16.2f}")
    print(f"import tinylm: {import_seconds() * 1e3:.0f} ms (median of 7 fresh processes)")


if __name__ == "__main__":
    main()
