"""The ``Optimizer`` base: parameter groups, per-parameter state, and its state dict."""

import copy

import numpy as np

from tinylm import backend
from tinylm.tensor import Tensor


class Optimizer:
    """Holds ``param_groups`` (each a dict: ``"params"`` and that group's settings) and
    ``state`` (per parameter, keyed by the parameter object).

    Subclasses write ``update(group, parameter, grad, state)`` for one parameter.
    """

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
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown settings in a parameter group: {sorted(unknown)}")
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
        """Restore what ``state_dict`` saved, into an optimizer over parameters of the same shapes."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(saved["params"]) != len(own["params"]) for saved, own in zip(groups, self.param_groups)
        ):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the saved state has groups of sizes "
                f"{[len(g['params']) for g in groups]}, this optimizer "
                f"{[len(g['params']) for g in self.param_groups]}"
            )
        parameters = {}
        for saved, own in zip(groups, self.param_groups):
            own.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
            parameters.update(zip(saved["params"], own["params"]))
        self.state = {}
        for index, entries in state_dict["state"].items():
            parameter = parameters[int(index)]
            restored = {}
            for name, value in entries.items():
                if hasattr(value, "shape") and np.ndim(value) > 0:
                    if tuple(value.shape) != tuple(parameter.shape):
                        raise ValueError(
                            f"{type(self).__name__}.load_state_dict: state {name!r} of parameter {index} "
                            f"has shape {tuple(value.shape)}, the parameter {tuple(parameter.shape)}"
                        )
                    value = backend.to_device(np.asarray(value), parameter.device).astype(parameter.dtype)
                restored[name] = value
            self.state[parameter] = restored

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])
