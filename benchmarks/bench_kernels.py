"""Time the fused kernels: NumPy reference vs Numba (one thread and N threads) vs PyTorch.

    python benchmarks/bench_kernels.py                  # all kernels, float32, 2 threads
    python benchmarks/bench_kernels.py --threads 1 --dtype float64 --only gelu
    python benchmarks/bench_kernels.py --probe-threading [--busy]
    python benchmarks/bench_kernels.py --fastmath

Shapes are those of a small GPT / RNN trained on a CPU: 768 rows (batch 12 x
64 tokens), 128 or 512 features, a vocabulary of 65 characters, attention with
12 x 4 heads over 64 tokens, an LSTM/GRU with batch 32 and 256 hidden units,
AdamW over 0.8M parameters.

Each time is the median of repeated calls after a warm-up call (which also
compiles, or loads the Numba cache). "numba 1t" runs the serial driver,
"numba Nt" the parallel one with N threads; the kernels themselves choose
between the two by size (``PARALLEL_MIN_WORK``). The PyTorch column times
the equivalent torch call (for a backward: ``torch.autograd.grad`` on a kept
graph), with torch pinned to the same number of threads.

``--probe-threading`` measures Numba's threading layers and OpenBLAS's threads
in fresh subprocesses (see ``kernels/threads.py`` for the findings);
``--busy`` keeps one core busy meanwhile, as another job would.
``--fastmath`` times the vectorized exp/tanh/sigmoid/erf against Numba's
``math.*`` and NumPy's ufuncs, per element.
"""

import argparse
import math
import statistics
import subprocess
import sys
import time

import numpy as np

# PyTorch first: it loads a GNU OpenMP of its own, which reads how its threads wait
# when it loads. Imported after tinylm.kernels (which sets OMP_WAIT_POLICY=PASSIVE
# until configure_threads chooses) it would take that setting, and Numba's kernels
# could end up on PyTorch's OpenMP; both then ran slower (kernels/threads.py).
try:
    import torch
except ImportError:  # the PyTorch column is then left empty
    torch = None

from tinylm.kernels import configure_threads, get_kernel  # noqa: E402


def median_time(function, min_seconds=0.25, min_repeats=15, max_repeats=2000):
    """Median wall time of ``function()`` in microseconds, after one warm-up call."""
    function()
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


class Driver:
    """Forces the Numba kernels onto their serial or their parallel driver."""

    def __init__(self):
        from tinylm.kernels import _common

        self._common = _common
        self._default = _common.PARALLEL_MIN_WORK

    def serial(self):
        self._common.PARALLEL_MIN_WORK = sys.maxsize

    def parallel(self):
        self._common.PARALLEL_MIN_WORK = 0

    def restore(self):
        self._common.PARALLEL_MIN_WORK = self._default


# --------------------------------------------------------------------------- cases
#
# Each case: a label, a shape string, and for each column a zero-argument
# function (None when there is no such implementation).


def _torch_backward(build, *inputs):
    """A function timing only the backward of ``build`` (a torch graph) for ``inputs``."""
    leaves = [torch.tensor(a, requires_grad=True) for a in inputs]
    out = build(*leaves)
    grad = torch.ones_like(out)
    return lambda: torch.autograd.grad(out, leaves, grad, retain_graph=True)


def make_cases(dtype, rng):
    cases = []
    kernel = get_kernel

    # cross entropy
    for c in (65, 512):
        logits = rng.standard_normal((768, c)).astype(dtype)
        targets = rng.integers(0, c, 768)
        dlosses = np.full(768, 1 / 768, dtype)
        _, lse = kernel("cross_entropy_forward", "numpy")(logits, targets, -100, 0.1)
        fwd = lambda b, x=logits, y=targets: (lambda: kernel("cross_entropy_forward", b)(x, y, -100, 0.1))
        bwd = lambda b, x=logits, y=targets, s=lse, g=dlosses: (
            lambda: kernel("cross_entropy_backward", b)(g, x, y, s, -100, 0.1)
        )
        torch_fwd = torch_bwd = None
        if torch is not None:
            tx, ty = torch.from_numpy(logits), torch.from_numpy(targets)
            torch_fwd = lambda tx=tx, ty=ty: torch.nn.functional.cross_entropy(
                tx, ty, label_smoothing=0.1, reduction="none"
            )
            torch_bwd = _torch_backward(
                lambda x, ty=ty: torch.nn.functional.cross_entropy(x, ty, label_smoothing=0.1, reduction="none"),
                logits,
            )
        cases.append(("cross_entropy_forward", f"768x{c}", fwd, torch_fwd))
        cases.append(("cross_entropy_backward", f"768x{c}", bwd, torch_bwd))

    # layer norm
    for c in (128, 512):
        x = rng.standard_normal((768, c)).astype(dtype)
        w, b = rng.standard_normal((2, c)).astype(dtype)
        dy = rng.standard_normal((768, c)).astype(dtype)
        _, mean, rstd = kernel("layernorm_forward", "numpy")(x, w, b, 1e-5)
        fwd = lambda be, x=x, w=w, b=b: (lambda: kernel("layernorm_forward", be)(x, w, b, 1e-5))
        bwd = lambda be, x=x, w=w, dy=dy, m=mean, r=rstd: (lambda: kernel("layernorm_backward", be)(dy, x, w, m, r))
        torch_fwd = torch_bwd = None
        if torch is not None:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
            torch_fwd = lambda tx=tx, tw=tw, tb=tb, c=c: torch.nn.functional.layer_norm(tx, (c,), tw, tb, 1e-5)
            torch_bwd = _torch_backward(
                lambda x_, w_, b_, c=c: torch.nn.functional.layer_norm(x_, (c,), w_, b_, 1e-5), x, w, b
            )
        cases.append(("layernorm_forward", f"768x{c}", fwd, torch_fwd))
        cases.append(("layernorm_backward", f"768x{c}", bwd, torch_bwd))

    # GELU, plain and with the bias of the preceding linear layer fused in
    x = rng.standard_normal((768, 512)).astype(dtype)
    dy = rng.standard_normal((768, 512)).astype(dtype)
    bias = rng.standard_normal(512).astype(dtype)
    for approximate in ("none", "tanh"):
        fwd = lambda be, a=approximate: (lambda: kernel("gelu_forward", be)(x, a))
        bwd = lambda be, a=approximate: (lambda: kernel("gelu_backward", be)(dy, x, a))
        fwd_slope = lambda be, a=approximate: (lambda: kernel("gelu_forward_with_grad", be)(x, a))
        slope = kernel("gelu_forward_with_grad", "numpy")(x, approximate)[1]
        bwd_slope = lambda be, s=slope: (lambda: dy * s)  # the op's backward after gelu_forward_with_grad
        bfwd = lambda be, a=approximate: (lambda: kernel("bias_gelu_forward", be)(x, bias, a))
        bbwd = lambda be, a=approximate: (lambda: kernel("bias_gelu_backward", be)(dy, x, bias, a))
        # the unfused pair, to see whether fusing the bias pays: NumPy add + the same GELU kernel
        unfused_fwd = lambda be, a=approximate: (lambda: kernel("gelu_forward", be)(x + bias, a))

        def unfused_bwd(be, a=approximate):
            def run():
                dx = kernel("gelu_backward", be)(dy, x + bias, a)
                return dx, dx.sum(axis=0)

            return run

        torch_fwd = torch_bwd = torch_bfwd = torch_bbwd = None
        if torch is not None:
            tx, tbias = torch.from_numpy(x), torch.from_numpy(bias)
            torch_fwd = lambda a=approximate, tx=tx: torch.nn.functional.gelu(tx, approximate=a)
            torch_bwd = _torch_backward(lambda x_, a=approximate: torch.nn.functional.gelu(x_, approximate=a), x)
            torch_bfwd = lambda a=approximate, tx=tx, tb=tbias: torch.nn.functional.gelu(tx + tb, approximate=a)
            torch_bbwd = _torch_backward(
                lambda x_, b_, a=approximate: torch.nn.functional.gelu(x_ + b_, approximate=a), x, bias
            )
        cases.append((f"gelu_forward ({approximate})", "768x512", fwd, torch_fwd))
        cases.append((f"gelu_backward ({approximate})", "768x512", bwd, torch_bwd))
        cases.append((f"gelu_forward_with_grad ({approximate})", "768x512", fwd_slope, None))
        cases.append((f"  then gelu backward as dy * slope ({approximate})", "768x512", bwd_slope, None))
        cases.append((f"bias_gelu_forward ({approximate})", "768x512", bfwd, torch_bfwd))
        cases.append((f"  unfused: x+b, gelu ({approximate})", "768x512", unfused_fwd, None))
        cases.append((f"bias_gelu_backward ({approximate})", "768x512", bbwd, torch_bbwd))
        cases.append((f"  unfused: gelu', sum ({approximate})", "768x512", unfused_bwd, None))

    # attention softmax
    scores = rng.standard_normal((12, 4, 64, 64)).astype(dtype)
    dprobs = rng.standard_normal((12, 4, 64, 64)).astype(dtype)
    scale = 1 / math.sqrt(32)
    probs = kernel("attention_softmax_forward", "numpy")(scores, scale, True)
    fwd = lambda be: (lambda: kernel("attention_softmax_forward", be)(scores, scale, True))
    bwd = lambda be: (lambda: kernel("attention_softmax_backward", be)(dprobs, probs, scale))
    torch_fwd = torch_bwd = None
    if torch is not None:
        mask = torch.ones(64, 64, dtype=torch.bool).tril()

        def torch_softmax(z):
            return torch.softmax((z * scale).masked_fill(~mask, float("-inf")), dim=-1)

        tz = torch.from_numpy(scores)
        torch_fwd = lambda: torch_softmax(tz)
        torch_bwd = _torch_backward(torch_softmax, scores)
    cases.append(("attention_softmax_forward", "12x4x64x64", fwd, torch_fwd))
    cases.append(("attention_softmax_backward", "12x4x64x64", bwd, torch_bwd))

    # a GPT layer's whole attention on its packed q/k/v rows (12 x 64 tokens, 4 heads of 32)
    qkv = rng.standard_normal((12, 64, 3 * 128)).astype(dtype)
    g = rng.standard_normal((12, 64, 128)).astype(dtype)
    _, probs = kernel("causal_attention_forward", "numpy")(qkv, 4, scale)
    fwd = lambda be: (lambda: kernel("causal_attention_forward", be)(qkv, 4, scale))
    bwd = lambda be: (lambda: kernel("causal_attention_backward", be)(g, qkv, probs, 4, scale))
    torch_fwd = torch_bwd = None
    if torch is not None:

        def torch_attention(packed):
            q, k, v = (t.view(12, 64, 4, 32).transpose(1, 2) for t in packed.split(128, dim=2))
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return y.transpose(1, 2).reshape(12, 64, 128)

        tqkv = torch.from_numpy(qkv)
        torch_fwd = lambda: torch_attention(tqkv)
        torch_bwd = _torch_backward(torch_attention, qkv)
    cases.append(("causal_attention_forward", "12x64x3*128", fwd, torch_fwd))
    cases.append(("causal_attention_backward", "12x64x3*128", bwd, torch_bwd))

    # LSTM and GRU cells
    batch, hidden = 32, 256
    gates = rng.standard_normal((batch, 4 * hidden)).astype(dtype)
    c_prev, dh, dc = rng.standard_normal((3, batch, hidden)).astype(dtype)
    _, c, acts = kernel("lstm_cell_forward", "numpy")(gates, c_prev)
    fwd = lambda be: (lambda: kernel("lstm_cell_forward", be)(gates, c_prev))
    bwd = lambda be: (lambda: kernel("lstm_cell_backward", be)(dh, dc, acts, c_prev, c))
    torch_fwd = torch_bwd = None
    if torch is not None:

        def torch_lstm(g, cp):
            i, f, gg, o = g.chunk(4, 1)
            i, f, gg, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(gg), torch.sigmoid(o)
            cell = f * cp + i * gg
            return torch.cat([o * torch.tanh(cell), cell], 1)

        tg, tc = torch.from_numpy(gates), torch.from_numpy(c_prev)
        torch_fwd = lambda: torch_lstm(tg, tc)
        torch_bwd = _torch_backward(torch_lstm, gates, c_prev)
    cases.append(("lstm_cell_forward", f"{batch}x4*{hidden}", fwd, torch_fwd))
    cases.append(("lstm_cell_backward", f"{batch}x4*{hidden}", bwd, torch_bwd))

    gi, gh = rng.standard_normal((2, batch, 3 * hidden)).astype(dtype)
    h_prev = c_prev
    _, saved = kernel("gru_cell_forward", "numpy")(gi, gh, h_prev)
    fwd = lambda be: (lambda: kernel("gru_cell_forward", be)(gi, gh, h_prev))
    bwd = lambda be: (lambda: kernel("gru_cell_backward", be)(dh, saved, h_prev))
    torch_fwd = torch_bwd = None
    if torch is not None:

        def torch_gru(a, b, hp):
            a_r, a_z, a_n = a.chunk(3, 1)
            b_r, b_z, b_n = b.chunk(3, 1)
            r, z = torch.sigmoid(a_r + b_r), torch.sigmoid(a_z + b_z)
            n = torch.tanh(a_n + r * b_n)
            return n + z * (hp - n)

        tgi, tgh, thp = (torch.from_numpy(a) for a in (gi, gh, h_prev))
        torch_fwd = lambda: torch_gru(tgi, tgh, thp)
        torch_bwd = _torch_backward(torch_gru, gi, gh, h_prev)
    cases.append(("gru_cell_forward", f"{batch}x3*{hidden}", fwd, torch_fwd))
    cases.append(("gru_cell_backward", f"{batch}x3*{hidden}", bwd, torch_bwd))

    # AdamW over 0.8M parameters (the state keeps changing; the cost does not)
    n = 800_000
    param, grad = rng.standard_normal((2, n)).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    settings = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, step=10)
    fwd = lambda be: (lambda: kernel("adamw_update", be)(param, grad, m, v, **settings))
    torch_step = None
    if torch is not None:
        tparam = torch.nn.Parameter(torch.from_numpy(param.copy()))
        tparam.grad = torch.from_numpy(grad)
        optimizer = torch.optim.AdamW([tparam], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        torch_step = optimizer.step
    cases.append(("adamw_update", "800k", fwd, torch_step))
    return cases


def run_benchmarks(args):
    dtype = np.dtype(args.dtype)
    info = configure_threads(args.threads, layer=args.layer)
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(
        f"dtype {dtype}; Numba: {info['threads']} threads, layer {info['layer']!r}; "
        f"OpenBLAS: {info['blas_threads']} threads ({info['blas_library'] or 'not found'}); "
        f"PyTorch: {torch.get_num_threads() if torch is not None else '-'} threads"
    )
    print("times in microseconds, median of repeated calls after a warm-up (compile) call\n")
    driver = Driver()
    rng = np.random.default_rng(0)
    cases = [case for case in make_cases(dtype, rng) if not args.only or any(w in case[0] for w in args.only)]
    rows = []
    for label, shape, make, _ in cases:
        reference = median_time(make("numpy"))
        driver.serial()
        serial = median_time(make("numba"))
        parallel = None
        if args.threads > 1:
            driver.parallel()
            parallel = median_time(make("numba"))
        driver.restore()
        rows.append([label, shape, reference, serial, parallel, None])
    # PyTorch in a second pass, so that its thread pool and Numba's take turns
    # once rather than at every row of the table.
    for row, (_, _, _, torch_call) in zip(rows, cases):
        row[5] = median_time(torch_call) if torch_call is not None else None

    parallel_title = f"numba {args.threads}t" if args.threads > 1 else ""
    header = (
        f"{'kernel':38s} {'shape':>11s} {'numpy':>9s} {'numba 1t':>9s} {parallel_title:>9s} "
        f"{'torch':>9s}  {'best/numpy':>10s}  note"
    )
    print(header)
    print("-" * len(header))
    blank = ""
    for label, shape, reference, serial, parallel, peer in rows:
        best = min(t for t in (serial, parallel) if t is not None)
        notes = []
        if best >= reference:
            notes.append("NUMBA NOT FASTER than the reference")
        if parallel is not None:
            notes.append(f"parallel {serial / parallel:.2f}x")
        print(
            f"{label:38s} {shape:>11s} {reference:9.0f} {serial:9.0f} "
            f"{f'{parallel:9.0f}' if parallel is not None else blank:>9s} "
            f"{f'{peer:9.0f}' if peer is not None else blank:>9s}  {reference / best:9.1f}x  {'; '.join(notes)}"
        )


# --------------------------------------------------------------------------- --fastmath


def run_fastmath(args):
    from numba import njit

    from tinylm.kernels.fastmath import erf_into, exp_into, sigmoid_into, tanh_into

    @njit(error_model="numpy")
    def math_exp(x, out):
        for k in range(x.shape[0]):
            out[k] = math.exp(x[k])

    @njit(error_model="numpy")
    def math_tanh(x, out):
        for k in range(x.shape[0]):
            out[k] = math.tanh(x[k])

    @njit(error_model="numpy")
    def math_erf(x, out):
        for k in range(x.shape[0]):
            out[k] = math.erf(x[k])

    print("nanoseconds per element over 400k elements (one thread)\n")
    print(f"{'function':10s} {'dtype':8s} {'numpy':>8s} {'math.*':>8s} {'fastmath':>9s}")
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = (rng.standard_normal(400_000) * 3).astype(dtype)
        out = np.empty_like(x)
        rows = [
            ("exp", lambda: np.exp(x, out=out), lambda: math_exp(x, out), lambda: exp_into(x, out)),
            ("tanh", lambda: np.tanh(x, out=out), lambda: math_tanh(x, out), lambda: tanh_into(x, out)),
            ("sigmoid", lambda: np.divide(1, 1 + np.exp(-x), out=out), None, lambda: sigmoid_into(x, out)),
            ("erf", None, lambda: math_erf(x, out), lambda: erf_into(x, out)),
        ]
        for name, numpy_call, math_call, fast_call in rows:
            calls = (numpy_call, math_call, fast_call)
            cells = [median_time(c) * 1e3 / x.size if c is not None else float("nan") for c in calls]
            print(f"{name:10s} {np.dtype(dtype).name:8s} {cells[0]:8.2f} {cells[1]:8.2f} {cells[2]:9.2f}")


# --------------------------------------------------------------------------- --probe-threading

_PROBE = r"""
import sys, time, numpy as np
what, layer, threads, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if what.startswith("numba"):
    import numba
    from tinylm.kernels import configure_threads, get_kernel, _common
    configure_threads(threads, layer=layer, blas=False)
    _common.PARALLEL_MIN_WORK = 0 if threads > 1 else sys.maxsize
    x = np.random.default_rng(0).standard_normal((768, 512)).astype(np.float32)
    w, b = np.ones(512, np.float32), np.zeros(512, np.float32)
    forward = get_kernel("layernorm_forward", "numba")
    call = lambda: forward(x, w, b, 1e-5)
    actual = numba.threading_layer()
    if what == "numba+torch":  # a torch op with as many threads between the timed calls
        import torch
        torch.set_num_threads(threads)
        t = torch.from_numpy(x)
        timed = call
        def call():
            torch.nn.functional.gelu(t)
            t0 = time.perf_counter(); timed(); return time.perf_counter() - t0
        actual += "+torch"
else:
    from tinylm.kernels.threads import set_blas_threads
    set_blas_threads(threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((768, 128)).astype(np.float32)
    b = rng.standard_normal((128, 512)).astype(np.float32)
    call = lambda: a @ b
    actual = "openblas"
call()
times = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t0 = time.perf_counter(); inner = call(); t1 = time.perf_counter()
    times.append(inner if isinstance(inner, float) else t1 - t0)
t = np.array(times) * 1e6
median = np.median(t)
print(f"{actual} {threads} {len(t)} {median:.0f} {np.percentile(t, 90):.0f} {np.percentile(t, 99):.0f} "
      f"{t.max():.0f} {100 * np.mean(t > 5 * median):.1f} {t.mean():.0f}")
"""


def _layers_installed():
    import importlib

    installed = []
    for layer, module in (("omp", "omppool"), ("workqueue", "workqueue"), ("tbb", "tbbpool")):
        try:
            importlib.import_module(f"numba.np.ufunc.{module}")
            installed.append(layer)
        except ImportError:
            pass
    return installed


def run_probe(args):
    busy = None
    if args.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    try:
        layers = _layers_installed()
        print(f"threading layers installed: {', '.join(layers)}"
              f"{'; one core kept busy by another process' if busy else ''}\n")
        print("LayerNorm forward 768x512 float32 (numba; +torch: a 2-thread torch op between the calls),")
        print("and a 768x128 @ 128x512 float32 matmul (openblas):")
        columns = ("threads", "calls", "median", "p90", "p99", "max", ">5x med", "mean")
        print(f"{'layer':16s} " + " ".join(f"{c:>7s}" for c in columns) + "   (us)")
        runs = [("numba", layer, threads) for layer in layers for threads in (1, 2)]
        if torch is not None:
            runs += [("numba+torch", layer, 2) for layer in layers]
        runs += [("blas", "-", threads) for threads in (1, 2)]
        for what, layer, threads in runs:
            result = subprocess.run(
                [sys.executable, "-c", _PROBE, what, layer, str(threads), str(args.probe_seconds)],
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                print(f"{what + ' ' + layer:16s} {threads:7d}  failed: {result.stderr.strip().splitlines()[-1]}")
                continue
            name, threads_, calls, median, p90, p99, worst, slow, mean = result.stdout.split()
            label = name if threads > 1 or what == "blas" else "(serial)"
            cells = (threads_, calls, median, p90, p99, worst, slow + "%", mean)
            print(f"{label:16s} " + " ".join(f"{c:>7s}" for c in cells))
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="Numba, OpenBLAS and PyTorch threads (default 2)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--only", nargs="*", help="run only the kernels whose label contains one of these words")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch column")
    parser.add_argument(
        "--layer", choices=["omp", "workqueue", "tbb"], help="Numba threading layer (default: see kernels/threads.py)"
    )
    parser.add_argument("--probe-threading", action="store_true", help="measure threading layers and BLAS threads")
    parser.add_argument("--busy", action="store_true", help="with --probe-threading: keep one core busy")
    parser.add_argument("--probe-seconds", type=float, default=3.0, help="seconds per probe run")
    parser.add_argument("--fastmath", action="store_true", help="time fast exp/tanh/sigmoid/erf per element")
    args = parser.parse_args(argv)
    if args.no_torch:
        global torch
        torch = None
    if args.probe_threading:
        run_probe(args)
    elif args.fastmath:
        run_fastmath(args)
    else:
        run_benchmarks(args)


if __name__ == "__main__":
    main()
