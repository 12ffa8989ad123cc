"""embedding_backward: row gradients summed into the table rows their ids picked."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close


def _case(rows, width, vocab, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, width)).astype(dtype), rng.integers(0, vocab, rows)


CASES = dict(
    rows=st.integers(0, 40),
    width=st.integers(1, 9),
    vocab=st.integers(1, 6),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**31),
)


@given(**CASES)
def test_numba_matches_reference(rows, width, vocab, dtype, seed):
    g_rows, ids = _case(rows, width, vocab, dtype, seed)
    expected = get_kernel("embedding_backward", "numpy")(g_rows, ids, vocab)
    got = get_kernel("embedding_backward", "numba")(g_rows, ids, vocab)
    assert got.shape == (vocab, width) and got.dtype == dtype
    assert_close(got, expected)


def test_reference_is_the_sum_of_the_rows_of_each_id():
    g_rows, ids = _case(30, 4, 5, np.float64, 3)
    ids[ids == 2] = 1  # so that one table row gets no gradient at all
    grad = get_kernel("embedding_backward", "numpy")(g_rows, ids, 5)
    for v in range(5):
        assert_close(grad[v], g_rows[ids == v].sum(axis=0), err_msg=f"row {v}")
    assert not grad[2].any()


def test_strided_rows_and_ids_are_read_as_given():
    g_rows, ids = _case(12, 6, 4, np.float32, 5)
    expected = get_kernel("embedding_backward", "numpy")(g_rows[::2, 1:4], ids[::2], 4)
    assert_close(get_kernel("embedding_backward", "numba")(g_rows[::2, 1:4], ids[::2], 4), expected)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_input_is_refused_naming_it(backend):
    run = get_kernel("embedding_backward", backend)
    g_rows, ids = _case(5, 3, 4, np.float32, 0)
    with pytest.raises(IndexError, match=r"id 4 is out of range for a table of 4 rows \(expected 0 to 3\)"):
        run(g_rows, np.array([0, 1, 4, 2, 3]), 4)
    with pytest.raises(IndexError, match="id -1 is out of range"):
        run(g_rows, np.array([0, -1, 1, 2, 3]), 4)
    with pytest.raises(ValueError, match="ids has 4 entries but g_rows has 5 rows"):
        run(g_rows, ids[:4], 4)
    with pytest.raises(TypeError, match="ids must be a 1-d integer array, got float64"):
        run(g_rows, ids.astype(np.float64), 4)
    with pytest.raises(TypeError, match="g_rows must be float32 or float64"):
        run(g_rows.astype(np.int32), ids, 4)
