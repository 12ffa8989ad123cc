"""The one random-number generator behind ``randn``, ``rand``, dropout and initialisation.

Random numbers are drawn on the CPU by a NumPy ``Generator`` and copied to the
GPU when needed, so one seed gives the same numbers on every device. The state
can be saved and restored (``get_rng_state`` / ``set_rng_state``) so a resumed
training run continues with the very numbers it would have drawn.
"""

import numpy as np

DEFAULT_SEED = 0  # as in PyTorch, a fresh process is deterministic until seeded

_generator = np.random.default_rng(DEFAULT_SEED)


def manual_seed(seed):
    """Reset the generator to a known state."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator():
    """The NumPy ``Generator`` in use (reseeding replaces it, so ask again each time)."""
    return _generator


def get_rng_state():
    """The generator's state as a JSON-serialisable dict."""
    return _generator.bit_generator.state


def set_rng_state(state):
    """Restore a state returned by ``get_rng_state``."""
    global _generator
    try:
        bit_generator = getattr(np.random, state["bit_generator"])()
        bit_generator.state = state
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"set_rng_state: not a state saved by get_rng_state ({error})") from None
    _generator = np.random.Generator(bit_generator)
