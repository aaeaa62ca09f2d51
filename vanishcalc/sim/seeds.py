"""Seed validation shared by every simulator entry (both backends, every network kind).

A leaf module (it imports nothing from ``vanishcalc.sim``), below both backends, so the front
door (``sim/api.py``), the program (``sim/program.py``) and the backends (``sim/cpu/``,
``sim/cuda/``) can all import it without an import cycle.
"""
from __future__ import annotations

from ..errors import VanishcalcError
from ..validate import integer


def seed_iv(where, seed) -> int:
    """``int(seed)`` for an integer seed in [0, 2**63); shared by every simulator entry."""
    seed = integer(where, "seed", seed, 0, "(a non-negative integer)")
    if seed >= 2**63:
        raise VanishcalcError(f"{where}: seed = {seed!r} must be an integer in [0, 2**63)")
    return seed


__all__ = ["seed_iv"]
