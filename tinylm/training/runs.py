"""Where runs live: a new numbered directory per run, and ``latest`` pointing at the newest.

``tinylm train`` without ``--out`` writes to ``out/run-001``, then
``out/run-002`` and so on, and points ``out/latest`` at the run it started,
so the same command can be run again and again. ``sample``, ``eval`` and
``train --resume`` read ``out/latest`` unless told otherwise; any of them also
accepts a runs folder (``out``) in place of a run, and reads its latest.
"""

import os
import re
from pathlib import Path

from tinylm.errors import CheckpointError, ConfigError

RUNS = Path("out")
LATEST = "latest"
_RUN_NAME = re.compile(r"run-(\d+)$")


def new_run_directory(runs=RUNS):
    """Create and return ``runs/run-NNN``, one number past the highest there."""
    runs = Path(runs)
    make_directory(runs, "the runs folder")
    numbers = [int(m.group(1)) for p in runs.iterdir() if (m := _RUN_NAME.match(p.name))]
    number = max(numbers, default=0) + 1
    while True:  # another process may take a number at the same moment: mkdir decides
        directory = runs / f"run-{number:03d}"
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            number += 1


def point_latest_at(directory):
    """Make ``<runs>/latest`` a relative symbolic link to ``directory`` (replaced atomically)."""
    directory = Path(directory)
    link = directory.parent / LATEST
    temporary = directory.parent / f".{LATEST}.{os.getpid()}.tmp"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(directory.name, temporary)
    os.replace(temporary, link)


def run_directory(path=None):
    """The run that ``path`` names: a run directory itself, or a runs folder whose ``latest`` is read.

    ``None`` means the default runs folder, ``out``. Raises CheckpointError when
    there is no run to be found there.
    """
    path = Path(path) if path is not None else RUNS
    if (path / "ckpt.json").is_file():
        return path
    latest = path / LATEST
    if latest.is_dir() and (latest / "ckpt.json").is_file():
        return path / os.readlink(latest) if latest.is_symlink() else latest  # out/run-003, as the user knows it
    if path.is_dir() and latest.is_symlink():
        raise CheckpointError(f"no checkpoint in {path}: {latest} points at {os.readlink(latest)}, which holds none")
    raise CheckpointError(f"no checkpoint in {path} (no ckpt.json, and no {LATEST} run beside it)")


def make_directory(path, what="--out"):
    """Create ``path`` (and its parents) if needed; a file in the way or an unwritable place is a ConfigError."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{what} {path} cannot be created: {error.strerror or error}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path} is not writable")
    return path
