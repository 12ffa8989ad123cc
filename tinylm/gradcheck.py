"""Check analytic gradients against central finite differences, in float64.

For outputs ``y = fn(*inputs)`` the check draws a fixed random direction ``v``
of ``y``'s shape and compares, for every element ``x[k]`` of every input that
requires grad,

    analytic:  d(sum(v * y)) / d x[k]              (one backward pass)
    numeric:   sum(v * (y(x[k] + eps) - y(x[k] - eps))) / (2 eps)

A random ``v`` exercises every output at once; a wrong Jacobian entry would
have to be cancelled exactly by another to escape, which a random direction
makes (almost surely) impossible.
"""

import numpy as np

from tinylm import backend
from tinylm.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with the finite-difference estimate."""


def _as_outputs(result):
    outputs = result if isinstance(result, (tuple, list)) else (result,)
    return [out for out in outputs if isinstance(out, Tensor) and out.dtype.kind == "f"]


def _projected(outputs, directions):
    """sum(v * y) over all outputs, as a tensor to call backward on."""
    return sum((out * direction).sum() for out, direction in zip(outputs, directions))


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Return True if ``fn``'s gradients match finite differences; raise ``GradcheckError`` if not.

    ``inputs`` is a tensor or a sequence of tensors passed to ``fn`` in order;
    those with ``requires_grad`` are checked and must be float64 (tensors that
    do not require grad, such as integer indices, are passed through as they
    are). ``fn`` returns a tensor or a tuple of tensors. Each element passes
    when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 "
                "(use .double())"
            )

    outputs = _as_outputs(fn(*inputs))
    if not outputs:
        raise ValueError("gradcheck: fn returned no floating-point tensor")
    rng = np.random.default_rng(seed)
    directions = [
        Tensor(backend.to_device(rng.standard_normal(out.shape), out.device).astype(out.dtype))
        for out in outputs
    ]

    saved_grads = [inputs[i].grad for i in checked]
    for i in checked:
        inputs[i].grad = None
    try:
        loss = _projected(outputs, directions)
        if loss.requires_grad:
            loss.backward()
        analytic = [
            np.zeros(inputs[i].shape) if inputs[i].grad is None else inputs[i].grad.numpy().copy()
            for i in checked
        ]
    finally:
        for i, grad in zip(checked, saved_grads):
            inputs[i].grad = grad

    numpy_directions = [d.numpy() for d in directions]

    def evaluate():
        with no_grad():
            return [out.numpy().copy() for out in _as_outputs(fn(*inputs))]

    def numeric_derivative(plus, minus):
        # Difference the outputs elementwise before projecting: outputs that do not
        # move (a masked -1e9, say) then cancel exactly instead of drowning the change.
        total = sum(float((v * (p - m)).sum()) for v, p, m in zip(numpy_directions, plus, minus))
        return total / (2 * eps)

    for position, i in enumerate(checked):
        data = inputs[i].data  # perturbed in place, so fn sees the change wherever it holds it
        for index in np.ndindex(data.shape):
            original = data[index].item()
            data[index] = original + eps
            plus = evaluate()
            data[index] = original - eps
            minus = evaluate()
            data[index] = original
            numeric = numeric_derivative(plus, minus)
            exact = float(analytic[position][index])
            if not abs(exact - numeric) <= atol + rtol * abs(numeric):
                raise GradcheckError(
                    f"gradcheck: gradient of input {i} (shape {tuple(data.shape)}) at index "
                    f"{tuple(int(n) for n in index)} is wrong: analytic {exact!r}, numeric "
                    f"{numeric!r} (atol={atol}, rtol={rtol})"
                )
    return True
