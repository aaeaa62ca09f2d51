"""``vanishcalc.jax``: initializer functions for JAX/Flax (notes/bridges.md).  Importing this
module does not import jax."""
from __future__ import annotations

from .bridges.jax import bias_initializer, initializer

__all__ = ["bias_initializer", "initializer"]
