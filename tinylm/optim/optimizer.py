"""The ``Optimizer`` base: parameter groups, per-parameter state, and its state dict.

Settings are checked wherever they come from: a constructor, ``add_param_group``
or ``load_state_dict``. A saved state (perhaps read back from a hand-edited
checkpoint) is checked whole against this optimizer before any of it is
applied, so a mismatch raises ValueError and leaves the optimizer as it was.
"""

import copy
import inspect
import math
from collections.abc import Mapping

import numpy as np

from tinylm import backend
from tinylm.tensor import Tensor


class Optimizer:
    """Holds ``param_groups`` (each a dict: ``"params"`` and that group's settings) and
    ``state`` (per parameter, keyed by the parameter object).

    Subclasses write ``update(group, parameter, grad, state)`` for one parameter,
    may refine ``check_settings(group)``, and list in ``state_spec`` what a
    parameter's state holds once it has one: name -> ``"tensor"`` (an array of
    the parameter's shape) or ``"count"`` (an integer from 1). Without a
    ``state_spec``, ``load_state_dict`` checks only the shapes of the arrays.
    """

    state_spec = None
    #: What a learning-rate scheduler keeps in a group besides the optimizer's settings (PyTorch's
    #: ``initial_lr``, the rate its schedule starts from); accepted in groups and saved states.
    schedule_keys = frozenset({"initial_lr"})

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        self.state = {}
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        group = dict(group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        unknown = set(group) - set(self.defaults) - {"params"} - self.schedule_keys
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown settings in a parameter group: {sorted(unknown)}")
        try:
            self._check_settings(group)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__}: {error}") from None
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for parameter in group["params"]:
            if not parameter.requires_grad:
                raise ValueError(f"{type(self).__name__}: a parameter does not require grad")
            if id(parameter) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for parameter in group["params"]:
                if set_to_none or parameter.grad is None:
                    parameter.grad = None
                else:
                    parameter.grad.data = parameter.grad.data * 0

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state.setdefault(parameter, {})
                self.update(group, parameter.data, parameter.grad.data, state)

    def update(self, group, param, grad, state):
        raise NotImplementedError

    # ----- checking settings and state --------------------------------------------------
    def check_settings(self, group):
        """Raise ValueError for settings this optimizer cannot use (subclasses check their ranges); the
        caller puts the optimizer's name before the message. The types are checked already."""

    def _check_settings(self, group):
        """Each setting of ``group`` must be of the kind its default in the constructor's signature is
        (a finite number, a bool, or a tuple, or a list from JSON, of as many finite numbers), then pass
        ``check_settings``. (``defaults`` holds what the constructor was given, so it cannot tell.)"""
        signature = inspect.signature(type(self).__init__).parameters
        for name in self.defaults:
            default = signature[name].default if name in signature else inspect.Parameter.empty
            value = group[name]
            if isinstance(default, bool):
                fits, expected = isinstance(value, (bool, np.bool_)), "true or false"
            elif isinstance(default, tuple):
                fits = isinstance(value, (tuple, list)) and len(value) == len(default) and all(map(_finite, value))
                expected = f"a list of {len(default)} finite numbers"
            elif isinstance(default, (int, float)):
                fits, expected = _finite(value), "a finite number"
            else:  # a setting of some other kind: nothing to compare with
                continue
            if not fits:
                raise ValueError(f"{name} must be {expected}, got {value!r}")
        for name in self.schedule_keys & set(group):
            if not _finite(group[name]):
                raise ValueError(f"{name} must be a finite number, got {group[name]!r}")
        self.check_settings(group)

    def _check_saved_state(self, index, parameter, entries):
        """Raise ValueError unless ``entries`` is a state this optimizer could have kept for ``parameter``:
        none at all, or every name of ``state_spec``, each of its kind (arrays finite, of the parameter's shape).
        The caller puts the optimizer's name before the message."""
        name = type(self).__name__
        if not isinstance(entries, Mapping):
            raise ValueError(f"the state of parameter {index} must be a dict, got {type(entries).__name__}")
        spec = self.state_spec
        if spec is None:  # a subclass that does not say what it keeps: arrays of any name, of the right shape
            spec = {key: "array" for key, value in entries.items() if hasattr(value, "shape") and np.ndim(value) > 0}
        else:
            unknown = sorted(set(entries) - set(spec), key=str)
            if unknown:
                raise ValueError(f"the state of parameter {index} holds {unknown}, which {name} does not "
                                 f"keep (it keeps {sorted(spec)})")  # fmt: skip
            missing = sorted(set(spec) - set(entries))
            if entries and missing:
                raise ValueError(f"the state of parameter {index} lacks {missing} (it has {sorted(entries)})")
        for key, kind in spec.items():
            if key not in entries:  # an empty state (the parameter has not been stepped yet)
                continue
            value, where = entries[key], f"{key!r} of parameter {index}"
            if kind == "count":
                if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise ValueError(f"{where} must be an integer from 1, got {value!r}")
                continue
            if not (hasattr(value, "shape") and hasattr(value, "dtype")):
                raise ValueError(f"{where} must be an array, got {type(value).__name__}")
            if tuple(value.shape) != tuple(parameter.shape):
                raise ValueError(f"{where} has shape {tuple(value.shape)}, the parameter {tuple(parameter.shape)}")
            if kind == "array":  # not declared by the subclass: it may hold anything
                continue
            if not np.issubdtype(value.dtype, np.floating):
                raise ValueError(f"{where} has dtype {value.dtype}, expected a floating dtype")
            bad = int(value.size - np.count_nonzero(np.isfinite(backend.to_numpy(value))))
            if bad:
                raise ValueError(f"{where} holds {bad} non-finite values (NaN or inf) of {value.size}")

    # ----- saving and restoring -----------------------------------------------------
    def state_dict(self):
        """``{"state": {index: {name: array or number}}, "param_groups": [settings + "params": indices]}``,
        parameters numbered in group order, as PyTorch does. Arrays are NumPy copies."""
        index_of, groups = {}, []
        for group in self.param_groups:
            settings = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            settings["params"] = []
            for parameter in group["params"]:
                index_of[id(parameter)] = len(index_of)
                settings["params"].append(index_of[id(parameter)])
            groups.append(settings)
        state = {}
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter in self.state:
                    state[index_of[id(parameter)]] = {
                        k: (backend.to_numpy(v).copy() if hasattr(v, "shape") else v)
                        for k, v in self.state[parameter].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what ``state_dict`` saved, into an optimizer over parameters of the same shapes.

        Raises ValueError, naming the group, parameter or setting, if the saved
        state does not fit: other group sizes, missing or unknown settings or
        state, a value of the wrong type, range or shape, or state for a
        parameter that is in no group. Nothing is changed unless all of it fits.
        """
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and 'param_groups' "
                             f"(from state_dict()), got {type(state_dict).__name__}")  # fmt: skip
        groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or not all(
            isinstance(g, Mapping) and isinstance(g.get("params"), (list, tuple)) for g in groups
        ):
            raise ValueError(f"{name}.load_state_dict: 'param_groups' must be a list of dicts, each with a list "
                             f"'params'")  # fmt: skip
        if not isinstance(saved_state, Mapping):
            raise ValueError(f"{name}.load_state_dict: 'state' must be a dict, got {type(saved_state).__name__}")
        if len(groups) != len(self.param_groups) or any(
            len(saved["params"]) != len(own["params"]) for saved, own in zip(groups, self.param_groups)
        ):
            raise ValueError(
                f"{name}.load_state_dict: the saved state has groups of sizes "
                f"{[len(g['params']) for g in groups]}, this optimizer "
                f"{[len(g['params']) for g in self.param_groups]}"
            )
        settings, parameters = [], {}
        for number, (saved, own) in enumerate(zip(groups, self.param_groups)):
            group = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            missing = sorted(set(self.defaults) - set(group))
            unknown = sorted(set(group) - set(self.defaults) - self.schedule_keys, key=str)
            if missing or unknown:
                raise ValueError(f"{name}.load_state_dict: saved group {number} "
                                 + (f"lacks the settings {missing}" if missing else f"has unknown settings {unknown}"))
            try:
                self._check_settings(group)
            except ValueError as error:
                raise ValueError(f"{name}.load_state_dict: saved group {number}: {error}") from None
            for key, default in self.defaults.items():  # JSON turns tuples (betas) into lists
                if isinstance(default, tuple):
                    group[key] = tuple(group[key])
            settings.append(group)
            for index, parameter in zip(saved["params"], own["params"]):
                is_index = isinstance(index, (int, np.integer)) and not isinstance(index, (bool, np.bool_))
                if not is_index or index in parameters:
                    raise ValueError(f"{name}.load_state_dict: saved group {number} lists parameter {index!r}; "
                                     f"expected distinct integer indices")  # fmt: skip
                parameters[int(index)] = parameter
        state = {}
        for index, entries in saved_state.items():
            if isinstance(index, str) and index.isdecimal():  # a state dict that went through JSON
                index = int(index)
            parameter = parameters.get(index) if isinstance(index, (int, np.integer)) else None
            if parameter is None or isinstance(index, (bool, np.bool_)):
                raise ValueError(f"{name}.load_state_dict: the saved state has an entry for parameter {index!r}, "
                                 f"which is in no group (the groups list {sorted(parameters)})")  # fmt: skip
            try:
                self._check_saved_state(index, parameter, entries)
            except ValueError as error:
                raise ValueError(f"{name}.load_state_dict: {error}") from None
            state[parameter] = {key: self._restored(key, value, parameter) for key, value in entries.items()}
        for group, own in zip(settings, self.param_groups):
            own.update(group)
        self.state = state

    def _restored(self, key, value, parameter):
        """A saved state value as the optimizer keeps it: arrays copied to the parameter's device and dtype."""
        if self.state_spec is not None:
            is_tensor = self.state_spec[key] == "tensor"
        else:
            is_tensor = hasattr(value, "shape") and np.ndim(value) > 0
        if is_tensor:
            return backend.to_device(backend.to_numpy(value), parameter.device).astype(parameter.dtype)
        return int(value) if isinstance(value, np.integer) else value

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])


def _finite(value):
    """Whether ``value`` is a finite real number (an int or float, NumPy's included; not a bool)."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return is_number and math.isfinite(value)
