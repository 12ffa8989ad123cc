"""tinylm.memory: freed activations stay mapped, so a repeated step does not page-fault them in again."""

import subprocess
import sys
import textwrap

import pytest

from tinylm import memory

# One "step": allocate forty 1 MiB arrays, write them, free them all. By
# default glibc trims the 40 MiB freed at the top of its heap, and the next
# step faults every page in again (about 10,000 faults); with the settings,
# the pages are reused.
STEPS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    if sys.argv[1] == "tinylm":
        import tinylm
        assert tinylm.memory.keep_freed_memory()
    if sys.argv[1] == "import tinylm":  # what importing does by itself
        import tinylm

    def step():
        arrays = [np.ones(1 << 18, dtype=np.float32) for _ in range(40)]
        del arrays

    step(); step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
    """
)


def faults_per_step(mode, env=None):
    done = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout.strip())


@pytest.mark.skipif(memory._glibc() is None, reason="mallopt's thresholds are glibc's")
def test_freed_arrays_are_reused_without_page_faults():
    pages = 40 * (1 << 20) // 4096
    assert faults_per_step("numpy") > pages // 2  # the default: most pages fault again each step
    assert faults_per_step("tinylm") < pages // 100


def test_keep_freed_memory_is_idempotent():
    first = memory.keep_freed_memory()
    assert memory.keep_freed_memory() is first
    assert first == (memory._glibc() is not None)


@pytest.mark.skipif(memory._glibc() is None, reason="mallopt's thresholds are glibc's")
def test_import_keeps_freed_memory_unless_opted_out():
    import os

    pages = 40 * (1 << 20) // 4096
    assert faults_per_step("import tinylm") < pages // 100
    opted_out = dict(os.environ, TINYLM_KEEP_FREED_MEMORY="0")
    assert faults_per_step("import tinylm", opted_out) > pages // 2
