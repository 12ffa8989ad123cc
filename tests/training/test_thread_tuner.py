"""The thread tuner's decisions (tinylm/training/thread_tuner.py), on made-up step times.

A fake machine gives each step a time that depends on the thread count in use
(and on the "load" the test sets); a fake ``apply`` records every count set.
One test then drives the real ``configure_threads`` in a fresh process.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from tinylm.training.thread_tuner import ThreadTuner, candidate_counts

IDLE = {1: 0.080, 2: 0.060}  # seconds per step: two threads faster
BUSY = {1: 0.065, 2: 0.200}  # one core taken by another job: one thread faster


class FakeMachine:
    """Step times by thread count, from the table in ``load``; records what the tuner applies."""

    def __init__(self, load, cores=2, **options):
        self.load = load
        self.applied = []
        self.tuner = ThreadTuner(cores=cores, apply=self.applied.append, **options)

    def run(self, steps, slow_step=None):
        """Run ``steps`` steps; the step numbered ``slow_step`` (0-based) takes 1 s."""
        for i in range(steps):
            self.tuner.step_finished(1.0 if i == slow_step else self.load[self.tuner.threads])


def test_candidates_are_powers_of_two_and_the_core_count():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(6) == [1, 2, 4, 6]
    assert candidate_counts(8) == [1, 2, 4, 8]


def test_warms_up_on_each_count_and_keeps_all_cores_when_they_are_fastest():
    machine = FakeMachine(IDLE)
    assert machine.applied == [1] and machine.tuner.threads == 1
    assert machine.tuner.describe() == "timing 1 and 2 threads"
    machine.run(3)  # warm-up: 1, 2, 1 (each count's kernels compiled before they are timed)
    assert machine.applied == [1, 2, 1]
    machine.run(6)  # the probe: 1, 2, 2, 1, 1, 2
    assert machine.applied == [1, 2, 1, 2, 1, 2]
    machine.run(41)
    assert machine.tuner.threads == 2
    (event,) = machine.tuner.take_events()
    assert event["threads"] == 2 and event["previous"] == 2 and event["reason"] == "warm-up"
    assert event["step_ms"] == {"1": 80.0, "2": 60.0}
    assert machine.tuner.describe() == "2 threads (auto)"


def test_picks_one_thread_when_another_job_holds_a_core():
    machine = FakeMachine(BUSY)
    machine.run(3)  # warm-up: not timed
    assert machine.tuner.describe() == "timing 1 and 2 threads"
    machine.run(2)  # the first round: 1, 2
    assert machine.tuner.threads == 1  # two threads took over twice as long: dropped from the probe
    machine.run(2)  # the other rounds' steps on one thread
    assert machine.applied == [1, 2, 1, 2, 1]  # in the probe, a single step on two threads
    assert machine.tuner.take_events() == [
        {"step": 7, "threads": 1, "previous": 2, "reason": "warm-up", "step_ms": {"1": 65.0, "2": 200.0}}]
    assert machine.tuner.take_events() == []  # taken once
    machine.run(50)
    assert machine.tuner.threads == 1 and machine.tuner.describe() == "1 thread (auto)"


def test_a_winner_within_the_margin_does_not_replace_the_count_in_use():
    machine = FakeMachine({1: 0.0590, 2: 0.0600}, margin=0.05)  # one thread 1.7 % faster
    machine.run(30)
    assert machine.tuner.threads == 2
    machine = FakeMachine({1: 0.0500, 2: 0.0600}, margin=0.05)  # 17 % faster
    machine.run(30)
    assert machine.tuner.threads == 1


def test_load_that_comes_later_makes_it_probe_again_and_switch():
    machine = FakeMachine(IDLE, window=10)
    machine.run(40)
    assert machine.tuner.threads == 2
    machine.tuner.take_events()
    machine.load = BUSY
    machine.run(20)
    assert machine.tuner.threads == 1
    (event,) = machine.tuner.take_events()
    assert event["threads"] == 1 and event["previous"] == 2
    # half a window of slow steps moves the median (to between the two times), then 6 probe steps
    assert event["reason"] == "step time moved from 60.0 ms to 130.0 ms"
    assert event["step"] == 40 + 5 + 4  # 2, 1, then two threads dropped: 1, 1


def test_one_slow_step_does_not_start_a_probe():
    machine = FakeMachine(IDLE, window=10, recheck=1000)
    machine.run(40)
    applied = list(machine.applied)
    machine.tuner.take_events()
    machine.run(40, slow_step=5)
    assert machine.applied == applied  # no switch at all, not even to probe
    assert machine.tuner.take_events() == []


def test_a_steady_machine_is_rechecked_less_and_less_often():
    machine = FakeMachine(IDLE, window=10, recheck=50, max_recheck=200)
    machine.run(1000)
    steps = [event["step"] for event in machine.tuner.take_events()]
    assert machine.tuner.threads == 2
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    # each probe takes 6 steps and the window 10 more before a re-check can fire
    assert gaps[:4] == [50 + 6, 100 + 6, 200 + 6, 200 + 6], steps


def test_load_that_leaves_is_found_by_the_recheck():
    # Busy, then idle: the one-thread step time does not move (no drift), but two threads are now faster.
    machine = FakeMachine(BUSY, window=10, recheck=50)
    machine.run(30)
    assert machine.tuner.threads == 1
    machine.tuner.take_events()
    machine.load = {1: 0.065, 2: 0.045}
    machine.run(60)
    assert machine.tuner.threads == 2
    (event,) = machine.tuner.take_events()
    assert event["reason"] == "periodic re-check" and event["previous"] == 1


def test_pinned_never_switches():
    applied = []
    tuner = ThreadTuner(pinned=1, apply=applied.append)
    for load in (IDLE, BUSY, IDLE):
        for _ in range(300):
            tuner.step_finished(load[1])
    assert applied == [1] and tuner.threads == 1
    assert tuner.describe() == "1 thread (pinned)"
    assert tuner.take_events() == []


def test_one_core_has_nothing_to_tune():
    machine = FakeMachine(IDLE, cores=1)
    machine.run(300)
    assert machine.applied == [1] and machine.tuner.take_events() == []
    assert machine.tuner.describe() == "1 thread (auto)"


def test_switching_the_real_thread_count_sets_numba_and_openblas():
    # configure_threads does the switching: check that Numba's count and OpenBLAS's
    # (running on Numba's pool where it can) follow the tuner, and products stay right.
    code = textwrap.dedent("""
        import numba, numpy as np
        from tinylm.kernels.threads import blas_threads
        from tinylm.training.thread_tuner import ThreadTuner
        tuner = ThreadTuner(skip=1, rounds=1)
        assert tuner.threads == 1 == numba.get_num_threads()  # the warm-up's
        a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
        want = a.astype(np.float64) @ a
        seen = []
        for _ in range(12):
            n = tuner.threads
            assert numba.get_num_threads() == n and blas_threads() in (n, None), (n, blas_threads())
            seen.append(n)
            np.testing.assert_allclose(a @ a, want, rtol=1e-4, atol=1e-3)
            tuner.step_finished(0.01 if n == 1 else 0.03)
        assert seen[:3] == [1, 1, 2] and tuner.threads == 1, seen
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["NUMBA_NUM_THREADS"] = "2"  # a pool of two even on a one-core machine
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_without_warm_up_the_probe_starts_at_once():
    machine = FakeMachine(BUSY, skip=0)
    machine.run(4)  # 1, 2 (dropped), 1, 1
    assert machine.applied == [1, 2, 1] and machine.tuner.threads == 1
    assert [event["step"] for event in machine.tuner.take_events()] == [4]


@pytest.mark.parametrize("pinned", [0, None])
def test_zero_or_none_means_auto(pinned):
    tuner = ThreadTuner(pinned=pinned, cores=2, apply=lambda n: None)
    assert tuner.pinned is None and tuner.candidates == [1, 2]
