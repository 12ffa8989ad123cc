"""GELU, exact (with erf) or with the tanh approximation."""

from tinylm.kernels.registry import kernel_for
from tinylm.tensor import Function


class GeluFunction(Function):
    """x (any shape) -> x * Phi(x), Phi the standard normal CDF.

    ``approximate="tanh"`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    When a gradient will be needed the forward also returns the slope gelu'(x)
    (from the erf or tanh it evaluates anyway) and keeps it instead of x, so the
    backward is one multiplication.
    """

    def forward(self, x, approximate):
        if not self.needs_input_grad[0]:
            return kernel_for("gelu_forward", x)(x, approximate)
        y, self.slope = kernel_for("gelu_forward_with_grad", x)(x, approximate)
        return y

    def backward(self, g):
        return g * self.slope
