"""The @cuda.jit kernels against the NumPy reference, on tiny inputs.

Without a GPU they run under Numba's CUDA simulator (tests/conftest.py turns it
on), which runs every GPU thread as a Python thread: slow, so the shapes here
are a few elements and each kernel runs once or twice. With CuPy and a GPU the
same tests run for real, moving the inputs to the device and the outputs back.
"""

import numpy as np
import pytest

from tinylm import backend
from tinylm.kernels import get_kernel
from tinylm.kernels.testing import assert_close

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")


def _device(array):
    return backend.to_device(array, "cuda") if backend.cuda_is_available() else array


def _host(value):
    if value is None or np.isscalar(value):
        return value
    return backend.to_numpy(value)


def _compare(name, args, kwargs=None, updated=None, scale=1.0):
    """Run kernel ``name`` on the reference and on CUDA and compare every output.

    ``updated`` lists the indices of arguments changed in place (for adamw_update).
    """
    kwargs = kwargs or {}
    host_args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    device_args = [_device(a.copy()) if isinstance(a, np.ndarray) else a for a in args]
    expected = get_kernel(name, "numpy")(*host_args, **kwargs)
    actual = get_kernel(name, "cuda")(*device_args, **kwargs)
    if updated is not None:
        expected = [host_args[i] for i in updated]
        actual = [device_args[i] for i in updated]
    if not isinstance(expected, (tuple, list)):
        expected, actual = [expected], [actual]
    for index, (got, want) in enumerate(zip(actual, expected)):
        if want is None:
            assert got is None
        else:
            assert_close(_host(got), want, scale=scale, err_msg=f"{name} output {index}")


def _rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy(dtype):
    rng = _rng(1)
    logits = (rng.standard_normal((3, 5)) * 2).astype(dtype)
    targets = np.array([4, -100, 0])
    _compare("cross_entropy_forward", (logits, targets, -100, 0.1))
    _, lse = get_kernel("cross_entropy_forward", "numpy")(logits, targets, -100, 0.1)
    _compare("cross_entropy_backward", (rng.standard_normal(3).astype(dtype), logits, targets, lse, -100, 0.1))


def test_layernorm():
    rng = _rng(2)
    x, dy = rng.standard_normal((2, 3, 6)).astype(np.float32)
    weight, bias = rng.standard_normal((2, 6)).astype(np.float32)
    _compare("layernorm_forward", (x, weight, bias, 1e-5))
    _compare("layernorm_forward", (x, None, None, 1e-5))
    _, mean, rstd = get_kernel("layernorm_forward", "numpy")(x, weight, bias, 1e-5)
    _compare("layernorm_backward", (dy, x, weight, mean, rstd), scale=10)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    rng = _rng(3)
    x, dy = (rng.standard_normal((2, 2, 5)) * 3).astype(np.float64)
    bias = rng.standard_normal(5)
    _compare("gelu_forward", (x, approximate))
    _compare("gelu_backward", (dy, x, approximate))
    _compare("gelu_forward_with_grad", (x, approximate))
    _compare("bias_gelu_forward", (x, bias, approximate))
    _compare("bias_gelu_backward", (dy, x, bias, approximate))


def test_attention_softmax():
    rng = _rng(4)
    scores, dprobs = rng.standard_normal((2, 1, 2, 3, 5)).astype(np.float32)
    _compare("attention_softmax_forward", (scores, 0.5, True))
    _compare("attention_softmax_forward", (scores, 0.5, False))
    probs = get_kernel("attention_softmax_forward", "numpy")(scores, 0.5, True)
    _compare("attention_softmax_backward", (dprobs, probs, 0.5))


def test_causal_attention():
    rng = _rng(12)
    qkv = rng.standard_normal((2, 3, 12)).astype(np.float32)  # 2 heads of size 2
    g = rng.standard_normal((2, 3, 4)).astype(np.float32)
    _compare("causal_attention_forward", (qkv, 2, 0.7))
    _, probs = get_kernel("causal_attention_forward", "numpy")(qkv, 2, 0.7)
    _compare("causal_attention_backward", (g, qkv, probs, 2, 0.7))


def test_lstm_and_gru_cells():
    rng = _rng(5)
    gates = (rng.standard_normal((2, 8)) * 2).astype(np.float32)
    c_prev, dh, dc = rng.standard_normal((3, 2, 2)).astype(np.float32)
    input_gates = rng.standard_normal((2, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    _compare("lstm_cell_forward", (gates, c_prev))
    _compare("lstm_cell_forward", (gates, c_prev, input_gates, bias))
    _, c, acts = get_kernel("lstm_cell_forward", "numpy")(gates, c_prev)
    _compare("lstm_cell_backward", (dh, dc, acts, c_prev, c))
    gi, gh = (rng.standard_normal((2, 2, 6)) * 2).astype(np.float32)
    input_bias, hidden_bias = rng.standard_normal((2, 6)).astype(np.float32)
    _compare("gru_cell_forward", (gi, gh, c_prev))
    _compare("gru_cell_forward", (gi, gh, c_prev, input_bias, hidden_bias))
    _, saved = get_kernel("gru_cell_forward", "numpy")(gi, gh, c_prev)
    _compare("gru_cell_backward", (dh, saved, c_prev))


def test_lstm_sequence():
    """The CUDA loop (CuPy's matmul between CUDA cells) on 2 steps, both directions."""
    rng = _rng(8)
    pre_x = (rng.standard_normal((2, 2, 8)) * 2).astype(np.float32)
    w_hh = rng.standard_normal((8, 2)).astype(np.float32)
    h0, c0, g_h, g_c = rng.standard_normal((4, 2, 2)).astype(np.float32)
    g_out = rng.standard_normal((2, 2, 2)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    for reverse in (False, True):
        _compare("lstm_sequence_forward", (pre_x, w_hh, h0, c0, bias), {"reverse": reverse})
        _, cells, acts = get_kernel("lstm_sequence_forward", "numpy")(pre_x, w_hh, h0, c0, bias, reverse=reverse)
        _compare("lstm_sequence_backward", (g_out, g_h, g_c, w_hh, c0, cells, acts), {"reverse": reverse})


def test_gru_sequence():
    """The CUDA loop (CuPy's matmul between CUDA cells) on 2 steps, both directions."""
    rng = _rng(9)
    gi = (rng.standard_normal((2, 2, 6)) * 2).astype(np.float32)
    w_hh = rng.standard_normal((6, 2)).astype(np.float32)
    h0, g_h = rng.standard_normal((2, 2, 2)).astype(np.float32)
    g_out = rng.standard_normal((2, 2, 2)).astype(np.float32)
    b_ih, b_hh = rng.standard_normal((2, 6)).astype(np.float32)
    for reverse in (False, True):
        _compare("gru_sequence_forward", (gi, w_hh, h0, b_ih, b_hh), {"reverse": reverse})
        out, saved = get_kernel("gru_sequence_forward", "numpy")(gi, w_hh, h0, b_ih, b_hh, reverse=reverse)
        _compare("gru_sequence_backward", (g_out, g_h, w_hh, h0, out, saved), {"reverse": reverse})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_backward(dtype):
    rng = _rng(8)
    g_rows = rng.standard_normal((6, 3)).astype(dtype)
    _compare("embedding_backward", (g_rows, np.array([2, 0, 2, 3, 0, 2]), 5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_update(dtype):
    rng = _rng(6)
    param, grad, m = rng.standard_normal((3, 7)).astype(dtype)
    v = rng.random(7).astype(dtype)
    settings = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, step=4)
    _compare("adamw_update", (param, grad, m, v), settings, updated=[0, 2, 3])

