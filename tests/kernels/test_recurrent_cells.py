"""lstm_cell_forward/backward and gru_cell_forward/backward, checked against torch.nn.LSTMCell / GRUCell."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close, numerical_gradient, parallel_drivers


def _lstm_case(batch, hidden, dtype, seed):
    rng = np.random.default_rng(seed)
    gates = (rng.standard_normal((batch, 4 * hidden)) * 2).astype(dtype)
    c_prev, dh, dc = rng.standard_normal((3, batch, hidden)).astype(dtype)
    return gates, c_prev, dh, dc


def _lstm(backend, gates, c_prev, dh, dc):
    h, c, acts = get_kernel("lstm_cell_forward", backend)(gates, c_prev)
    return (h, c, acts) + get_kernel("lstm_cell_backward", backend)(dh, dc, acts, c_prev, c)


def _gru_case(batch, hidden, dtype, seed):
    rng = np.random.default_rng(seed)
    gi, gh = (rng.standard_normal((2, batch, 3 * hidden)) * 2).astype(dtype)
    h_prev, dh = rng.standard_normal((2, batch, hidden)).astype(dtype)
    return gi, gh, h_prev, dh


def _gru(backend, gi, gh, h_prev, dh):
    h, saved = get_kernel("gru_cell_forward", backend)(gi, gh, h_prev)
    return (h, saved) + get_kernel("gru_cell_backward", backend)(dh, saved, h_prev)


SHAPES = dict(
    batch=st.integers(1, 6),
    hidden=st.integers(1, 20),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**31),
)


@given(**SHAPES)
def test_lstm_numba_matches_reference(batch, hidden, dtype, seed):
    case = _lstm_case(batch, hidden, dtype, seed)
    for name, got, want in zip(("h", "c", "acts", "dgates", "dc_prev"), _lstm("numba", *case), _lstm("numpy", *case)):
        assert_close(got, want, scale=4, err_msg=name)


@given(**SHAPES)
def test_gru_numba_matches_reference(batch, hidden, dtype, seed):
    case = _gru_case(batch, hidden, dtype, seed)
    for name, got, want in zip(("h", "saved", "dgi", "dgh", "dh_prev"), _gru("numba", *case), _gru("numpy", *case)):
        assert_close(got, want, scale=4, err_msg=name)


def test_parallel_drivers_match_reference():
    lstm_case = _lstm_case(9, 37, np.float32, 0)
    gru_case = _gru_case(9, 37, np.float32, 0)
    expected = _lstm("numpy", *lstm_case) + _gru("numpy", *gru_case)
    with parallel_drivers() as active:
        if not active:
            pytest.skip("Numba has a single thread here")
        actual = _lstm("numba", *lstm_case) + _gru("numba", *gru_case)
    for got, want in zip(actual, expected):
        assert_close(got, want, scale=4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lstm_reference_matches_torch_lstm_cell(dtype):
    # An LSTMCell whose input weights are the identity, with no biases and no
    # recurrent weights, has exactly our `gates` as its pre-activations.
    torch = pytest.importorskip("torch")
    batch, hidden = 3, 5
    gates, c_prev, dh, dc = _lstm_case(batch, hidden, dtype, 1)
    h_prev = np.zeros((batch, hidden), dtype)
    cell = torch.nn.LSTMCell(4 * hidden, hidden).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.eye(4 * hidden))
        cell.weight_hh.zero_()
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    x = torch.tensor(gates, requires_grad=True)
    tc_prev = torch.tensor(c_prev, requires_grad=True)
    th, tc = cell(x, (torch.tensor(h_prev), tc_prev))
    ((th * torch.tensor(dh)).sum() + (tc * torch.tensor(dc)).sum()).backward()
    h, c, _, dgates, dc_prev = _lstm("numpy", gates, c_prev, dh, dc)
    assert_close(h, th.detach().numpy())
    assert_close(c, tc.detach().numpy())
    assert_close(dgates, x.grad.numpy())
    assert_close(dc_prev, tc_prev.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gru_reference_matches_torch_gru_cell(dtype):
    # Input weights the identity (so gi = x) and random recurrent weights:
    # gh = h_prev @ W_hh.T + b_hh, and torch's dh_prev = ours + dgh @ W_hh.
    torch = pytest.importorskip("torch")
    batch, hidden = 3, 4
    gi, _, h_prev, dh = _gru_case(batch, hidden, dtype, 2)
    cell = torch.nn.GRUCell(3 * hidden, hidden).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.eye(3 * hidden))
        cell.bias_ih.zero_()
    x = torch.tensor(gi, requires_grad=True)
    th_prev = torch.tensor(h_prev, requires_grad=True)
    th = cell(x, th_prev)
    (th * torch.tensor(dh)).sum().backward()
    w_hh = cell.weight_hh.detach().numpy()
    gh = h_prev @ w_hh.T + cell.bias_hh.detach().numpy()
    h, _, dgi, dgh, dh_prev = _gru("numpy", gi, gh, h_prev, dh)
    assert_close(h, th.detach().numpy())
    assert_close(dgi, x.grad.numpy())
    assert_close(dh_prev + dgh @ w_hh, th_prev.grad.numpy())
    assert_close(dgh.T @ h_prev, cell.weight_hh.grad.numpy())
    assert_close(dgh.sum(axis=0), cell.bias_hh.grad.numpy())


def test_lstm_reference_backward_matches_finite_differences():
    gates, c_prev, dh, dc = _lstm_case(2, 3, np.float64, 3)
    forward = get_kernel("lstm_cell_forward", "numpy")
    _, _, _, dgates, dc_prev = _lstm("numpy", gates, c_prev, dh, dc)

    def loss_terms(g, cp):  # sum(dh * h) + sum(dc * c) as one array against weights 1
        h, c, _ = forward(g, cp)
        return dh * h + dc * c

    for index, analytic in ((0, dgates), (1, dc_prev)):
        numeric = numerical_gradient(loss_terms, [gates, c_prev], index, 1.0)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_gru_reference_backward_matches_finite_differences():
    gi, gh, h_prev, dh = _gru_case(2, 3, np.float64, 4)
    forward = get_kernel("gru_cell_forward", "numpy")
    _, _, dgi, dgh, dh_prev = _gru("numpy", gi, gh, h_prev, dh)
    for index, analytic in ((0, dgi), (1, dgh), (2, dh_prev)):
        numeric = numerical_gradient(lambda a, b, c: forward(a, b, c)[0], [gi, gh, h_prev], index, dh)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


@given(**SHAPES, with_input=st.booleans(), with_bias=st.booleans())
def test_lstm_addends_are_the_sum(batch, hidden, dtype, seed, with_input, with_bias):
    # Pre-activations given in parts (recurrent product, input projection,
    # bias) give what their sum, given whole, gives.
    gates, c_prev, _, _ = _lstm_case(batch, hidden, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    input_gates = rng.standard_normal(gates.shape).astype(dtype) if with_input else None
    bias = rng.standard_normal(gates.shape[1]).astype(dtype) if with_bias else None
    whole = gates + (0 if input_gates is None else input_gates) + (0 if bias is None else bias)
    expected = get_kernel("lstm_cell_forward", "numpy")(whole, c_prev)
    for backend in ("numpy", "numba"):
        got = get_kernel("lstm_cell_forward", backend)(gates, c_prev, input_gates, bias)
        for name, a, b in zip(("h", "c", "acts"), got, expected):
            assert_close(a, b, scale=4, err_msg=f"{backend} {name}")


@given(**SHAPES, with_input=st.booleans(), with_hidden=st.booleans())
def test_gru_biases_given_apart_are_added(batch, hidden, dtype, seed, with_input, with_hidden):
    gi, gh, h_prev, _ = _gru_case(batch, hidden, dtype, seed)
    rng = np.random.default_rng(seed + 1)
    b_ih = rng.standard_normal(3 * hidden).astype(dtype) if with_input else None
    b_hh = rng.standard_normal(3 * hidden).astype(dtype) if with_hidden else None
    expected = get_kernel("gru_cell_forward", "numpy")(
        gi + (0 if b_ih is None else b_ih), gh + (0 if b_hh is None else b_hh), h_prev)
    for backend in ("numpy", "numba"):
        got = get_kernel("gru_cell_forward", backend)(gi, gh, h_prev, b_ih, b_hh)
        for name, a, b in zip(("h", "saved"), got, expected):
            assert_close(a, b, scale=4, err_msg=f"{backend} {name}")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backward_writes_into_given_arrays(backend):
    # The recurrent ops pass one step of their (T, B, G*H) gradient arrays.
    gates, c_prev, dh, dc = _lstm_case(3, 4, np.float64, 5)
    h, c, acts = get_kernel("lstm_cell_forward", backend)(gates, c_prev)
    steps = np.full((2, 3, 16), np.nan)
    dgates, dc_prev = get_kernel("lstm_cell_backward", backend)(dh, dc, acts, c_prev, c, dgates=steps[1])
    assert np.shares_memory(dgates, steps) and not np.isnan(steps[1]).any() and np.isnan(steps[0]).all()
    expected = get_kernel("lstm_cell_backward", "numpy")(dh, dc, acts, c_prev, c)
    assert_close(dgates, expected[0])
    assert_close(dc_prev, expected[1])

    gi, gh, h_prev, dh = _gru_case(3, 4, np.float64, 6)
    _, saved = get_kernel("gru_cell_forward", backend)(gi, gh, h_prev)
    dgi_steps, dgh_steps = np.full((2, 2, 3, 12), np.nan)
    got = get_kernel("gru_cell_backward", backend)(dh, saved, h_prev, dgi=dgi_steps[0], dgh=dgh_steps[1])
    assert np.shares_memory(got[0], dgi_steps) and np.shares_memory(got[1], dgh_steps)
    for a, b in zip(got, get_kernel("gru_cell_backward", "numpy")(dh, saved, h_prev)):
        assert_close(a, b)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_output_arrays_are_reported(backend):
    gates, c_prev, dh, dc = _lstm_case(3, 4, np.float64, 5)
    h, c, acts = get_kernel("lstm_cell_forward", backend)(gates, c_prev)
    backward = get_kernel("lstm_cell_backward", backend)
    with pytest.raises(ValueError, match=r"lstm_cell_backward: dgates must have shape \(3, 16\), got \(3, 12\)"):
        backward(dh, dc, acts, c_prev, c, dgates=np.empty((3, 12)))
    with pytest.raises(TypeError, match="lstm_cell_backward: dgates must be float64"):
        backward(dh, dc, acts, c_prev, c, dgates=np.empty((3, 16), np.float32))
    with pytest.raises(ValueError, match="lstm_cell_backward: dgates must be C-contiguous"):
        backward(dh, dc, acts, c_prev, c, dgates=np.empty((16, 3)).T)
    gi, gh, h_prev, dh = _gru_case(3, 4, np.float64, 6)
    _, saved = get_kernel("gru_cell_forward", backend)(gi, gh, h_prev)
    with pytest.raises(ValueError, match="gru_cell_backward: dgh must have shape"):
        get_kernel("gru_cell_backward", backend)(dh, saved, h_prev, dgh=np.empty((3, 4)))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_bad_arguments_are_reported(backend):
    with pytest.raises(ValueError, match=r"lstm_cell_forward: gates must have shape \(B, 4H\)"):
        get_kernel("lstm_cell_forward", backend)(np.zeros((2, 7)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="gru_cell_forward: gh must have shape"):
        get_kernel("gru_cell_forward", backend)(np.zeros((2, 6)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"lstm_cell_forward: input_gates must have shape \(2, 8\), got \(2, 4\)"):
        get_kernel("lstm_cell_forward", backend)(np.zeros((2, 8)), np.zeros((2, 2)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"lstm_cell_forward: bias must have shape \(8,\), got \(2, 8\)"):
        get_kernel("lstm_cell_forward", backend)(np.zeros((2, 8)), np.zeros((2, 2)), None, np.zeros((2, 8)))
    with pytest.raises(TypeError, match="gru_cell_forward: hidden_bias must be float64"):
        get_kernel("gru_cell_forward", backend)(
            np.zeros((2, 6)), np.zeros((2, 6)), np.zeros((2, 2)), None, np.zeros(6, np.float32))
