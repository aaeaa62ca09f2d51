"""Argument checks shared by every public entry: one message format, naming the argument,
its value and what it must be (STYLE.md, convention 1).

The rule for numbers, everywhere (README, "Arguments"): a real number is an ``int``, a
``float`` (a :class:`~vanishcalc.value.Value` is one), a ``fractions.Fraction`` or
``decimal.Decimal``, a NumPy real scalar or 0-d array, or a real SymPy number such as
``sympy.sqrt(2)``.  Booleans are refused (``True`` is not the number 1 here), and so are
strings: ``"1.5"`` is text, and text is read only by :func:`vanishcalc.parse` and the command
line, never converted silently.
"""
from __future__ import annotations

import decimal
import math
import numbers

import numpy as np

from .errors import VanishcalcError


def _as_float(prefix, name, value):
    """``float(value)`` for a value the rule above accepts, else a VanishcalcError."""
    what = f"{prefix}{name} = {value!r}"
    if isinstance(value, (bool, np.bool_)):    # float(True) == 1.0 would pass silently
        raise VanishcalcError(f"{what} is a boolean, not a real number; pass a number such as 1.0")
    if isinstance(value, (str, bytes)):
        raise VanishcalcError(f"{what} is a string, not a real number; pass a number "
                              f"(1.5, not '1.5'; math.sqrt(2), not 'sqrt(2)')")
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value[()]
    ok = isinstance(value, (numbers.Real, decimal.Decimal)) and not isinstance(value, np.bool_)
    if not ok and type(value).__module__.startswith("sympy"):
        ok = bool(getattr(value, "is_number", False)) and getattr(value, "is_real", False) is True
    if not ok:
        kind = "complex" if isinstance(value, numbers.Complex) else f"a {type(value).__name__}"
        raise VanishcalcError(f"{what} is {kind}, not a real number; pass an int, a float or "
                              "a NumPy/SymPy real number")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise VanishcalcError(f"{what} is not a real number that fits a double") from None


def real(where, name, value, *, positive=False, nonneg=False, lo=None, hi=None, hi_bound=None,
         why=""):
    """``float(value)``, or a VanishcalcError when it is not a finite real in range
    (which values count as real numbers: the module docstring).

    ``where`` prefixes the message (the function or layer); ``why`` is appended to the
    range messages, e.g. "(a correlation coefficient)".
    """
    prefix = f"{where}: " if where else ""
    note = f" {why}" if why else ""
    f = _as_float(prefix, name, value)
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
    if isinstance(value, (bool, np.bool_)):
        raise VanishcalcError(f"{prefix}{name} = {value!r} is a boolean; pass an integer such as 8")
    if not isinstance(value, (int, np.integer)):
        kind = "a string" if isinstance(value, str) else f"a {type(value).__name__}"
        raise VanishcalcError(f"{prefix}{name} = {value!r} is {kind}; it must be an integer "
                              "(a Python or NumPy int) such as 8")
    if value < lo:
        raise VanishcalcError(f"{prefix}{name} = {value!r} must be ≥ {lo}{note}")
    return int(value)
