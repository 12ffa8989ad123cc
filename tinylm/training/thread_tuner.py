"""Choose the number of CPU threads for training by timing the training steps.

Why: on a machine with few cores shared with other jobs, the fastest thread
count changes with the load. When another process keeps a core busy, a
parallel region (a Numba kernel, an OpenBLAS product) now and then waits a
whole scheduler time slice for its descheduled second thread, and a step on
all cores becomes several times slower than on one; on an idle machine all
cores are the faster. No fixed default suits both, so the tuner measures
(figures in ``docs/performance.md``, "Threads: adaptive choice on a busy
machine").

How, given the wall time of each step (:meth:`ThreadTuner.step_finished`):

1. Warm-up: the first ``skip`` steps are not timed (compilation, caches).
   They run on the candidate counts in turn (1, 2, 1 for two cores), so that
   each count's code is compiled or loaded from Numba's cache before it is
   timed (one thread and two run different kernel drivers); one thread
   first and most, the cheaper mistake: on an idle machine one thread is
   slower by a fraction, on a busy one all cores by a multiple.
2. Probe: the candidate counts take turns, one step each, for ``rounds``
   rounds (1, 2, 2, 1, 1, 2 for two cores), so that a change of load during
   the probe falls on all of them alike. A count whose best step so far is
   more than ``clear`` times the best of all is dropped from the rest of
   the probe (on a busy machine, all cores after one step). The count with
   the lowest median step time wins; the count chosen before (at first all
   cores, the old default) stays unless the winner is faster by more than
   ``margin``.
3. Settle and watch: the median of the first ``window`` steps on the choice
   is its reference. When the median of the last ``window`` steps moves from
   it by more than the fraction ``drift`` (either way: load came or went), a
   new probe starts. A median needs half a window of changed steps to move,
   so one slow step (garbage collection, a checkpoint written beside) does not.
4. Re-check: load that leaves may not change the time of a one-thread step,
   so a probe also comes every ``recheck`` steps; each one that keeps the
   choice doubles that interval (up to ``max_recheck``), so a steady machine
   pays for fewer and fewer probes.

A pinned count (``--threads N``) is set once and never changed.

The count matters beyond speed: OpenBLAS's products and the kernels that add
partial sums per thread round differently on one thread and on two, so the
loss of a run with switches depends on when they came. For results that
repeat bit for bit (and a resume that matches an uninterrupted run), pin the
count.
"""

import math
import statistics
from collections import deque


def candidate_counts(cores):
    """The thread counts worth trying on ``cores`` cores: powers of two below it, and ``cores``.

    1, 2 for two cores; 1, 2, 4, 6 for six. Trying every count would make a probe
    on a many-core machine long, for steps that differ little.
    """
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + [cores]


class ThreadTuner:
    """Keeps the thread count at whichever candidate runs the training step fastest.

    ``pinned``: a fixed count (never changed), or None (or 0) to choose among
    :func:`candidate_counts` of ``cores`` (default: Numba's pool size, one per core).
    ``apply(n)`` sets the count (default ``tinylm.kernels.configure_threads``, which
    raises ValueError for a count beyond the pool); it is called at once with the
    first count, and again at every switch. The other arguments are the rules in
    the module's docstring; steps are counted in calls of :meth:`step_finished`.
    """

    def __init__(self, pinned=None, *, cores=None, apply=None, skip=3, rounds=3, clear=2.0, window=20, drift=0.3,
                 margin=0.05, recheck=100, max_recheck=1600):  # fmt: skip
        if apply is None:
            from tinylm.kernels import configure_threads

            apply = configure_threads
        if cores is None and not pinned:
            import numba

            cores = numba.config.NUMBA_NUM_THREADS
        self.pinned = int(pinned) if pinned else None
        self.candidates = [self.pinned] if self.pinned else candidate_counts(int(cores))
        self._apply, self._rounds, self._clear = apply, rounds, clear
        self._drift, self._margin, self._recheck, self._max_recheck = drift, margin, recheck, max_recheck
        self.threads = self.candidates[0]  # the count in use now
        self._apply(self.threads)
        self._chosen = self.candidates[-1]  # the count chosen by the last probe; at first all cores
        self._steps = 0
        tuning = len(self.candidates) > 1
        # The warm-up's counts, step by step; None: nothing to tune
        self._warmup = [self.candidates[i % len(self.candidates)] for i in range(skip)] if tuning else None
        self._plan = []  # the counts of the coming probe steps, the current one first
        self._samples = {}  # count -> its step times in the current probe
        self._reason = ""  # why the current probe started
        self._recent = deque(maxlen=window)  # the last steps' times on the chosen count
        self._reference = None  # the median of the first window of steps on it
        self._interval = recheck  # steps from one choice to the next periodic probe
        self._next_check = None
        self._events = []
        if tuning and not skip:
            self._start_probe("warm-up")

    def describe(self):
        """Short text for the progress line: '2 threads (auto)', '1 thread (pinned)', or while the
        counts are being timed 'timing 1 and 2 threads'."""
        if not self.pinned and (self._plan or self._warmup):
            return "timing " + " and ".join(str(n) for n in self.candidates) + " threads"
        how = "pinned" if self.pinned else "auto"
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({how})"

    def take_events(self):
        """The decisions made since the last call, oldest first, each a dict:
        ``{"step", "threads", "previous", "reason", "step_ms": {"1": ms, "2": ms}}``."""
        events, self._events = self._events, []
        return events

    def step_finished(self, seconds):
        """Record one training step's wall time (seconds); may change the count for the next step."""
        self._steps += 1
        if self._warmup is None:
            return
        if self._warmup:  # warming up: this step ran on self._warmup[0]
            self._warmup.pop(0)
            if self._warmup:
                self._use(self._warmup[0])
            else:
                self._start_probe("warm-up")
            return
        if self._plan:  # probing: this step ran on self._plan[0]
            self._samples[self._plan.pop(0)].append(seconds)
            best = min(min(times) for times in self._samples.values() if times)
            self._plan = [n for n in self._plan if not self._samples[n] or min(self._samples[n]) <= self._clear * best]
            if self._plan:
                self._use(self._plan[0])
            else:
                self._decide()
            return
        self._recent.append(seconds)
        if len(self._recent) < self._recent.maxlen:
            return
        now = statistics.median(self._recent)
        if self._reference is None:  # the first full window on the choice
            self._reference = now
        elif not 1 / (1 + self._drift) <= now / self._reference <= 1 + self._drift:
            self._start_probe(f"step time moved from {self._reference * 1e3:.1f} ms to {now * 1e3:.1f} ms")
        elif self._steps >= self._next_check:
            self._start_probe("periodic re-check")

    def _use(self, n):
        if n != self.threads:
            self._apply(n)
            self.threads = n

    def _start_probe(self, reason):
        self._reason = reason
        self._samples = {n: [] for n in self.candidates}
        # Each round in the reverse order of the one before: fewer switches, and no count always first.
        self._plan = [n for r in range(self._rounds) for n in (self.candidates[::-1] if r % 2 else self.candidates)]
        self._use(self._plan[0])

    def _decide(self):
        medians = {n: statistics.median(times) for n, times in self._samples.items() if times}
        best = min(medians, key=medians.get)
        previous = self._chosen
        choice = previous if medians.get(previous, math.inf) <= medians[best] * (1 + self._margin) else best
        self._events.append({
            "step": self._steps, "threads": choice, "previous": previous, "reason": self._reason,
            "step_ms": {str(n): round(m * 1e3, 2) for n, m in medians.items()},
        })  # fmt: skip
        kept_on_recheck = choice == previous and self._reason == "periodic re-check"
        self._interval = min(2 * self._interval, self._max_recheck) if kept_on_recheck else self._recheck
        self._chosen = choice
        self._use(choice)
        self._recent.clear()
        self._reference = None
        self._next_check = self._steps + self._interval
