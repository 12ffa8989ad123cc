"""lstm_sequence_* and gru_sequence_*: the compiled loops against the NumPy loops, and
the BLAS call they are built on (kernels/blas.py) against NumPy's matmul."""

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.kernels import blas, get_kernel
from tinylm.kernels._common import step_chunk_count
from tinylm.kernels.testing import assert_close, parallel_drivers

NAMES = ("out", "cells", "acts", "dgates", "dh0", "dc0")
GRU_NAMES = ("out", "saved", "dgi", "dgh", "dh0")


def _drawer(seed, dtype):
    rng = np.random.default_rng(seed)

    def draw(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    return draw


def _case(length, batch, hidden, dtype, seed, with_bias, with_grads):
    """Inputs of the LSTM kernels: forward's keyword arguments, then the gradients'."""
    draw = _drawer(seed, dtype)
    forward = dict(
        pre_x=draw(length, batch, 4 * hidden, scale=2),
        w_hh=draw(4 * hidden, hidden, scale=1 / np.sqrt(hidden)),
        h0=draw(batch, hidden),
        c0=draw(batch, hidden),
        bias=draw(4 * hidden) if with_bias else None,
    )
    grads = dict(
        g_out=draw(length, batch, hidden) if with_grads[0] else None,
        g_h=draw(batch, hidden) if with_grads[1] else None,
        g_c=draw(batch, hidden) if with_grads[2] else None,
    )
    return forward, grads


def _run(backend, forward, grads, reverse):
    arrays = dict(forward, pre_x=forward["pre_x"].copy())  # the Numba version adds into pre_x
    out, cells, acts = get_kernel("lstm_sequence_forward", backend)(**arrays, reverse=reverse)
    backward = get_kernel("lstm_sequence_backward", backend)
    dgates, dh0, dc0 = backward(**grads, w_hh=forward["w_hh"], c0=forward["c0"], cells=cells, acts=acts,
                                reverse=reverse)
    return out, cells, acts, dgates, dh0, dc0


CASES = dict(
    length=st.integers(1, 6),
    batch=st.integers(1, 4),
    hidden=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**31),
    with_bias=st.booleans(),
    with_grads=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    reverse=st.booleans(),
)


@given(**CASES)
def test_lstm_numba_matches_reference(length, batch, hidden, dtype, seed, with_bias, with_grads, reverse):
    forward, grads = _case(length, batch, hidden, dtype, seed, with_bias, with_grads)
    expected = _run("numpy", forward, grads, reverse)
    for name, got, want in zip(NAMES, _run("numba", forward, grads, reverse), expected):
        assert_close(got, want, scale=4, err_msg=name)


def _gru_case(length, batch, hidden, dtype, seed, with_bias, with_grads):
    """Inputs of the GRU kernels (with_grads: whether g_out and g_h are given)."""
    draw = _drawer(seed, dtype)
    forward = dict(
        gi=draw(length, batch, 3 * hidden, scale=2),
        w_hh=draw(3 * hidden, hidden, scale=1 / np.sqrt(hidden)),
        h0=draw(batch, hidden),
        b_ih=draw(3 * hidden) if with_bias else None,
        b_hh=draw(3 * hidden) if with_bias else None,
    )
    grads = dict(g_out=draw(length, batch, hidden) if with_grads[0] else None,
                 g_h=draw(batch, hidden) if with_grads[1] else None)
    return forward, grads


def _run_gru(backend, forward, grads, reverse):
    out, saved = get_kernel("gru_sequence_forward", backend)(**forward, reverse=reverse)
    backward = get_kernel("gru_sequence_backward", backend)
    dgi, dgh, dh0 = backward(**grads, w_hh=forward["w_hh"], h0=forward["h0"], out=out, saved=saved, reverse=reverse)
    return out, saved, dgi, dgh, dh0


@given(**CASES)
def test_gru_numba_matches_reference(length, batch, hidden, dtype, seed, with_bias, with_grads, reverse):
    forward, grads = _gru_case(length, batch, hidden, dtype, seed, with_bias, with_grads)
    expected = _run_gru("numpy", forward, grads, reverse)
    for name, got, want in zip(GRU_NAMES, _run_gru("numba", forward, grads, reverse), expected):
        assert_close(got, want, scale=4, err_msg=name)


@settings(max_examples=25)
@given(**CASES)
def test_numba_cells_split_between_threads_match_reference(length, batch, hidden, dtype, seed, with_bias,
                                                          with_grads, reverse):
    """Every step's cell with its rows split between the threads (as where the threads spin)."""
    forward, grads = _case(length, batch, hidden, dtype, seed, with_bias, with_grads)
    gru_forward, gru_grads = _gru_case(length, batch, hidden, dtype, seed, with_bias, with_grads[:2])
    expected = _run("numpy", forward, grads, reverse)
    gru_expected = _run_gru("numpy", gru_forward, gru_grads, reverse)
    with parallel_drivers() as parallel:
        if not parallel:
            pytest.skip("Numba has one thread here")
        assert step_chunk_count(batch) == min(batch, numba.get_num_threads())
        got = _run("numba", forward, grads, reverse)
        gru_got = _run_gru("numba", gru_forward, gru_grads, reverse)
    for name, actual, want in zip(NAMES, got, expected):
        assert_close(actual, want, scale=4, err_msg=name)
    for name, actual, want in zip(GRU_NAMES, gru_got, gru_expected):
        assert_close(actual, want, scale=4, err_msg=name)


def test_gru_reference_is_the_cell_applied_step_by_step():
    forward, grads = _gru_case(3, 2, 4, np.float64, 5, True, (True, True, False))
    out, saved, dgi, dgh, dh0 = _run_gru("numpy", forward, grads, reverse=False)
    cell = get_kernel("gru_cell_forward", "numpy")
    cell_backward = get_kernel("gru_cell_backward", "numpy")
    h, previous = forward["h0"], []
    for t in range(3):
        previous.append(h)
        h, step_saved = cell(forward["gi"][t], h @ forward["w_hh"].T, h, forward["b_ih"], forward["b_hh"])
        assert_close(out[t], h, err_msg=f"h at step {t}")
        assert_close(saved[t], step_saved, err_msg=f"saved at step {t}")
    dh = grads["g_h"]
    for t in (2, 1, 0):
        step_dgi, step_dgh, direct = cell_backward(dh + grads["g_out"][t], saved[t], previous[t])
        assert_close(dgi[t], step_dgi, err_msg=f"dgi at step {t}")
        assert_close(dgh[t], step_dgh, err_msg=f"dgh at step {t}")
        dh = step_dgh @ forward["w_hh"] + direct
    assert_close(dh0, dh, err_msg="dh0")


def test_lstm_reference_is_the_cell_applied_step_by_step():
    """The reference loop against the cell kernel, called by hand for each step in turn."""
    forward, grads = _case(4, 3, 5, np.float64, 7, True, (True, True, True))
    out, cells, acts, dgates, dh0, dc0 = _run("numpy", forward, grads, reverse=True)
    cell = get_kernel("lstm_cell_forward", "numpy")
    cell_backward = get_kernel("lstm_cell_backward", "numpy")
    h, c = forward["h0"], forward["c0"]
    states = {}
    for t in (3, 2, 1, 0):  # reverse: the last step first
        states[t] = (h, c)
        h, c, act = cell(h @ forward["w_hh"].T, c, forward["pre_x"][t], forward["bias"])
        assert_close(out[t], h, err_msg=f"h at step {t}")
        assert_close(acts[t], act, err_msg=f"acts at step {t}")
    dh, dc = grads["g_h"], grads["g_c"]
    for t in (0, 1, 2, 3):
        dgate, dc = cell_backward(dh + grads["g_out"][t], dc, acts[t], states[t][1], cells[t])
        assert_close(dgates[t], dgate, err_msg=f"dgates at step {t}")
        dh = dgate @ forward["w_hh"]
    assert_close(dh0, dh, err_msg="dh0")
    assert_close(dc0, dc, err_msg="dc0")


def test_without_openblas_the_numba_version_loops_in_python():
    """Where NumPy has no OpenBLAS (MKL, Accelerate), the same results come from NumPy's
    matmul between the Numba cells."""
    forward, grads = _case(3, 2, 4, np.float64, 3, True, (True, False, True))
    gru_forward, gru_grads = _gru_case(3, 2, 4, np.float64, 3, True, (True, False))
    with blas.pretend_no_openblas():
        assert blas.find_gemm(np.float64) is None
        lstm_results = _run("numba", forward, grads, False)
        gru_results = _run_gru("numba", gru_forward, gru_grads, True)
    assert blas.find_gemm(np.float64) is not None  # found again after the block
    for name, got, want in zip(NAMES, lstm_results, _run("numpy", forward, grads, False)):
        assert_close(got, want, err_msg=name)
    for name, got, want in zip(GRU_NAMES, gru_results, _run_gru("numpy", gru_forward, gru_grads, True)):
        assert_close(got, want, err_msg=name)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_shapes_are_refused_with_names(backend):
    forward, grads = _case(2, 3, 4, np.float32, 0, True, (True, True, True))
    run = get_kernel("lstm_sequence_forward", backend)
    with pytest.raises(ValueError, match=r"w_hh must have shape \(16, 4\)"):
        run(**dict(forward, w_hh=forward["w_hh"][:, :3]))
    with pytest.raises(ValueError, match="pre_x must have shape"):
        run(**dict(forward, pre_x=forward["pre_x"][..., :15]))
    with pytest.raises(TypeError, match="c0 must be float32"):
        run(**dict(forward, c0=forward["c0"].astype(np.float64)))
    out, cells, acts = run(**dict(forward, pre_x=forward["pre_x"].copy()))
    with pytest.raises(ValueError, match=r"g_out must have shape \(2, 3, 4\)"):
        get_kernel("lstm_sequence_backward", backend)(
            grads["g_out"][:1], None, None, forward["w_hh"], forward["c0"], cells, acts)
    forward, grads = _gru_case(2, 3, 4, np.float32, 0, True, (True, True))
    run = get_kernel("gru_sequence_forward", backend)
    with pytest.raises(ValueError, match=r"gi must have shape \(T, B, 3H\)"):
        run(**dict(forward, gi=forward["gi"][..., :10]))
    with pytest.raises(ValueError, match=r"b_hh must have shape \(12,\)"):
        run(**dict(forward, b_hh=forward["b_hh"][:4]))
    out, saved = run(**forward)
    with pytest.raises(ValueError, match=r"h0 must have shape \(3, 4\)"):
        get_kernel("gru_sequence_backward", backend)(None, None, forward["w_hh"], forward["h0"][:2], out, saved)


# --------------------------------------------------------------------------- blas.gemm_into


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_gemm_into_views_of_larger_arrays(dtype, beta):
    """Row strides of views become leading dimensions; c outside the view is untouched."""
    rng = np.random.default_rng(0)
    found = blas.find_gemm(dtype)
    assert found is not None  # the project's NumPy wheels bundle OpenBLAS
    big_a = rng.standard_normal((6, 11)).astype(dtype)
    b = rng.standard_normal((7, 5)).astype(dtype)
    c = rng.standard_normal((9, 8)).astype(dtype)
    a_view, c_view = big_a[1:5, 2:9], c[3:7, 1:6]
    expected = c.copy()
    expected[3:7, 1:6] = a_view @ b + dtype(beta) * c[3:7, 1:6]
    blas.gemm_into(*found, a_view, b, c_view, beta)
    np.testing.assert_allclose(c, expected, rtol=1e-5 if dtype == np.float32 else 1e-13)


def test_gemm_into_single_rows_with_any_stride():
    """NumPy may give a length-1 axis any stride; BLAS still gets a valid leading dimension."""
    found = blas.find_gemm(np.float64)
    a = np.arange(3.0).reshape(3, 1).T  # (1, 3), C-contiguous, row stride 8 bytes
    b = np.arange(12.0).reshape(3, 4)
    c = np.zeros((4, 1)).T  # (1, 4) with row stride 8 bytes
    blas.gemm_into(*found, a, b, c, 0.0)
    np.testing.assert_array_equal(c, a @ b)


def test_gemm_into_refuses_mismatched_shapes_and_strided_rows():
    found = blas.find_gemm(np.float64)
    a, b = np.ones((2, 3)), np.ones((4, 5))
    with pytest.raises(ValueError, match="shapes do not match"):
        blas.gemm_into(*found, a, b, np.zeros((2, 5)), 0.0)
    with pytest.raises(ValueError, match="rows of every matrix must be contiguous"):
        blas.gemm_into(*found, np.ones((2, 6))[:, ::2], np.ones((3, 5)), np.zeros((2, 5)), 0.0)


def test_find_gemm_only_for_float32_and_float64():
    assert blas.find_gemm(np.float16) is None
    assert blas.find_gemm(np.int64) is None
    address, blas_int = blas.find_gemm(np.float32)
    assert address > 0 and np.dtype(type(blas_int)) in (np.dtype(np.int32), np.dtype(np.int64))
