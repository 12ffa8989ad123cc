"""The one random-number generator behind ``randn``, ``rand``, dropout and initialisation.

Random numbers are drawn on the CPU by a NumPy ``Generator`` and copied to the
GPU when needed, so one seed gives the same numbers on every device. The state
can be saved and restored (``get_rng_state`` / ``set_rng_state``) so a resumed
training run continues with the very numbers it would have drawn; a state that
is not one ``get_rng_state`` gave (say, edited in a checkpoint) is refused
with a ValueError, and ``check_rng_state`` checks one without restoring it.

``Generator`` is PyTorch's ``torch.Generator``: a generator of one's own, for
the functions that take ``generator=`` (``randn``, ``randint``, ``randperm``,
``multinomial``, ``DataLoader``, ``random_split``), leaving the shared one
untouched.
"""

import numpy as np

DEFAULT_SEED = 0  # as in PyTorch, a fresh process is deterministic until seeded

# Made on first use: numpy.random takes a noticeable part of `import tinylm` (docs/pytorch.md).
_generator = None


def _checked_seed(seed, op="manual_seed"):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or seed < 0:
        raise ValueError(f"{op}: expected a non-negative int, got {seed!r}")
    return int(seed)


def manual_seed(seed):
    """Reset the generator to a known state."""
    global _generator
    _generator = np.random.default_rng(_checked_seed(seed))


def generator(chosen=None):
    """The NumPy ``Generator`` to draw from: ``chosen``'s (a ``Generator``) if given, else the shared
    one in use (reseeding replaces it, so ask again each time)."""
    global _generator
    if chosen is None:
        if _generator is None:
            _generator = np.random.default_rng(DEFAULT_SEED)
        return _generator
    if not isinstance(chosen, Generator):
        raise TypeError(f"generator: expected a tinylm.Generator or None, got {type(chosen).__name__}")
    return chosen._numpy


class Generator:
    """A random-number generator of its own, as ``torch.Generator``: ``Generator().manual_seed(3)``.

    Draws come from a NumPy ``Generator`` (PCG64) on the CPU, whatever
    ``device`` says, so one seed gives the same numbers as on every device;
    they are not the numbers PyTorch's generator gives for that seed. A new
    generator starts from PyTorch's fixed default seed, so it is deterministic
    until seeded. ``get_state``/``set_state`` take the dicts of
    ``get_rng_state`` (not PyTorch's byte tensors).
    """

    DEFAULT_SEED = 67280421310721  # torch.Generator().initial_seed()

    def __init__(self, device="cpu"):
        from tinylm.backend import Device  # a device is checked for its spelling only, as PyTorch does

        self.device = Device(device)
        self.manual_seed(self.DEFAULT_SEED)

    def manual_seed(self, seed):
        """Restart from ``seed`` (a non-negative int); returns the generator, as PyTorch does."""
        self._initial_seed = _checked_seed(seed, "Generator.manual_seed")
        self._numpy = np.random.default_rng(self._initial_seed)
        return self

    def seed(self):
        """Restart from a seed taken from the operating system's entropy; returns that seed."""
        seed = int(np.random.SeedSequence().entropy % 2**63)
        self.manual_seed(seed)
        return seed

    def initial_seed(self):
        """The seed last given to ``manual_seed`` (or ``seed``)."""
        return self._initial_seed

    def get_state(self):
        """The state, as a JSON-serialisable dict (``set_state`` restores it)."""
        return self._numpy.bit_generator.state

    def set_state(self, state):
        """Restore a state ``get_state`` (or ``tinylm.get_rng_state``) returned; ValueError for any other."""
        self._numpy = np.random.Generator(_bit_generator_from(state))
        return self

    def __repr__(self):
        return f"tinylm.Generator(device='{self.device}', initial_seed={self._initial_seed})"


def get_rng_state():
    """The generator's state as a JSON-serialisable dict."""
    return generator().bit_generator.state


def _bit_generator_from(state):
    """A new bit generator holding ``state``; ValueError if it is not a state ``get_rng_state`` returns.

    Only NumPy's bit generator classes are looked up by name (no other attribute
    of ``np.random`` is ever called), and the state must come back unchanged
    from the generator: NumPy silently truncates some wrong values (a float
    ``inc``) instead of refusing them.
    """
    if not isinstance(state, dict):
        raise ValueError(f"set_rng_state: expected a dict saved by get_rng_state, got {type(state).__name__}")
    name = state.get("bit_generator")
    cls = getattr(np.random, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, np.random.BitGenerator)) or cls is np.random.BitGenerator:
        raise ValueError(f"set_rng_state: 'bit_generator' is {name!r}, expected the name of a NumPy bit generator "
                         f"such as 'PCG64'")  # fmt: skip
    bit_generator = cls()
    try:
        bit_generator.state = state
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        problem = f"{type(error).__name__}: {error}"
        raise ValueError(f"set_rng_state: not a state saved by get_rng_state ({problem})") from None
    if not _same_state(bit_generator.state, state):
        raise ValueError(f"set_rng_state: not a state saved by get_rng_state (NumPy's {name} changes it on "
                         f"restoring it: a value is of the wrong type or out of range)")  # fmt: skip
    return bit_generator


def _same_state(ours, given):
    """Whether ``given`` holds exactly the generator state ``ours`` (arrays may come as lists, from JSON)."""
    if isinstance(ours, dict):
        return isinstance(given, dict) and ours.keys() == given.keys() and all(
            _same_state(ours[key], given[key]) for key in ours
        )
    if isinstance(ours, np.ndarray):
        return np.shape(given) == ours.shape and np.asarray(given).tolist() == ours.tolist()
    return type(given) is type(ours) and given == ours


def check_rng_state(state):
    """Raise ValueError unless ``state`` is one that ``set_rng_state`` can restore exactly."""
    _bit_generator_from(state)


def set_rng_state(state):
    """Restore a state returned by ``get_rng_state``; ValueError, naming what is wrong, for any other value."""
    global _generator
    _generator = np.random.Generator(_bit_generator_from(state))
