"""``vanishcalc.keras``: VarianceScaling arguments, initializers and a model walker for Keras 3
(notes/bridges.md).  Importing this module does not import keras."""
from __future__ import annotations

from .bridges.keras import init_, initializer, variance_scaling_args

__all__ = ["init_", "initializer", "variance_scaling_args"]
