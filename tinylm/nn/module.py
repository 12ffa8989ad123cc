"""``Module`` and ``Parameter``: layers as trees of named, learnable tensors.

A ``Module`` registers every ``Parameter``, sub-``Module`` and buffer assigned
to it as an attribute, in assignment order, so ``named_parameters`` and
``state_dict`` walk the tree with dotted names (``blocks.0.attn.in_proj_weight``)
exactly as PyTorch does; a state dict made by PyTorch loads here unchanged.
"""

from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from tinylm import backend
from tinylm.tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a learnable part of a Module: a leaf that requires grad."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class IncompatibleKeys(NamedTuple):
    """What ``load_state_dict(strict=False)`` could not match."""

    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, assign parameters and
    sub-modules as attributes, and write ``forward``. Calling the module calls
    ``forward``.
    """

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dicts to exist
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ----- registration --------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning {name!r}")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        # only called when normal lookup fails, i.e. for registered names
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, parameter):
        """Add a parameter (or None, a declared but absent one, such as a bias turned off)."""
        if parameter is not None and not isinstance(parameter, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None")
        self._parameters[name] = parameter

    def register_buffer(self, name, tensor, persistent=True):
        """Add a tensor that is state but not learnable (saved in state_dict unless not persistent)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name!r} must be a Module or None")
        self._modules[name] = module

    # ----- running -------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def train(self, mode=True):
        """Set training mode (dropout active) on this module and every sub-module."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # ----- walking the tree ------------------------------------------------------
    def named_modules(self, prefix=""):
        """Every module in the tree, this one first, each once, with its dotted name."""
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child}" if name else child, sub) for child, sub in module._modules.items() if sub is not None]
            stack.extend(reversed(children))

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return ((name, module) for name, module in self._modules.items() if module is not None)

    def children(self):
        return (module for _, module in self.named_children())

    def named_parameters(self, prefix="", recurse=True):
        """Each parameter once (a parameter shared by two modules is listed under its first name)."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, parameter in module._parameters.items():
                if parameter is None or id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self, recurse=True):
        return (parameter for _, parameter in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    yield (f"{module_name}.{name}" if module_name else name), buffer

    def buffers(self):
        return (buffer for _, buffer in self.named_buffers())

    def num_parameters(self):
        """The number of learnable scalars (a shared parameter counted once)."""
        return sum(parameter.numel() for parameter in self.parameters())

    def apply(self, function):
        """Call ``function(module)`` on every sub-module, then on this one; returns self."""
        for child in self.children():
            child.apply(function)
        function(self)
        return self

    # ----- state -------------------------------------------------------------------
    def state_dict(self):
        """Every parameter and persistent buffer by dotted name (tied ones under each name),
        as tensors sharing memory with the module."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    state[prefix + name] = parameter.detach()
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent:
                    state[prefix + name] = buffer.detach()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values (tensors or NumPy arrays) into the existing parameters and buffers.

        Values are cast to each parameter's dtype with their values kept (an int32
        array ``[[1, 2]]`` loads into a float32 weight as ``[[1.0, 2.0]]``, as
        PyTorch's ``copy_``), moved to its device, and written in place, so an
        optimizer holding the parameters keeps working. With ``strict`` every key
        must match; a shape mismatch is always an error. Nothing is written unless
        every value can be.

        Raises:
            TypeError: ``state_dict`` is not a mapping (a list, a Tensor, None), or
                a value is not a numeric tensor or array; the message names the type.
            ValueError: missing or unexpected keys (with ``strict``), or shapes
                that differ.
        """
        where = f"load_state_dict into {type(self).__name__}"
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"{where}: expected a mapping of names to tensors or arrays (such as "
                f"model.state_dict()), got {type(state_dict).__name__}"
            )
        own = self._state_targets()
        for key, target in own.items():
            if key in state_dict:
                _check_state_value(where, key, state_dict[key], target)
        given = set(state_dict)
        missing = [key for key in own if key not in given]
        unexpected = [key for key in state_dict if key not in own]
        mismatched = [
            f"{key}: expected {tuple(own[key].shape)}, got {tuple(np.shape(_array_of(state_dict[key])))}"
            for key in own
            if key in given and tuple(np.shape(_array_of(state_dict[key]))) != tuple(own[key].shape)
        ]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if problems:
            raise ValueError(f"{where}: " + " | ".join(problems))
        for key, target in own.items():
            if key in given:
                value = backend.to_device(_array_of(state_dict[key]), target.device)
                target.data[...] = value.astype(target.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    def _state_targets(self):
        """The tensors that ``load_state_dict`` writes into, by key (the originals, not copies)."""
        targets = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    targets[prefix + name] = parameter
            for name, buffer in module._buffers.items():
                if buffer is not None and name not in module._non_persistent:
                    targets[prefix + name] = buffer
        return targets

    # ----- dtype and device ---------------------------------------------------------
    def to(self, *args, dtype=None, device=None):
        """Move/cast every floating-point parameter and buffer in place: ``to("cuda")``,
        ``to(tinylm.float64)``, ``to(device, dtype)``. Integer buffers keep their dtype."""
        for arg in args:
            if isinstance(arg, str) and arg.split(":")[0] in ("cpu", "cuda"):
                device = arg
            else:
                dtype = arg
        device = None if device is None else backend.normalize_device(device)
        dtype = None if dtype is None else np.dtype(dtype)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"Module.to: only floating-point dtypes are allowed, got {dtype}")
        for tensor in list(self.parameters()) + list(self.buffers()):
            _convert_in_place(tensor, dtype, device)
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def zero_grad(self, set_to_none=True):
        for parameter in self.parameters():
            if set_to_none or parameter.grad is None:
                parameter.grad = None
            else:
                parameter.grad.data = parameter.grad.data * 0

    def requires_grad_(self, requires_grad=True):
        for parameter in self.parameters():
            parameter.requires_grad_(requires_grad)
        return self

    # ----- printing ------------------------------------------------------------------
    def extra_repr(self):
        """The layer's own settings, shown in its repr (``in_features=4, out_features=2``)."""
        return ""

    def __repr__(self):
        lines = [f"({name}): " + _indent(repr(module)) for name, module in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"


def _indent(text):
    return text.replace("\n", "\n  ")


def _array_of(value):
    return value.data if isinstance(value, Tensor) else value


def _check_state_value(where, key, value, target):
    """Refuse a state-dict value that is not a tensor or array of numbers castable to ``target``'s dtype."""
    array = _array_of(value)
    is_array = isinstance(array, (np.ndarray, np.generic)) or type(array).__module__.split(".")[0] == "cupy"
    if not is_array:
        kind = type(value)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise TypeError(
            f"{where}: the value of {key!r} is a {name}; expected a tinylm Tensor or a NumPy or CuPy array "
            f"(from PyTorch, pass tensor.numpy())"
        )
    kinds = "biuf" + ("c" if target.dtype.kind == "c" else "")  # complex into real would drop a part
    if array.dtype.kind not in kinds:
        raise TypeError(
            f"{where}: the value of {key!r} has dtype {array.dtype}, which cannot be cast to the "
            f"parameter's {target.dtype}; expected numbers (bool, integer or floating point)"
        )


def _convert_in_place(tensor, dtype, device):
    """Replace a tensor's array (and its gradient's) with a converted copy; the object stays."""
    for holder in (tensor, tensor.grad):
        if holder is None:
            continue
        array = holder.data
        if device is not None:
            array = backend.to_device(array, device)
        if dtype is not None and array.dtype.kind == "f":
            array = array.astype(dtype, copy=False)
        holder.data = array
