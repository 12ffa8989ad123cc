"""Test-suite set-up shared by every test module.

- Hypothesis runs derandomized by default, so the suite (and CI) draws the same
  examples on every run; ``pytest --hypothesis-profile=explore`` draws fresh,
  more numerous ones.
- Numba's CUDA kernels run under the CUDA simulator unless a GPU is usable;
  the variable must be set before numba is first imported.
"""

import os

from hypothesis import HealthCheck, settings

from tinylm import backend

if "NUMBA_ENABLE_CUDASIM" not in os.environ and not backend.cuda_is_available():
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

settings.register_profile(
    "default",
    derandomize=True,
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
settings.register_profile("explore", deadline=None, max_examples=300)
settings.load_profile("default")
