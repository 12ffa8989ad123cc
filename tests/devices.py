"""The devices the suite runs on: the CPU always, the GPU where CuPy can use one."""

from tinylm import backend

DEVICES = ["cpu"] + (["cuda"] if backend.cuda_is_available() else [])
