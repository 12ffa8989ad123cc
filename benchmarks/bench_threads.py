"""The README's main job with the adaptive thread count, against pinned counts, on an idle and a busy machine.

    python benchmarks/bench_threads.py [--max-iters 100] [--rounds 3] [--conditions idle,busy]
                                       [--pin-busy] [--user-loop-steps 60] [--machine-blas]
    python benchmarks/bench_threads.py --check-determinism 40

Each run is ``tinylm train`` on the bundled text (the README's main job, with
``--max-iters`` steps) in a fresh process, into a temporary ``--out``, with
(a) the default threads (adaptive, ``tinylm/training/thread_tuner.py``), (b)
``--threads 1`` and (c) ``--threads N`` for every core (today's default, all
cores, fixed). The three alternate, ``--rounds`` times, first on the machine as
it is ("idle"), then with a spinning Python process keeping one core busy
("busy"; ``--pin-busy`` pins it to the last core, otherwise the scheduler
moves it). Printed: the median wall time of each setting, and the ratios the
issue sets as targets: busy, the default against the best pinned count (within
10 %); idle, the default against all cores fixed (within 5 %).

Then the user loop: a script that trains the same GPT through the public API
only (model, AdamW, backward, step; no ``tinylm.kernels`` call), against
``tinylm train``'s own step, medians of per-step times, alternating
processes, on the idle machine (target: as fast).

``--check-determinism STEPS`` instead trains the same GPT steps on one
thread, on all cores, and switching between them at every step, and prints
each run's last loss and a hash of its weights: whether the count changes
the results.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import blas_env  # noqa: E402

# The GPT of the main job (tinylm train's defaults), for the user loop.
GPT_SHAPE = dict(block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
BATCH = 12


def processor_name():
    """lscpu's "Model name", or the platform's answer where lscpu is missing."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    import platform

    return platform.processor() or "unknown processor"


# ----- the timed processes ------------------------------------------------------------------


def train_child(argv, result_path):
    """Run ``tinylm train argv`` in this process; write the median step time and the
    thread tuner's decisions to ``result_path`` (JSON)."""
    from tinylm import cli
    from tinylm.training import trainer
    from tinylm.training.thread_tuner import ThreadTuner

    step_times, tuners, events = [], [], []
    original_tuner_init, original_take = ThreadTuner.__init__, ThreadTuner.take_events
    original_step = trainer.Trainer.train_step

    def tuner_init(self, *args, **kwargs):  # keep each tuner, to ask it what it chose
        original_tuner_init(self, *args, **kwargs)
        tuners.append(self)

    def take_events(self):  # see the decisions on their way to the log
        taken = original_take(self)
        events.extend(taken)
        return taken

    def train_step(self):
        tick = time.perf_counter()
        result = original_step(self)
        step_times.append(time.perf_counter() - tick)
        return result

    ThreadTuner.__init__, ThreadTuner.take_events = tuner_init, take_events
    trainer.Trainer.train_step = train_step
    code = cli.main(["train", *argv])
    if not tuners:
        raise SystemExit("the trainer made no ThreadTuner: nothing here measures the adaptive choice")
    tuners[-1].take_events()
    Path(result_path).write_text(json.dumps({
        "code": code, "step_ms": statistics.median(step_times[5:]) * 1e3, "events": events,
        "final": tuners[-1].describe(),
    }))  # fmt: skip


def user_loop_child(steps, result_path):
    """Train the main job's GPT through the public API alone; write the median step time."""
    import numpy as np

    import tinylm
    import tinylm.nn.utils
    import tinylm.optim
    from tinylm.models import GPT, GPTConfig

    text = (Path(tinylm.__file__).parent / "data" / "corpora" / "tinyshakespeare.txt").read_text()
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text[:200_000]], dtype=np.int64)
    tinylm.manual_seed(1337)
    model = GPT(GPTConfig(vocab_size=len(chars), **GPT_SHAPE))
    optimizer = tinylm.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    rng = np.random.default_rng(1337)
    block = GPT_SHAPE["block_size"]
    times = []
    for _ in range(steps):
        tick = time.perf_counter()
        starts = rng.integers(0, len(data) - block - 1, BATCH)
        windows = np.stack([data[s:s + block + 1] for s in starts])
        _, loss = model(tinylm.tensor(windows[:, :-1]), tinylm.tensor(windows[:, 1:]))
        optimizer.zero_grad()
        loss.backward()
        tinylm.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()
        times.append(time.perf_counter() - tick)
    Path(result_path).write_text(json.dumps({"step_ms": statistics.median(times[5:]) * 1e3}))


def determinism_child(steps, threads, result_path):
    """Train the main job's GPT ``steps`` steps on ``threads`` threads ("alternate": 1 and all cores by
    turns, as a tuner's probe does); write the last loss and a hash of the weights."""
    import hashlib

    import numpy as np

    import tinylm
    import tinylm.optim
    from tinylm.kernels import configure_threads
    from tinylm.models import GPT, GPTConfig

    cores = len(os.sched_getaffinity(0))
    configure_threads(1 if threads == "alternate" else int(threads))
    tinylm.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, **GPT_SHAPE))
    optimizer = tinylm.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for step in range(steps):
        if threads == "alternate":
            configure_threads(1 if step % 2 else cores)
        ids = rng.integers(0, 65, (BATCH, GPT_SHAPE["block_size"] + 1))
        _, loss = model(tinylm.tensor(ids[:, :-1]), tinylm.tensor(ids[:, 1:]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = hashlib.sha256(b"".join(p.numpy().tobytes() for p in model.parameters())).hexdigest()[:16]
    Path(result_path).write_text(json.dumps({"loss": repr(loss.item()), "weights": weights}))


def check_determinism(args, cores):
    """Whether the thread count changes the results: the same steps on 1, all cores, and alternating."""
    print(f"the same {args.check_determinism} GPT steps on each thread count (last loss, hash of the weights):")
    for threads in ("1", str(cores), "alternate"):
        result = _child(args, ["--determinism-child", f"{args.check_determinism},{threads}"])[1]
        print(f"  threads {threads:9} loss {result['loss']:22} weights {result['weights']}")


# ----- the driver ---------------------------------------------------------------------------


def _child(args, child_args):
    """Run this script as a child with ``child_args``; returns (wall seconds, its JSON result)."""
    with tempfile.TemporaryDirectory(prefix="bench_threads_") as tmp:
        result = Path(tmp) / "result.json"
        command = [sys.executable, __file__, *child_args, "--result", str(result)]
        command = [part.replace("{tmp}", tmp) for part in command]
        env = blas_env.child_environment(args.machine_blas)
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if done.returncode != 0 or not result.exists():
            raise RuntimeError(f"{' '.join(child_args)} failed:\n{done.stdout}\n{done.stderr}")
        return wall, json.loads(result.read_text())


def _train(args, threads):
    argv = ["--max-iters", str(args.max_iters), "--out", "{tmp}/out", "--overwrite", "--quiet",
            "--threads", str(threads)]  # fmt: skip
    return _child(args, ["--train-child", json.dumps(argv)])


class BusyCore:
    """A spinning Python process (``while True: pass``) for the length of a ``with`` block."""

    def __init__(self, pin):
        self.pin = pin

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        if self.pin:
            os.sched_setaffinity(self.process.pid, {max(os.sched_getaffinity(0))})
        return self

    def __exit__(self, *exc_info):
        self.process.kill()
        self.process.wait()


def compare_settings(args, cores):
    """{condition: {setting: [wall seconds per round]}} and the tuner's choices, printed as they come."""
    settings = {"default (adaptive)": 0, "--threads 1": 1, f"--threads {cores}": cores}
    results, choices = {}, {}
    for condition in args.conditions:
        walls = {name: [] for name in settings}
        steps = {name: [] for name in settings}
        print(f"{condition}: load average before {os.getloadavg()[0]:.2f} (other jobs on the machine count too)")
        with BusyCore(args.pin_busy) if condition == "busy" else _nothing():
            for round_ in range(args.rounds):
                order = list(settings) if round_ % 2 == 0 else list(settings)[::-1]
                for name in order:
                    wall, result = _train(args, settings[name])
                    walls[name].append(wall)
                    steps[name].append(result["step_ms"])
                    if settings[name] == 0:
                        choices.setdefault(condition, []).append(result)
                    print(f"  {condition:4}  round {round_ + 1}  {name:20} {wall:7.1f} s  "
                          f"(median step {result['step_ms']:.1f} ms, {result['final']})", flush=True)  # fmt: skip
        results[condition] = walls, steps
    return results, choices


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


def compare_user_loop(args):
    """Median per-step ms of the public-API loop and of tinylm train (default threads), alternating."""
    loop, train = [], []
    for _ in range(args.rounds):
        loop.append(_child(args, ["--user-loop-child", str(args.user_loop_steps)])[1]["step_ms"])
        train.append(_train(args, 0)[1]["step_ms"])
    return statistics.median(loop), statistics.median(train), loop, train


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-iters", type=int, default=100, help="training steps per run (the README's job: 600)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each setting")
    parser.add_argument("--conditions", default="idle,busy", help="comma-separated, from idle,busy")
    parser.add_argument("--pin-busy", action="store_true", help="pin the spinning process to the last core")
    parser.add_argument("--user-loop-steps", type=int, default=60, help="steps of the user loop (0: skip it)")
    parser.add_argument("--check-determinism", type=int, default=0, metavar="STEPS",
                        help="instead: train STEPS steps on 1 thread, on all, and alternating, and compare the results")
    blas_env.add_option(parser)
    parser.add_argument("--train-child", help=argparse.SUPPRESS)
    parser.add_argument("--user-loop-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--determinism-child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_child is not None:
        return train_child(json.loads(args.train_child), args.result)
    if args.user_loop_child is not None:
        return user_loop_child(args.user_loop_child, args.result)
    if args.determinism_child is not None:
        steps, threads = args.determinism_child.split(",")
        return determinism_child(int(steps), threads, args.result)
    args.conditions = [c for c in args.conditions.split(",") if c]

    cores = len(os.sched_getaffinity(0))
    code = "from tinylm.kernels.threads import blas_core; print(blas_core())"
    core = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=blas_env.child_environment(args.machine_blas)).stdout.strip()  # fmt: skip
    print(f"{processor_name()}, {cores} cores; {blas_env.describe(core, args.machine_blas)}")
    if args.check_determinism:
        return check_determinism(args, cores)
    print(f"tinylm train --max-iters {args.max_iters} --out TMP --overwrite --quiet [--threads N], "
          f"{args.rounds} rounds alternating; wall time of each process")
    results, choices = compare_settings(args, cores)
    for condition, (walls, steps) in results.items():
        medians = {name: statistics.median(times) for name, times in walls.items()}
        step_medians = {name: statistics.median(times) for name, times in steps.items()}
        default = medians["default (adaptive)"]
        pinned = {name: m for name, m in medians.items() if name != "default (adaptive)"}
        best = min(pinned, key=pinned.get)
        print(f"{condition}: " + ", ".join(f"{name} {m:.1f} s" for name, m in medians.items()))
        print("  median step: " + ", ".join(f"{name} {m:.1f} ms" for name, m in step_medians.items()))
        picks = [e["threads"] for r in choices[condition] for e in r["events"]]
        print(f"  the tuner's decisions: {picks}")
        if condition == "busy":
            print(f"  default / best pinned ({best}): {default / pinned[best]:.3f} (target <= 1.10)")
        else:
            print(f"  default / --threads {cores} (today's default): {default / pinned[f'--threads {cores}']:.3f} "
                  f"(target <= 1.05)")  # fmt: skip
    if args.user_loop_steps:
        loop, train, loops, trains = compare_user_loop(args)
        per_round = statistics.median(a / b for a, b in zip(loops, trains))
        print(f"user loop (public API, no tinylm.kernels call): {loop:.1f} ms/step {[round(x, 1) for x in loops]}; "
              f"tinylm train: {train:.1f} ms/step {[round(x, 1) for x in trains]}; "
              f"user loop / tinylm train {loop / train:.3f} (median of the rounds' ratios {per_round:.3f})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
