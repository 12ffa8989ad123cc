"""Numba fused kernels (installed as ``tinylm.kernels``)."""
