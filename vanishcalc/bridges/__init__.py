"""Bridges from vanishcalc's numbers to deep-learning frameworks (torch, Keras 3, JAX/Flax).

``init_spec`` (framework-free) turns a nonlinearity and a layer's fans into the numbers each
framework's initializers take; ``vanishcalc.torch``, ``vanishcalc.keras`` and ``vanishcalc.jax``
use them to initialize real models.  Conventions and derivations: notes/bridges.md.
"""
