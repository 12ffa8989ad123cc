"""Which autograd Functions the gradient tests exercise, and proof that they do.

A test that checks gradients against finite differences declares the
``Function`` classes it covers with ``@covers(...)`` (or, for the op table,
through ``OpCase.functions``). While it runs, ``trace_functions`` records every
Function applied, and the declaration is asserted against that record, so a
declaration cannot claim more than the test really ran. ``test_coverage.py``
then requires every concrete Function in tinylm to be declared somewhere.
"""

import contextlib
import functools

from tinylm.tensor import Function

COVERED = set()  # Function classes whose backward some test checks
COVERED_OPS = set()  # public op names checked by a dedicated test rather than the op table


@contextlib.contextmanager
def trace_functions():
    """Record the Function classes applied inside the block into the yielded set."""
    seen = set()
    original = Function.__dict__["apply"].__func__

    def recording_apply(cls, *inputs, **params):
        seen.add(cls)
        return original(cls, *inputs, **params)

    Function.apply = classmethod(recording_apply)
    try:
        yield seen
    finally:
        Function.apply = classmethod(original)


def covers(*functions, ops=()):
    """Declare that the decorated gradient test checks the backward of ``functions``
    (and, optionally, the gradients of the public ops named in ``ops``)."""
    COVERED.update(functions)
    COVERED_OPS.update(ops)

    def decorate(test):
        @functools.wraps(test)
        def traced(*args, **kwargs):
            with trace_functions() as seen:
                result = test(*args, **kwargs)
            missing = set(functions) - seen
            assert not missing, f"{test.__name__} declares {sorted(f.__name__ for f in missing)} but never ran them"
            return result

        return traced

    return decorate
