"""Packaging for tinylm.

The Numba kernels live in the top-level folder ``kernels/`` but install as
``tinylm.kernels`` (mapped through ``package_dir``), so they can never collide
with another distribution's top-level ``kernels`` package.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

setup(
    name="tinylm",
    version="0.1.0",
    description="A from-scratch language-model engine: autograd over NumPy/CuPy, "
    "hand-written layers, Numba kernels, and the path from raw text to a sampled model.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tinylm", "tinylm.*"]) + ["tinylm.kernels"],
    package_dir={"tinylm.kernels": "kernels"},
    package_data={"tinylm": ["data/corpora/*.txt"]},
    install_requires=[
        "numpy>=1.25",
        "numba>=0.59",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "tomli>=2.0; python_version < '3.11'",
    ],
    extras_require={
        "gpu": ["cupy-cuda12x>=13"],
        "dev": ["pytest>=7.4", "hypothesis>=6.90"],
        "parity": ["torch==2.13.0"],
    },
    entry_points={"console_scripts": ["tinylm=tinylm.cli:main"]},
)
