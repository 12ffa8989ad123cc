"""Errors that are the user's to fix (a missing file, a bad option, a checkpoint that does not fit).

The ``tinylm`` command prints such an error as one line and exits with code 2,
without a traceback; library callers can catch ``UserError``.

``NotInTinylmError`` is of another kind: a PyTorch feature that tinylm does not
have, raised when a program looks it up (``torch.compile``, ``nn.DataParallel``).
"""


class UserError(Exception):
    """Something tinylm was given or asked to do cannot work; the message says what and why."""


class DataError(UserError, ValueError):
    """A data file or directory is missing, empty, or not what was expected."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not match the model or tokenizer."""


class ConfigError(UserError, ValueError):
    """An unknown option, a value of the wrong type, or settings that cannot go together."""


class NotInTinylmError(AttributeError, NotImplementedError):
    """A PyTorch feature that tinylm does not have. An AttributeError, so ``hasattr(torch, "compile")``
    is False; a NotImplementedError, so a program may catch it as one."""


def refuse(qualified_name, why):
    """``NotInTinylmError`` for the PyTorch name ``qualified_name`` ("torch.compile"), saying ``why``."""
    return NotInTinylmError(f"{qualified_name} is not in tinylm: {why}")


def refusing_getattr(module_name, qualified_prefix, not_here):
    """A module ``__getattr__`` (PEP 562) for ``module_name``: a name in ``not_here`` (name -> why)
    raises ``NotInTinylmError`` as ``<qualified_prefix>.<name>``; any other, a plain AttributeError."""

    def __getattr__(name):
        if name in not_here:
            raise refuse(f"{qualified_prefix}.{name}", not_here[name])
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
