"""Argument checks shared by every public entry: one message format, naming the argument,
its value and what it must be (STYLE.md, convention 1)."""
from __future__ import annotations

import math

import numpy as np

from .errors import VanishcalcError


def real(where, name, value, *, positive=False, nonneg=False, lo=None, hi=None, hi_bound=None,
         why=""):
    """``float(value)``, or a VanishcalcError when it is not a finite real in range.

    ``where`` prefixes the message (the function or layer); ``why`` is appended to the
    range messages, e.g. "(a correlation coefficient)".
    """
    prefix = f"{where}: " if where else ""
    note = f" {why}" if why else ""
    if isinstance(value, (bool, np.bool_)):    # float(True) == 1.0 would pass silently
        raise VanishcalcError(f"{prefix}{name} = {value!r} is a boolean, not a real number")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise VanishcalcError(f"{prefix}{name} = {value!r} is not a real number") from None
    if not math.isfinite(f):
        raise VanishcalcError(f"{prefix}{name} = {value!r} must be finite")
    if positive and f <= 0:
        raise VanishcalcError(f"{prefix}{name} = {value!r} must be > 0{note}")
    if nonneg and f < 0:
        raise VanishcalcError(f"{prefix}{name} = {value!r} must be ≥ 0{note}")
    if lo is not None and not lo <= f <= hi:
        raise VanishcalcError(f"{prefix}{name} = {value!r} must lie in [{lo}, {hi}]{note}")
    if hi_bound is not None and abs(f) > hi_bound:
        raise VanishcalcError(f"{prefix}{name} = {value!r} is too large (|{name}| ≤ {hi_bound:g}: "
                              f"its square must be a finite double){note}")
    return f


def integer(where, name, value, lo, why=""):
    """``int(value)`` for a true integer ≥ lo (bools and floats such as 2.5 are refused)."""
    prefix = f"{where}: " if where else ""
    note = f" {why}" if why else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise VanishcalcError(f"{prefix}{name} = {value!r} must be an integer")
    if value < lo:
        raise VanishcalcError(f"{prefix}{name} = {value!r} must be ≥ {lo}{note}")
    return int(value)
