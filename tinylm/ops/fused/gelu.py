"""GELU, exact (with erf) or with the tanh approximation."""

from tinylm.kernels.registry import kernel_for
from tinylm.tensor import Function


class GeluFunction(Function):
    """x (any shape) -> x * Phi(x), Phi the standard normal CDF.

    ``approximate="tanh"`` uses 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    """

    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        return kernel_for("gelu_forward", x)(x, self.approximate)

    def backward(self, g):
        return kernel_for("gelu_backward", g)(g, self.x, self.approximate)
