"""In-place operations: ``fill_``, ``zero_``, ``copy_``, ``masked_fill_``, ``add_``, ``sub_``,
``mul_``, ``div_``, ``clamp_``, the random fills ``uniform_`` and ``normal_``, and the ``+=`` family.

tinylm records no in-place op in the graph. So an in-place op runs only where
no gradient could pass through it:

- under ``no_grad()``, on any tensor (an optimizer's update of its parameters);
- with grad mode on, on a tensor that does not require grad, given values that
  do not require grad either.

Elsewhere it raises: on a leaf that requires grad, PyTorch's own error; on a
tensor inside the graph (one with a ``grad_fn``), an error that says to use the
out-of-place op. ``x += y`` is the exception: where ``x.add_(y)`` would be
refused, it computes ``x + y`` and rebinds the name, which gives the same
values and gradients to the code that uses ``x`` afterwards.

Every change bumps the version of the memory written (``tensor._mark_changed``);
a node whose saved values were changed after it was recorded raises in
backward instead of computing a wrong gradient, as PyTorch does.

Each op computes its result out of place with the ordinary op (so dtypes and
broadcasting follow the same rules) and writes it into the tensor's array;
the result must keep the tensor's shape, and its dtype must be one PyTorch
would cast to the tensor's (no float into an integer tensor, nothing but bool
into a bool one).
"""

from tinylm import backend, random
from tinylm.backend import array_module
from tinylm.ops.elementwise import add, clamp, div, mul, sub
from tinylm.ops.indexing import masked_fill
from tinylm.tensor import Tensor, _mark_changed, is_grad_enabled, no_grad


def _requires_grad(value):
    return isinstance(value, Tensor) and value.requires_grad


def _check(x, op, *others):
    """Raise unless an in-place ``op`` on ``x`` (given ``others``) is outside the graph."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if not is_grad_enabled():
        return
    if x.requires_grad and x.grad_fn is None:
        raise RuntimeError(
            f"{op}: a leaf Variable that requires grad is being used in an in-place operation. "
            "Update parameters inside `with tinylm.no_grad():`, as an optimizer step does"
        )
    if x.requires_grad:
        raise RuntimeError(
            f"{op}: in-place operations on a tensor inside the autograd graph (grad_fn="
            f"{x.grad_fn!r}) are not supported by tinylm; use the out-of-place {op.rstrip('_')}() "
            "and the tensor it returns"
        )
    if any(_requires_grad(other) for other in others):
        raise RuntimeError(
            f"{op}: the values written require grad, and tinylm does not record in-place operations; "
            f"use the out-of-place {op.rstrip('_')}() (or `x = x + y` rather than x.add_(y))"
        )


def _can_cast(source, target):
    """PyTorch's ``can_cast``: no floating value into an integer or bool tensor, no non-bool into bool."""
    if source.kind in "fc" and target.kind not in "fc":
        return False
    if source.kind == "c" and target.kind != "c":
        return False
    return not (target.kind == "b" and source.kind != "b")


def _write(x, result, op):
    """Copy ``result`` (a tensor) into ``x``'s array; it must fit ``x``'s shape and dtype."""
    if result.shape != x.shape:
        raise RuntimeError(
            f"{op}: the result has shape {tuple(result.shape)}, which does not match the tensor's shape "
            f"{tuple(x.shape)} (an in-place op cannot change a tensor's shape)"
        )
    if not _can_cast(result.dtype, x.dtype):
        raise RuntimeError(f"{op}: result type {result.dtype} can't be cast to the tensor's dtype {x.dtype}")
    _store(x, lambda data: array_module(data).copyto(data, result.data, casting="unsafe"), op)
    return x


def _store(x, write, op):
    try:
        write(x.data)
    except ValueError as error:  # a read-only array: an expanded (broadcast) tensor
        raise RuntimeError(f"{op}: cannot write into this tensor ({error}); write into a clone() instead") from None
    _mark_changed(x.data)


def _out_of_place(function, *args):
    with no_grad():
        return function(*args)


def fill_(x, value):
    """Set every element of ``x`` to ``value`` (a number or a one-element tensor)."""
    _check(x, "fill_", value)
    if isinstance(value, Tensor):
        if value.data.size != 1:
            raise RuntimeError(
                f"fill_: the value must be a number or a one-element tensor, got shape {tuple(value.shape)}"
            )
        value = value.item()
    _store(x, lambda data: data.fill(value), "fill_")
    return x


def zero_(x):
    """Set every element of ``x`` to 0."""
    return fill_(x, 0)


def copy_(x, src):
    """Copy ``src`` (broadcast to ``x``'s shape, cast to its dtype, moved to its device) into ``x``."""
    _check(x, "copy_", src)
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_: expected a Tensor to copy from, got {type(src).__name__}")
    values = backend.to_device(src.data, x.device)

    def write(data):
        try:
            array_module(data).copyto(data, values, casting="unsafe")
        except ValueError:
            if data.flags.writeable:
                raise RuntimeError(
                    f"copy_: a tensor of shape {tuple(src.shape)} cannot be broadcast to the shape "
                    f"{tuple(x.shape)} it is copied into"
                ) from None
            raise

    _store(x, write, "copy_")
    return x


def masked_fill_(x, mask, value):
    """Set ``x`` to ``value`` wherever the boolean ``mask`` (broadcast to ``x``) is True."""
    _check(x, "masked_fill_", value)
    return _write(x, _out_of_place(masked_fill, x, mask, value), "masked_fill_")


def add_(x, other, alpha=1):
    """x <- x + alpha * other."""
    _check(x, "add_", other)
    return _write(x, _out_of_place(add, x, other if alpha == 1 else other * alpha), "add_")


def sub_(x, other, alpha=1):
    """x <- x - alpha * other."""
    _check(x, "sub_", other)
    return _write(x, _out_of_place(sub, x, other if alpha == 1 else other * alpha), "sub_")


def mul_(x, other):
    """x <- x * other."""
    _check(x, "mul_", other)
    return _write(x, _out_of_place(mul, x, other), "mul_")


def div_(x, other):
    """x <- x / other (true division: refused for an integer tensor, as in PyTorch)."""
    _check(x, "div_", other)
    return _write(x, _out_of_place(div, x, other), "div_")


def clamp_(x, min=None, max=None):  # noqa: A002 (PyTorch's argument names)
    """x <- clamp(x, min, max)."""
    _check(x, "clamp_", min, max)
    return _write(x, _out_of_place(clamp, x, min, max), "clamp_")


def _fill_random(x, op, draw, generator):
    """Write ``draw(numpy_generator, shape)`` (float64 draws from tinylm's generator, or ``generator``'s)
    into the floating-point tensor ``x``, cast to its dtype and moved to its device."""
    _check(x, op)
    if x.data.dtype.kind != "f":
        raise RuntimeError(f"{op}: expected a floating-point tensor, got {x.data.dtype}")
    values = backend.to_device(draw(random.generator(generator), x.shape).astype(x.data.dtype), x.device)
    _store(x, lambda data: array_module(data).copyto(data, values), op)
    return x


def uniform_(x, a=0.0, b=1.0, generator=None):
    """Fill ``x`` with numbers drawn uniformly from [a, b)."""
    if not a <= b:
        raise RuntimeError(f"uniform_: expects to return a [from, to) range, but found from={a} > to={b}")
    return _fill_random(x, "uniform_", lambda rng, shape: rng.uniform(a, b, size=shape), generator)


def normal_(x, mean=0.0, std=1.0, generator=None):
    """Fill ``x`` with numbers drawn from N(mean, std**2)."""
    if std < 0:
        raise RuntimeError(f"normal_: expects std >= 0.0, but found std {std}")
    return _fill_random(x, "normal_", lambda rng, shape: rng.normal(mean, std, size=shape), generator)


_AUGMENTED = {"add": (add_, add), "sub": (sub_, sub), "mul": (mul_, mul), "div": (div_, div)}


def augmented(x, other, op):
    """``x += other`` and its kin: in place where ``x.add_(other)`` would be allowed; otherwise
    (``x`` in the graph, or ``other`` requiring grad) ``x + other``, rebinding the name, so the
    gradient is right. A leaf that requires grad is refused either way, as in PyTorch."""
    inplace, out_of_place = _AUGMENTED[op]
    if is_grad_enabled() and (x.requires_grad or _requires_grad(other)):
        if x.requires_grad and x.grad_fn is None:
            _check(x, f"{op}_", other)  # raises PyTorch's leaf error
        return out_of_place(x, other)
    return inplace(x, other)
