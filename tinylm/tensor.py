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
"""

import functools
import weakref

import numpy as np

from tinylm import backend

_grad_enabled = True


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
        return outputs

    def release(self):
        """Drop everything the node saved, so its memory can be reused."""
        self.__dict__.clear()

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"


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

    def dim(self):
        return self.data.ndim

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return self.data.size

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
        self.data[_ops.as_index(index, op="setitem")] = value.data if isinstance(value, Tensor) else value

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
    def to(self, *args, dtype=None, device=None):
        """``t.to("cuda")``, ``t.to(tinylm.float64)``, ``t.to(device, dtype)``: a converted copy.

        Returns ``self`` when nothing changes; gradients flow back through the copy.
        """
        for arg in args:
            if isinstance(arg, Tensor):
                dtype, device = arg.dtype, arg.device
            elif isinstance(arg, str) and not _is_dtype_name(arg):
                device = arg
            else:
                dtype = arg
        return _ops.convert(self, dtype=dtype, device=device)

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

    def type_as(self, other):
        return self.to(other.dtype)


def _is_dtype_name(text):
    try:
        np.dtype(text)
    except TypeError:
        return False
    return True


from tinylm import ops as _ops  # noqa: E402  (ops import Tensor and Function from this module)
