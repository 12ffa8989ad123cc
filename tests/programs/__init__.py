"""PyTorch programs, written as a tutorial would, that tests/test_pytorch_programs.py runs twice:
once under PyTorch and once under tinylm with only their import lines rewritten.

Each program defines ``build()`` (the model, seeded), ``train(model)`` (the per-step losses) and
``decode(model)`` (the decoded tokens), and ``main()`` that runs the three and prints them.
"""
