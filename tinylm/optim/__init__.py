"""Optimizers and learning-rate schedules, with PyTorch's names, defaults and update rules.

``SGD``, ``Adam`` and ``AdamW`` take parameters or parameter groups (dicts
with ``"params"`` and per-group settings, as nanoGPT uses to decay matrices
only); ``step()`` updates the parameters in place. ``lr_scheduler`` holds the
schedules.
"""

from tinylm.optim import lr_scheduler
from tinylm.optim.adam import Adam, AdamW
from tinylm.optim.optimizer import Optimizer
from tinylm.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
