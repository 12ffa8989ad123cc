"""Training: settings, the loop, checkpoints, the run's log, and evaluation on a text."""
