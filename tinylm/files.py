"""Writing files so that a crash never leaves half of one: the one helper every writer in tinylm uses."""

import os
from pathlib import Path


def write_atomically(path, write):
    """Make ``path`` by calling ``write(temporary_path)``, flushing that file to disk, and renaming it
    into place.

    A crash (or Ctrl-C) at any moment leaves either the old file or the whole new
    one at ``path``, never a partial one. ``write`` is whatever fills a path:
    ``Path.write_bytes`` through a lambda, ``ndarray.tofile``, a figure's ``savefig``.
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    write(temporary)
    with open(temporary, "rb") as file:  # the writer has closed its own descriptor; fsync needs one
        os.fsync(file.fileno())
    os.replace(temporary, path)
