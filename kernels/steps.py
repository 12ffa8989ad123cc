"""The order in which a recurrent layer visits its time steps: one definition for the
sequence ops (``tinylm/ops/fused/recurrent.py``) and the kernels' Python loops. It
imports nothing, so the ops can use it without loading Numba."""


def time_steps(length, reverse):
    """The time indices a recurrent layer visits, in order: 0..T-1, or T-1..0 with ``reverse``."""
    return range(length - 1, -1, -1) if reverse else range(length)
