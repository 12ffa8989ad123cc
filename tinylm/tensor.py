"""The Tensor and the reverse-mode autograd engine.

A ``Tensor`` wraps one NumPy or CuPy array (``.data``). Every differentiable
operation is a ``Function`` subclass with a ``forward`` over arrays and a
``backward`` that maps the gradient of its output(s) to gradients of its
inputs, written from the values ``forward`` saved on ``self``. When an
operation runs with grad mode on and some input requires a gradient, the
``Function`` instance becomes a node of the graph: the output tensor points to
it (``grad_fn``), and it points to its input tensors.

``Tensor.backward`` walks that graph without recursion: it first counts, for
every node reachable from the output, how many gradients it will receive, then
runs each node's ``backward`` once all of them have arrived. Once a node has
run, its saved arrays are dropped (unless ``retain_graph=True``), so a training
step frees its activations as backward goes.

In-place operations (``add_``, ``fill_``, ...) count versions, as PyTorch does:
each change bumps the version of the memory it writes (shared by every view of
it). A node remembers how many in-place changes had happened anywhere when it
was recorded; if any happened since, its backward first checks the arrays it
saved, and raises rather than compute a gradient from values that changed.
"""

import functools
import weakref

import numpy as np

from tinylm import backend

_grad_enabled = True
_inplace_clock = 0  # how many in-place changes have been made, ever; see _mark_changed


def is_grad_enabled():
    """True when operations are being recorded for backward."""
    return _grad_enabled


class _GradMode:
    """A ``with`` block (or a decorator) that runs with recording on or off."""

    def __init__(self, mode):
        self.mode = mode

    def __enter__(self):
        global _grad_enabled
        self.previous = _grad_enabled
        _grad_enabled = self.mode
        return self

    def __exit__(self, *exc_info):
        global _grad_enabled
        _grad_enabled = self.previous

    def __call__(self, function):
        mode = self.mode

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with _GradMode(mode):
                return function(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """``with tinylm.no_grad():`` (or ``@tinylm.no_grad()``) runs operations without recording them."""

    def __init__(self):
        super().__init__(False)


class enable_grad(_GradMode):
    """Turn recording back on inside a ``no_grad`` block."""

    def __init__(self):
        super().__init__(True)


class set_grad_enabled(_GradMode):
    """Turn recording on or off now; as a ``with`` block, restore the old mode at its end."""

    def __init__(self, mode):
        global _grad_enabled
        super().__init__(bool(mode))
        self.previous = _grad_enabled
        _grad_enabled = self.mode

    def __enter__(self):
        return self


class Function:
    """One differentiable operation and, once applied, one node of the graph.

    Subclasses write ``forward(self, *arrays, **params)`` returning an array (or
    a tuple of arrays) and ``backward(self, *grads)`` returning one gradient
    array (or ``None``) per tensor input, in order. ``forward`` saves on
    ``self`` whatever ``backward`` needs; ``self.needs_input_grad[i]`` says
    whether input ``i`` wants a gradient, so work for the others can be skipped.
    Outputs with an integer or boolean dtype are never differentiable.

    For an operation with several outputs, ``backward`` receives ``None`` for
    each output that took no part in the result.

    A ``backward`` must not modify the gradient arrays it is given: the engine
    may hand the same array to several places.
    """

    inputs = None  # the input tensors; None once the node has been freed
    _clock = 0  # _inplace_clock when the node was recorded
    needs_input_grad = ()
    n_outputs = 1
    _retained = None  # {output index: weakref to a tensor that asked retain_grad()}

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the operation on tensors ``inputs``; record it if a gradient is needed."""
        fn = cls()
        arrays = [tensor.data for tensor in inputs]
        needs = [tensor.requires_grad for tensor in inputs]
        record = _grad_enabled and True in needs
        fn.needs_input_grad = needs if record else [False] * len(needs)
        if len(arrays) > 1:
            kind = type(arrays[0])
            for array in arrays:
                if type(array) is not kind:
                    _check_same_device(cls, arrays)
                    break
        out = fn.forward(*arrays, **params)
        if type(out) is tuple:
            fn.n_outputs = len(out)
            outputs = tuple(_make_output(array, fn if record else None, i) for i, array in enumerate(out))
        else:
            outputs = _make_output(out, fn if record else None, 0)
        if record:
            fn.inputs = inputs
            fn._clock = _inplace_clock
        return outputs

    def release(self):
        """Drop everything the node saved, so its memory can be reused."""
        self.__dict__.clear()

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


# ----- versions: in-place changes and the values saved for backward --------------


class _Changes:
    """How often one block of memory (a root array and all its views) was changed in place."""

    __slots__ = ("ref", "version", "clocks")
    KEPT = 16  # the clocks of the latest changes, enough to tell the version a node saw

    def __init__(self, ref):
        self.ref, self.version, self.clocks = ref, 0, []


_changed = {}  # id(root array) -> _Changes, for arrays changed in place that are still alive


def _root(array):
    """The array that owns ``array``'s memory (``array`` itself unless it is a view)."""
    kind = type(array)
    while isinstance(array.base, kind):
        array = array.base
    return array


def _changes_of(array, create=False):
    root = _root(array)
    key = id(root)
    entry = _changed.get(key)
    if entry is not None and (entry.ref is None or entry.ref() is root):
        return entry
    if not create:
        return None

    def forget(ref, key=key):
        current = _changed.get(key)
        if current is not None and current.ref is ref:
            del _changed[key]

    try:
        ref = weakref.ref(root, forget)
    except TypeError:  # an array type without weak references: keyed by id alone
        ref = None
    entry = _changed[key] = _Changes(ref)
    return entry


def _mark_changed(array):
    """Record an in-place change of ``array``'s memory: its version goes up by one."""
    global _inplace_clock
    _inplace_clock += 1
    entry = _changes_of(array, create=True)
    entry.version += 1
    entry.clocks.append(_inplace_clock)
    if len(entry.clocks) > _Changes.KEPT:
        del entry.clocks[0]


def version_of(array):
    """How many in-place changes ``array``'s memory (any view of it) has had."""
    entry = _changes_of(array)
    return 0 if entry is None else entry.version


def _saved_arrays(value, name, depth=0):
    """(name, array) for each array in a node's saved attribute, looking into tuples, lists and dicts."""
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
        if hasattr(value, "base"):
            yield name, value
    elif depth < 3 and isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _saved_arrays(item, f"{name}[{i}]", depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for key, item in value.items():
            yield from _saved_arrays(item, f"{name}[{key!r}]", depth + 1)


def _check_saved(node):
    """Raise if an array ``node`` saved in its forward was changed in place after it was recorded."""
    for attribute, value in vars(node).items():
        if attribute in ("inputs", "needs_input_grad", "_retained", "_clock"):
            continue
        for name, array in _saved_arrays(value, attribute):
            entry = _changes_of(array)
            if entry is None or entry.clocks[-1] <= node._clock:
                continue
            later = sum(1 for clock in entry.clocks if clock > node._clock)
            expected = entry.version - later
            exact = later < len(entry.clocks) or entry.version == later
            raise RuntimeError(
                f"{type(node).__name__}.backward: a value it saved in the forward pass ({name}, shape "
                f"{tuple(array.shape)}, {array.dtype}) has been modified by an in-place operation since: "
                f"it is at version {entry.version}; expected version {expected}"
                f"{'' if exact else ' or lower'} instead. Change a clone() of the tensor, or make the "
                "in-place change after backward()"
            )


def _check_same_device(cls, arrays):
    kind = type(arrays[0])
    for i, array in enumerate(arrays):
        if type(array) is not kind and backend.device_of(array) != backend.device_of(arrays[0]):
            raise RuntimeError(
                f"{cls.__name__.lower()}: expected all tensors on the same device, but input 0 is "
                f"on {backend.device_of(arrays[0])} and input {i} is on {backend.device_of(array)}"
            )


def wrap(array):
    """A tensor around ``array`` that is outside the graph (no copy)."""
    return _make_output(array, None, 0)


def _make_output(array, fn, index):
    if type(array) is not np.ndarray and isinstance(array, np.generic):
        array = np.asarray(array)  # NumPy returns scalars from 0-d arithmetic; keep arrays
    out = Tensor.__new__(Tensor)
    out.data = array
    out.grad = None
    if fn is not None and array.dtype.kind in "fc":
        out.requires_grad = True
        out._grad_fn = fn
        out._out_index = index
    else:
        out.requires_grad = False
        out._grad_fn = None
        out._out_index = 0
    return out


_FREED_GRAPH = (
    "backward through a graph whose saved values were already freed: a graph can be "
    "walked once; pass retain_graph=True to the first backward() to walk it again"
)


def _accumulate_leaf(tensor, grad, delivered):
    """Add ``grad`` into ``tensor.grad``; ``delivered`` holds ids of arrays that must be copied first.

    A leaf's ``.grad`` must be an array of its own: not a view, not read-only,
    and not an array also given to another leaf or owned by the caller.
    """
    if tensor.grad is None:
        flags = grad.flags
        if id(grad) in delivered or not flags.owndata or not getattr(flags, "writeable", True):
            grad = grad.copy()
        delivered.add(id(grad))
        tensor.grad = _make_output(grad, None, 0)
    else:
        # A new array rather than +=: an optimizer or the user may still hold the old one.
        tensor.grad.data = tensor.grad.data + grad


def _bad_grad(fn, i, tensor, grad):
    return RuntimeError(
        f"{type(fn).__name__}.backward returned a gradient of shape {tuple(grad.shape)} and dtype "
        f"{grad.dtype} for input {i}, which has shape {tuple(tensor.data.shape)} and dtype "
        f"{tensor.data.dtype}"
    )


def _count_pending(root):
    """For every node reachable from ``root``, how many gradients it will receive."""
    pending = {root: 0}
    stack = [root]
    while stack:
        node = stack.pop()
        if node.inputs is None:
            raise RuntimeError(_FREED_GRAPH)
        for tensor in node.inputs:
            parent = tensor._grad_fn
            if parent is None:
                continue
            count = pending.get(parent)
            if count is None:
                pending[parent] = 1
                stack.append(parent)
            else:
                pending[parent] = count + 1
    return pending


def run_backward(tensor, grad, retain_graph=False):
    """Backpropagate ``grad`` (an array shaped like ``tensor``) to every leaf that requires grad."""
    # ids of arrays that must not become a leaf's .grad as they are: the caller's
    # own gradient, and arrays already stored as another leaf's .grad
    delivered = {id(grad)}
    root = tensor._grad_fn
    if root is None:
        _accumulate_leaf(tensor, grad, delivered)
        return
    pending = _count_pending(root)
    buffers = {root: [None] * root.n_outputs}
    buffers[root][tensor._out_index] = grad
    ready = [root]
    while ready:
        node = ready.pop()
        out_grads = buffers.pop(node, None)
        inputs, needs = node.inputs, node.needs_input_grad
        if out_grads is None:
            in_grads = (None,) * len(inputs)  # nothing reached this node: nothing to pass on
        else:
            if node._clock != _inplace_clock:  # something changed in place since it was recorded
                _check_saved(node)
            if node._retained:
                _fill_retained(node, out_grads, delivered)
            in_grads = node.backward(*out_grads)
            if type(in_grads) is not tuple:
                in_grads = (in_grads,)
            if len(in_grads) != len(inputs):
                raise RuntimeError(
                    f"{type(node).__name__}.backward returned {len(in_grads)} gradients "
                    f"for {len(inputs)} inputs"
                )
        if not retain_graph:
            node.release()
        for parent_tensor, grad_in, need in zip(inputs, in_grads, needs):
            parent = parent_tensor._grad_fn
            if grad_in is not None and need:
                data = parent_tensor.data
                if grad_in.shape != data.shape or grad_in.dtype != data.dtype:
                    raise _bad_grad(node, inputs.index(parent_tensor), parent_tensor, grad_in)
                if parent is None:
                    _accumulate_leaf(parent_tensor, grad_in, delivered)
                else:
                    slots = buffers.get(parent)
                    if slots is None:
                        slots = buffers[parent] = [None] * parent.n_outputs
                    index = parent_tensor._out_index
                    previous = slots[index]
                    slots[index] = grad_in if previous is None else previous + grad_in
            if parent is not None:
                count = pending[parent] - 1
                pending[parent] = count
                if count == 0:
                    ready.append(parent)


def _fill_retained(node, out_grads, delivered):
    for index, ref in node._retained.items():
        tensor = ref()
        if tensor is not None and out_grads[index] is not None:
            _accumulate_leaf(tensor, out_grads[index], delivered)


class Tensor:
    """An n-dimensional array with a gradient.

    Make tensors with ``tinylm.tensor``, ``zeros``, ``ones``, ``randn`` or
    ``arange`` rather than this constructor, which wraps an existing NumPy or
    CuPy array without copying it.
    """

    __slots__ = ("data", "requires_grad", "grad", "_grad_fn", "_out_index", "__weakref__")
    __array_ufunc__ = None  # make NumPy defer `ndarray * tensor` to Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, np.generic):
            data = np.asarray(data)
        backend.array_module(data)  # raises a TypeError for anything but an array
        self.data = data
        self.grad = None
        self._grad_fn = None
        self._out_index = 0
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----- what the tensor is -------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def grad_fn(self):
        """The node that made this tensor, or None for a leaf."""
        return self._grad_fn

    @property
    def is_leaf(self):
        return self._grad_fn is None

    @property
    def is_cuda(self):
        return self.device != "cpu"

    @property
    def _version(self):
        """How many in-place changes this tensor's memory (shared with its views) has had."""
        return version_of(self.data)

    def dim(self):
        return self.data.ndim

    ndimension = dim

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

    nelement = numel

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ----- leaving tinylm ------------------------------------------------------
    def numpy(self):
        """The values as a NumPy array (shared with the tensor on the CPU, copied off the GPU)."""
        return backend.to_numpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item(): tensor has {self.data.size} elements, expected exactly 1")
        return self.data.item()

    def tolist(self):
        return self.numpy().tolist()

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, got {self.data.dtype}")
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.data.item())

    def __format__(self, spec):
        """``f"{loss:.3f}"``: a one-element tensor formats as its Python number. PyTorch does so for a
        0-d tensor only; here a one-element tensor of any shape does too. Any other tensor takes only
        the empty spec (giving its repr), as in PyTorch."""
        if self.data.size == 1:
            return format(self.data.item(), spec)
        if spec:
            raise TypeError(
                f"unsupported format string passed to Tensor.__format__ (a tensor of shape {tuple(self.shape)}; "
                "format its .item() or .tolist() instead)"
            )
        return repr(self)

    __hash__ = object.__hash__  # tensors are hashed by identity, as `==` is elementwise

    def __repr__(self):
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", precision=4)
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.data.dtype not in (backend.DEFAULT_FLOAT, np.dtype(np.int64), np.dtype(bool)):
            extras.append(f"dtype={self.data.dtype}")
        if self._grad_fn is not None:
            extras.append(f"grad_fn={self._grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    # ----- autograd ------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        """Mark a leaf as needing a gradient (in place); returns the tensor."""
        if not self.is_leaf:
            raise RuntimeError("requires_grad can only be changed on a leaf tensor; use .detach() first")
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(
                f"only floating-point tensors can require gradients, this one is {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``gradient`` is the gradient of some scalar with respect to ``self``; it
        may be left out only when ``self`` has one element.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require grad and has no grad_fn "
                "(was it made under no_grad(), or from tensors that do not require grad?)"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward(): gradient can be left out only for a one-element output, but this "
                    f"tensor has shape {tuple(self.shape)}; pass gradient= of that shape"
                )
            grad = backend.array_module(self.data).ones(self.shape, dtype=self.dtype)
        else:
            grad = gradient.data if isinstance(gradient, Tensor) else gradient
            grad = backend.array_module(self.data).asarray(grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise RuntimeError(
                    f"backward(): gradient has shape {tuple(grad.shape)}, expected {tuple(self.shape)}"
                )
        run_backward(self, grad, retain_graph)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor when backward runs."""
        if self._grad_fn is None:
            return
        fn = self._grad_fn
        if fn._retained is None:
            fn._retained = {}
        fn._retained[self._out_index] = weakref.ref(self)

    def detach(self):
        """The same values, cut from the graph (shares memory)."""
        return Tensor(self.data)

    def detach_(self):
        """Cut this tensor from the graph in place (it becomes a leaf that does not require grad)."""
        if self._grad_fn is not None and self._grad_fn._retained:
            self._grad_fn._retained.pop(self._out_index, None)
        self._grad_fn = None
        self._out_index = 0
        self.requires_grad = False
        return self

    def zero_grad_(self):
        self.grad = None
        return self

    # ----- operators (the implementations live in tinylm.ops) -----------------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __pow__(self, exponent):
        return _ops.pow(self, exponent)

    def __rpow__(self, base):
        return _ops.pow(base, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __abs__(self):
        return _ops.abs(self)

    def __eq__(self, other):
        return _ops.eq(self, other)

    def __ne__(self, other):
        return _ops.ne(self, other)

    def __lt__(self, other):
        return _ops.lt(self, other)

    def __le__(self, other):
        return _ops.le(self, other)

    def __gt__(self, other):
        return _ops.gt(self, other)

    def __ge__(self, other):
        return _ops.ge(self, other)

    def __invert__(self):
        return _ops.logical_not(self)

    def __and__(self, other):
        return _ops.logical_and(self, other)

    def __or__(self, other):
        return _ops.logical_or(self, other)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    def __setitem__(self, index, value):
        """Write values in place; only allowed outside the graph."""
        if self.requires_grad and _grad_enabled:
            raise RuntimeError(
                "in-place assignment to a tensor that requires grad would corrupt its gradient; "
                "use masked_fill/where, or assign under tinylm.no_grad()"
            )
        if _grad_enabled and isinstance(value, Tensor) and value.requires_grad:
            raise RuntimeError(
                "setitem: the value assigned requires grad, and tinylm does not record in-place "
                "assignment, so its gradient would be lost; collect the pieces and join them with "
                "tinylm.stack or tinylm.cat, or assign under tinylm.no_grad() if no gradient is wanted"
            )
        self.data[_ops.as_index(index, op="setitem")] = value.data if isinstance(value, Tensor) else value
        _mark_changed(self.data)

    # ----- in place (see tinylm/ops/inplace.py: allowed outside the graph only) ----
    def fill_(self, value):
        return _ops.inplace.fill_(self, value)

    def zero_(self):
        return _ops.inplace.zero_(self)

    def copy_(self, src, non_blocking=False):
        return _ops.inplace.copy_(self, src)

    def masked_fill_(self, mask, value):
        return _ops.inplace.masked_fill_(self, mask, value)

    def add_(self, other, alpha=1):
        return _ops.inplace.add_(self, other, alpha)

    def sub_(self, other, alpha=1):
        return _ops.inplace.sub_(self, other, alpha)

    def mul_(self, other):
        return _ops.inplace.mul_(self, other)

    def div_(self, other):
        return _ops.inplace.div_(self, other)

    def clamp_(self, min=None, max=None):  # noqa: A002 (PyTorch's argument names)
        return _ops.inplace.clamp_(self, min, max)

    def uniform_(self, a=0.0, b=1.0, *, generator=None):
        return _ops.inplace.uniform_(self, a, b, generator=generator)

    def normal_(self, mean=0.0, std=1.0, *, generator=None):
        return _ops.inplace.normal_(self, mean, std, generator=generator)

    clip_ = clamp_

    def __iadd__(self, other):
        return _ops.inplace.augmented(self, other, "add")

    def __isub__(self, other):
        return _ops.inplace.augmented(self, other, "sub")

    def __imul__(self, other):
        return _ops.inplace.augmented(self, other, "mul")

    def __itruediv__(self, other):
        return _ops.inplace.augmented(self, other, "div")

    # ----- methods -------------------------------------------------------------
    def exp(self):
        return _ops.exp(self)

    def log(self):
        return _ops.log(self)

    def tanh(self):
        return _ops.tanh(self)

    def sigmoid(self):
        return _ops.sigmoid(self)

    def relu(self):
        return _ops.relu(self)

    def sqrt(self):
        return _ops.sqrt(self)

    def erf(self):
        return _ops.erf(self)

    def abs(self):
        return _ops.abs(self)

    def neg(self):
        return _ops.neg(self)

    def pow(self, exponent):
        return _ops.pow(self, exponent)

    def sin(self):
        return _ops.sin(self)

    def cos(self):
        return _ops.cos(self)

    def clamp(self, min=None, max=None):  # noqa: A002 (PyTorch's argument names)
        return _ops.clamp(self, min, max)

    clip = clamp

    def add(self, other, alpha=1):
        return _ops.add(self, other if alpha == 1 else other * alpha)

    def sub(self, other, alpha=1):
        return _ops.sub(self, other if alpha == 1 else other * alpha)

    def mul(self, other):
        return _ops.mul(self, other)

    def div(self, other):
        return _ops.div(self, other)

    def eq(self, other):
        return _ops.eq(self, other)

    def ne(self, other):
        return _ops.ne(self, other)

    def lt(self, other):
        return _ops.lt(self, other)

    def le(self, other):
        return _ops.le(self, other)

    def gt(self, other):
        return _ops.gt(self, other)

    def ge(self, other):
        return _ops.ge(self, other)

    def logical_not(self):
        return _ops.logical_not(self)

    def logical_and(self, other):
        return _ops.logical_and(self, other)

    def logical_or(self, other):
        return _ops.logical_or(self, other)

    def bmm(self, other):
        return _ops.bmm(self, other)

    def triu(self, diagonal=0):
        return _ops.triu(self, diagonal)

    def tril(self, diagonal=0):
        return _ops.tril(self, diagonal)

    def index_select(self, dim, index):
        return _ops.index_select(self, dim, index)

    def topk(self, k, dim=-1, largest=True, sorted=True):  # noqa: A002 (PyTorch's argument name)
        return _ops.topk(self, k, dim, largest, sorted)

    def sort(self, dim=-1, descending=False, stable=False):
        return _ops.sort(self, dim, descending, stable)

    def argsort(self, dim=-1, descending=False, stable=False):
        return _ops.argsort(self, dim, descending, stable)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _ops.var(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _ops.std(self, dim, unbiased, keepdim, correction=correction)

    def norm(self, p="fro", dim=None, keepdim=False, dtype=None):
        return _ops.norm(self, p, dim, keepdim, dtype)

    def matmul(self, other):
        return _ops.matmul(self, other)

    def sum(self, dim=None, keepdim=False):
        return _ops.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return _ops.mean(self, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        return _ops.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return _ops.min(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return _ops.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _ops.argmin(self, dim, keepdim)

    def any(self):
        return _ops.any(self)

    def all(self):
        return _ops.all(self)

    def reshape(self, *shape):
        return _ops.reshape(self, *shape)

    def view(self, *shape):
        return _ops.reshape(self, *shape)

    def transpose(self, dim0, dim1):
        return _ops.transpose(self, dim0, dim1)

    def permute(self, *dims):
        return _ops.permute(self, *dims)

    @property
    def T(self):
        return _ops.permute(self, *reversed(range(self.ndim)))

    def t(self):
        return _ops.t(self)

    def repeat(self, *sizes):
        return _ops.repeat(self, *sizes)

    def expand(self, *sizes):
        return _ops.expand(self, *sizes)

    def expand_as(self, other):
        return _ops.expand(self, *other.shape)

    def squeeze(self, dim=None):
        return _ops.squeeze(self, dim)

    def unsqueeze(self, dim):
        return _ops.unsqueeze(self, dim)

    def flatten(self, start_dim=0, end_dim=-1):
        return _ops.flatten(self, start_dim, end_dim)

    def contiguous(self):
        return self  # arrays are laid out by NumPy/CuPy; nothing to do

    def split(self, split_size_or_sections, dim=0):
        return _ops.split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return _ops.chunk(self, chunks, dim)

    def gather(self, dim, index):
        return _ops.gather(self, dim, index)

    def masked_fill(self, mask, value):
        return _ops.masked_fill(self, mask, value)

    def softmax(self, dim):
        return _ops.softmax(self, dim)

    def log_softmax(self, dim):
        return _ops.log_softmax(self, dim)

    def clone(self):
        return _ops.clone(self)

    # ----- dtype and device ------------------------------------------------------
    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        """``t.to("cuda")``, ``t.to(tinylm.float64)``, ``t.to(device, dtype)``: a converted copy.

        Returns ``self`` when nothing changes, unless ``copy=True``; gradients flow back through
        the copy. ``non_blocking`` is accepted and changes nothing (copies are synchronous).
        """
        for arg in args:
            if isinstance(arg, Tensor):
                dtype, device = arg.dtype, arg.device
            elif isinstance(arg, str) and not _is_dtype_name(arg):
                device = arg
            else:
                dtype = arg
        converted = _ops.convert(self, dtype=dtype, device=device)
        return _ops.clone(self) if copy and converted is self else converted

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def long(self):
        return self.to(np.int64)

    def bool(self):
        return self.to(np.bool_)

    def int(self):
        return self.to(np.int32)

    def half(self):
        return self.to(np.float16)

    def type_as(self, other):
        return self.to(other.dtype)

    def type(self, dtype=None):
        """With no argument, PyTorch's name for the type (``"torch.FloatTensor"``); with a dtype
        (or such a name), a converted copy, or ``self`` if it already has that dtype."""
        if dtype is None:
            name = _TYPE_NAMES.get(self.data.dtype)
            if name is None:
                raise TypeError(f"type(): PyTorch has no tensor type name for dtype {self.data.dtype}")
            return f"torch.{'cuda.' if self.is_cuda else ''}{name}"
        if isinstance(dtype, str) and dtype.endswith("Tensor"):
            wanted = dtype.rpartition(".")[2]
            dtypes = {name: key for key, name in _TYPE_NAMES.items()}
            if wanted not in dtypes:
                raise ValueError(f"type(): unknown tensor type {dtype!r}; expected one of {sorted(dtypes)}")
            return _ops.convert(self, dtype=dtypes[wanted], device="cuda" if ".cuda." in dtype else "cpu")
        return self.to(dtype)

    # ----- new tensors like this one ---------------------------------------------
    def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
        """A tensor of ``size`` filled with ``fill_value``, with this tensor's dtype and device
        unless given."""
        shape = tuple(size) if isinstance(size, (tuple, list)) else (size,)
        dtype = self.data.dtype if dtype is None else np.dtype(dtype)
        data = backend.array_module(self.data).full(shape, fill_value, dtype=dtype)
        if device is not None:
            data = backend.to_device(data, backend.normalize_device(device))
        return Tensor(data, requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_full(_ops.common.normalize_shape(size, "new_zeros"), 0, dtype=dtype, device=device,
                             requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_full(_ops.common.normalize_shape(size, "new_ones"), 1, dtype=dtype, device=device,
                             requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
        return self.new_zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False):
        """A copy of ``data`` as a new leaf, with this tensor's dtype and device unless given."""
        values = data.numpy() if isinstance(data, Tensor) else data
        array = np.array(values, dtype=self.data.dtype if dtype is None else np.dtype(dtype))
        device = self.device if device is None else backend.normalize_device(device)
        return Tensor(backend.to_device(array, device), requires_grad=requires_grad)


_TYPE_NAMES = {
    np.dtype(np.float32): "FloatTensor", np.dtype(np.float64): "DoubleTensor", np.dtype(np.float16): "HalfTensor",
    np.dtype(np.int64): "LongTensor", np.dtype(np.int32): "IntTensor", np.dtype(np.int16): "ShortTensor",
    np.dtype(np.int8): "CharTensor", np.dtype(np.uint8): "ByteTensor", np.dtype(np.bool_): "BoolTensor",
}  # fmt: skip


def _is_dtype_name(text):
    try:
        np.dtype(text)
    except TypeError:
        return False
    return True


from tinylm import ops as _ops  # noqa: E402  (ops import Tensor and Function from this module)
