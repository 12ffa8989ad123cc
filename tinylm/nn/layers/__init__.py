"""The layers of ``tinylm.nn``, one module per family."""
