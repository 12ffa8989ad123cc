"""``tinylm.gradcheck`` itself: it passes right gradients and catches wrong ones."""

import numpy as np
import pytest

import tinylm
from tinylm.tensor import Function


class _WrongSquare(Function):
    """x ** 2 with a backward that is off by a factor of two: gradcheck must notice."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, g):
        return g * self.x  # should be 2 * g * x


def test_gradcheck_accepts_a_right_gradient():
    x = tinylm.randn(3, 2, dtype=tinylm.float64, requires_grad=True)
    w = tinylm.randn(2, 4, dtype=tinylm.float64, requires_grad=True)
    assert tinylm.gradcheck(lambda a, b: (a @ b).tanh(), [x, w])


def test_gradcheck_names_the_input_index_and_both_values():
    x = tinylm.tensor(np.array([[0.5, -1.0]]), requires_grad=True)
    with pytest.raises(tinylm.GradcheckError) as error:
        tinylm.gradcheck(lambda a: _WrongSquare.apply(a), [x])
    message = str(error.value)
    assert "input 0" in message and "index (0, 0)" in message
    assert "analytic" in message and "numeric" in message


def test_gradcheck_checks_every_output_of_a_tuple():
    x = tinylm.tensor(np.array([1.0, 2.0]), requires_grad=True)
    assert tinylm.gradcheck(lambda a: (a * 2, a.exp()), [x])
    with pytest.raises(tinylm.GradcheckError):
        tinylm.gradcheck(lambda a: (a * 2, _WrongSquare.apply(a)), [x])


def test_gradcheck_passes_non_differentiable_inputs_through():
    x = tinylm.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    index = tinylm.tensor([[2, 0, 0]])
    assert tinylm.gradcheck(lambda a, i: a.gather(1, i), [x, index])


def test_gradcheck_refuses_float32():
    x = tinylm.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match="input 0 is float32"):
        tinylm.gradcheck(lambda a: a * 2, [x])


def test_gradcheck_restores_inputs_and_their_grads():
    x = tinylm.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    before = x.numpy().copy()
    tinylm.gradcheck(lambda a: a.exp(), [x])
    np.testing.assert_array_equal(x.numpy(), before)
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])
