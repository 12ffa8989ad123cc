"""Errors that are the user's to fix (a missing file, a bad option, a checkpoint that does not fit).

The ``tinylm`` command prints such an error as one line and exits with code 2,
without a traceback; library callers can catch ``UserError``.
"""


class UserError(Exception):
    """Something tinylm was given or asked to do cannot work; the message says what and why."""


class DataError(UserError, ValueError):
    """A data file or directory is missing, empty, or not what was expected."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not match the model or tokenizer."""


class ConfigError(UserError, ValueError):
    """An unknown option, a value of the wrong type, or settings that cannot go together."""
