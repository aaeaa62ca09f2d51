"""Keras 3 picks its backend at import; the bridges are tested on JAX (no tensorflow here)."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
