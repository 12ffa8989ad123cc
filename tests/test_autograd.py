"""Properties of the graph and the engine: accumulation, fan-out, no_grad, detach,
freeing, long chains, and what the gradients look like (shapes, dtypes, ownership)."""

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import tinylm
from tinylm.ops.conversion import Convert
from tests.coverage import covers
from tests.devices import DEVICES


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def leaf(values, device, dtype=np.float64):
    return tinylm.tensor(np.asarray(values, dtype=dtype), device=device, requires_grad=True)


def test_gradients_accumulate_until_zeroed(device):
    x = leaf([1.0, 2.0], device)
    (x * 3).sum().backward()
    (x * 4).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [7.0, 7.0])
    x.grad = None
    (x * 5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_a_tensor_used_twice_gets_the_sum_of_both_paths(device):
    x = leaf([1.5, -2.0], device)
    y = x * x + x.exp() * x  # x feeds four uses through two paths each
    y.sum().backward()
    a = np.array([1.5, -2.0])
    np.testing.assert_allclose(x.grad.numpy(), 2 * a + np.exp(a) * a + np.exp(a), rtol=1e-12)


def test_diamond_graph_delivers_each_gradient_once(device):
    x = leaf([0.3], device)
    h = x.tanh()
    y = h * 2 + h * 3  # h's node must wait for both branches before running
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 5 * (1 - np.tanh(0.3) ** 2), rtol=1e-12)


def test_broadcast_gradients_are_reduced_to_each_input_shape(device):
    a = leaf(np.ones((2, 1, 3)), device)
    b = leaf(np.ones((4, 1)), device)
    c = leaf(2.0, device)
    (a * b * c).sum().backward()
    assert a.grad.shape == (2, 1, 3) and b.grad.shape == (4, 1) and c.grad.shape == ()
    np.testing.assert_allclose(a.grad.numpy(), np.full((2, 1, 3), 8.0))
    np.testing.assert_allclose(b.grad.numpy(), np.full((4, 1), 12.0))
    np.testing.assert_allclose(c.grad.numpy(), 24.0)


def test_gradients_keep_the_leaf_dtype(device):
    x = leaf(np.ones(3), device, dtype=np.float32)
    (x * 2.5).sum().backward()
    assert x.grad.dtype == np.float32


def test_leaf_gradients_are_writable_arrays_of_their_own(device):
    a, b = leaf([1.0, 2.0], device), leaf([3.0, 4.0], device)
    (a + b).sum().backward()  # add passes one gradient array to both inputs
    a.grad.data[0] = 100.0
    assert b.grad.numpy()[0] == 1.0


def test_backward_does_not_alias_the_callers_gradient(device):
    x = leaf([1.0, 2.0], device)
    g = tinylm.tensor([1.0, 1.0], dtype=np.float64, device=device)
    (x + 0).backward(g)
    x.grad.data[0] = 9.0
    assert g.numpy()[0] == 1.0


def test_no_grad_records_nothing(device):
    x = leaf([1.0], device)
    with tinylm.no_grad():
        y = x * 2
        assert not tinylm.is_grad_enabled()
        with tinylm.enable_grad():
            z = x * 2
    assert tinylm.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None


def test_no_grad_as_a_decorator(device):
    @tinylm.no_grad()
    def double(t):
        return t * 2

    assert not double(leaf([1.0], device)).requires_grad
    assert tinylm.is_grad_enabled()


def test_detach_cuts_the_graph_and_shares_memory(device):
    x = leaf([1.0, 2.0], device)
    d = x.detach()
    assert not d.requires_grad and d.grad_fn is None
    y = (d * x).sum()  # only the x path carries a gradient
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0])
    d.data[0] = 7.0
    assert x.numpy()[0] == 7.0


def test_backward_twice_on_a_freed_graph_says_so(device):
    x = leaf([1.0], device)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_pass(device):
    x = leaf([3.0], device)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [12.0])


def test_backward_on_a_non_scalar_needs_a_gradient(device):
    x = leaf([1.0, 2.0], device)
    with pytest.raises(RuntimeError, match=r"shape \(2,\).*gradient="):
        (x * 2).backward()
    (x * 2).backward(tinylm.tensor([1.0, -1.0], device=device))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -2.0])


def test_backward_without_grad_says_why(device):
    with pytest.raises(RuntimeError, match="does not require grad"):
        tinylm.tensor([1.0], device=device).sum().backward()


def test_integer_tensors_cannot_require_grad(device):
    with pytest.raises(RuntimeError, match="floating-point"):
        tinylm.tensor([1, 2], device=device, requires_grad=True)


def test_retain_grad_keeps_an_intermediate_gradient(device):
    x = leaf([2.0], device)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), [12.0])
    np.testing.assert_allclose(x.grad.numpy(), [36.0])


def test_unused_outputs_of_a_multi_output_op_get_no_gradient(device):
    x = leaf(np.arange(6.0), device)
    first, _, third = x.split(2)
    (first * 2 + 0).sum().backward(retain_graph=False)
    np.testing.assert_allclose(x.grad.numpy(), [2, 2, 0, 0, 0, 0])


def test_a_chain_of_20000_ops_backpropagates_without_recursion(device):
    x = leaf([1.0], device)
    y = x
    for _ in range(20_000):
        y = y * 1.00001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.00001**20_000], rtol=1e-9)


def test_an_rnn_unrolled_5000_steps_backpropagates(device):
    # h_t = tanh(h_{t-1} * w + x_t): four ops a step, 20,000 in all
    tinylm.manual_seed(0)
    w = leaf([0.5], device)
    xs = tinylm.randn(5000, 1, dtype=np.float64, device=device)
    h = tinylm.zeros(1, dtype=np.float64, device=device)
    for t in range(5000):
        h = (h * w + xs[t]).tanh()
    h.sum().backward()
    assert w.grad is not None and np.isfinite(w.grad.numpy()).all()


def test_dropping_a_long_unused_graph_does_not_overflow_the_stack(device):
    x = leaf([1.0], device)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    del y  # freeing 100,000 nested nodes must not recurse in C
    gc.collect()


def test_backward_frees_saved_values_as_it_goes(device):
    x = leaf(np.ones(4), device)
    hidden = x.exp()
    watch = weakref.ref(hidden)
    loss = (hidden * 2).sum()
    del hidden
    assert watch() is not None  # kept alive by the graph
    loss.backward()
    gc.collect()
    assert watch() is None, "an intermediate stayed alive after backward used it"
    assert loss.grad_fn.inputs is None


def test_memory_does_not_grow_over_training_steps():
    tinylm.manual_seed(0)
    w = tinylm.randn(64, 64, requires_grad=True)
    x = tinylm.randn(32, 64)
    tracemalloc.start()
    try:
        usage = []
        for _ in range(50):
            w.grad = None
            loss = ((x @ w).tanh() @ w).softmax(-1).log().mean()
            loss.backward()
            with tinylm.no_grad():
                w.data -= 0.01 * w.grad.data
            usage.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert usage[-1] <= usage[4] + 64 * 1024, f"memory grew from {usage[4]} to {usage[-1]} bytes"


@covers(Convert, ops=["convert"])
def test_gradient_flows_back_through_a_dtype_conversion(device):
    x = leaf([1.0, 2.0], device)
    y = x.float()
    assert y.dtype == np.float32 and y.grad_fn is not None
    (y * tinylm.tensor([3.0, 4.0], device=device)).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 4.0])
    assert x.to(np.float64) is x  # no change, no copy


def test_an_integer_copy_leaves_the_graph(device):
    y = leaf([1.5], device).long()
    assert y.dtype == np.int64 and not y.requires_grad
