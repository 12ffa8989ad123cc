"""The array helpers in tinylm.backend that ops build on."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm import backend


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 6),
    width=st.integers(0, 5),
    ids=st.lists(st.integers(-6, 5), min_size=0, max_size=20),
    seed=st.integers(0, 2**16),
)
def test_scatter_add_rows_equals_add_at(rows, width, ids, seed):
    ids = np.array([i % rows - (rows if i < 0 else 0) for i in ids], dtype=np.int64)  # valid ids, some negative
    values = np.random.default_rng(seed).standard_normal((ids.size, width))
    expected = np.zeros((rows, width))
    np.add.at(expected, ids, values)
    target = np.zeros((rows, width))
    backend.scatter_add_rows(target, ids, values)
    np.testing.assert_allclose(target, expected, rtol=1e-12, atol=1e-12)
