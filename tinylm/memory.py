"""Keep freed memory mapped, so that a training step does not fault its activations in anew.

A training step allocates its activations in the forward pass and frees them
in the backward pass, and the next step allocates the same sizes again. By
default glibc's ``malloc`` hands large freed blocks back to the kernel: a block
above its mmap threshold is unmapped, and free space at the top of the heap is
trimmed. The next step's arrays then land on fresh pages, and the first write
to each 4 KiB page is a page fault in which the kernel also zeroes the page.

With the settings below a training step of the small GPT takes almost no page
faults, where it took thousands, and about a third less time; a GELU inside the
step had taken several times as long as alone, most of it faulting in its two
fresh outputs (measured: docs/performance.md, "Keeping freed memory mapped
(malloc)").

:func:`keep_freed_memory` sets two of malloc's parameters (``mallopt``):

- ``M_MMAP_THRESHOLD`` = 32 MiB: blocks smaller than this come from the heap,
  not from mappings of their own. glibc raises its threshold towards the same
  32 MiB by itself, but only as mapped blocks are freed, and meanwhile maps
  and unmaps them every step.
- ``M_TRIM_THRESHOLD`` = 1 GiB: up to this much free space at the top of the
  heap stays mapped for the next allocation instead of going back to the kernel.

The cost: memory the process has freed stays in its resident set, up to the
trim threshold, until it is reused or the process ends. The peak resident
size does not change. ``import tinylm`` calls it once. Only glibc's ``mallopt``
takes these parameters; elsewhere (macOS, Windows, musl) nothing is changed.
"""

import ctypes
import os

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: The largest mmap threshold glibc accepts on 64-bit machines (half its heap size).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

_applied = None

#: Set to 0 to leave malloc's settings as they are at ``import tinylm``.
OPT_OUT = "TINYLM_KEEP_FREED_MEMORY"


def _glibc():
    """The C library if it is glibc (it has ``gnu_get_libc_version`` and ``mallopt``), else None."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded in the process, the C library's among them
    except (OSError, TypeError):  # Windows has no such handle
        return None
    if not (hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def keep_freed_memory():
    """Make glibc's malloc keep freed blocks mapped for reuse (see the module's notes).

    Returns True when the settings are in effect, False where the C library is
    not glibc or refused them. Calling it again changes nothing.
    """
    global _applied
    if _applied is None:
        libc = _glibc()
        _applied = bool(
            libc is not None
            and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        )
    return _applied


def keep_freed_memory_unless_opted_out():
    """What ``import tinylm`` calls: :func:`keep_freed_memory`, unless ``TINYLM_KEEP_FREED_MEMORY=0``."""
    if os.environ.get(OPT_OUT, "").strip() == "0":
        return False
    return keep_freed_memory()
