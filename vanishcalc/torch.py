"""``vanishcalc.torch``: drop-ins for torch.nn.init and a model walker (notes/bridges.md).

Importing this module does not import torch; the functions that need torch import it (the
real top-level package: Python 3 imports are absolute, so this file never shadows it).
"""
from __future__ import annotations

from .bridges.torch import calculate_gain, compute_gamma, init_, param_groups

__all__ = ["calculate_gain", "compute_gamma", "init_", "param_groups"]
