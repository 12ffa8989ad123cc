"""Test-suite set-up shared by every test module.

- Hypothesis runs derandomized by default, so the suite (and CI) draws the same
  examples on every run; ``pytest --hypothesis-profile=explore`` draws fresh,
  more numerous ones.
- Numba's CUDA kernels run under the CUDA simulator unless a GPU is usable;
  the variable must be set before numba is first imported.
- Every test runs in its own temporary directory, so a relative path (the
  CLI's default ``out/``) can never read or write the folder pytest was
  started from.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

from tinylm import backend

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not backend.cuda_is_available():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

settings.register_profile(
    "default",
    derandomize=True,
    deadline=None,
    max_examples=30,
    # function_scoped_fixture: every test runs in a temporary directory (below), which no example changes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    database=None,
)
settings.register_profile("explore", deadline=None, max_examples=300,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile("default")


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


# ----- parity tests against PyTorch --------------------------------------------
# Tests marked `parity` compare tinylm with PyTorch (an extra: pip install
# 'tinylm[parity]'). Without torch they skip, except where TINYLM_REQUIRE_PARITY=1
# (as .ci/run sets): there a parity test that does not run fails the suite.

REQUIRE_PARITY = os.environ.get("TINYLM_REQUIRE_PARITY") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "parity: compares tinylm with PyTorch given the same weights")


@pytest.fixture(scope="session")
def torch():
    try:
        import torch as torch_module
    except ImportError:
        if REQUIRE_PARITY:
            pytest.fail("PyTorch is required for parity tests here (TINYLM_REQUIRE_PARITY=1) but is not installed")
        pytest.skip("PyTorch is not installed (pip install 'tinylm[parity]')")
    torch_module.set_num_threads(1)  # deterministic sums, and no fight with the suite for the 2 cores
    return torch_module


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_PARITY and report.skipped and item.get_closest_marker("parity"):
        report.outcome = "failed"
        report.longrepr = f"parity test skipped where parity is required: {report.longrepr}"
