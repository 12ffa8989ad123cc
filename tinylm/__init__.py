"""tinylm: a from-scratch language-model engine."""
