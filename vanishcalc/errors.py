"""The vanishcalc error tree.

Every error a user can trigger with bad input is a ``VanishcalcError``, which is a
``ValueError``: code that already catches ``ValueError`` keeps working, and code that
wants to tell our errors apart can catch the named subclasses.
"""
from __future__ import annotations

import re

# A zoo name, possibly with derivative marks ("tanh", "gelu'", "tanh'²"): it reads as a function name.
_FUNCTION_NAME = re.compile(r"[A-Za-z_]\w*['′]*²?")


def expectation_label(name: str, arg: str = "√q·z") -> str:
    """How messages write E[φ(arg)] for the activation called ``name``.

    A zoo name reads as a function (``E[tanh(√q·z)]``); a formula is named φ and spelled out
    (``E[φ(√q·z)] with φ(x) = exp(x**2)``), never glued to its argument as ``exp(x**2)(√q·z)``.

    >>> expectation_label("tanh")
    'E[tanh(√q·z)]'
    >>> expectation_label("exp(x**2)")
    'E[φ(√q·z)] with φ(x) = exp(x**2)'
    """
    if _FUNCTION_NAME.fullmatch(name):
        return f"E[{name}({arg})]"
    return f"E[φ({arg})] with φ(x) = {name}"


class VanishcalcError(ValueError):
    """Base class of every error vanishcalc raises on bad input or failed computation."""


class ParseError(VanishcalcError):
    """An expression string is not in the safe grammar (unknown name, attribute, lambda, ...)."""


class DivergenceError(VanishcalcError):
    """A Gaussian expectation does not exist: the integrand grows too fast at ±∞."""


class ComplexValuedError(VanishcalcError):
    """φ takes complex values on part of the real line (sqrt(x), log(x), ...)."""


class SingularityError(VanishcalcError):
    """φ is infinite or undefined at a real point (1/x, log(x**2) at 0, tan at π/2, ...)."""


class NonFiniteError(VanishcalcError):
    """A computed value overflowed or became NaN; vanishcalc never returns one silently."""


class NotConvergedError(VanishcalcError):
    """A numerical method stopped before meeting its tolerance.

    ``best`` holds the best :class:`~vanishcalc.value.Value` reached, with its error.
    """

    def __init__(self, message: str, best=None):
        super().__init__(message)
        self.best = best


class SimulationOverflowError(VanishcalcError):
    """A simulated network overflowed; ``layer`` is the first layer that did."""

    def __init__(self, message: str, layer: int | None = None):
        super().__init__(message)
        self.layer = layer


class VanishcalcWarning(UserWarning):
    """Warnings about accuracy or simulation health (overflow in a layer, dropped closed form)."""


class MissingDependencyError(VanishcalcError, ImportError):
    """An optional package (matplotlib, pandas, dask.distributed, ...) is needed and absent;
    the message names the ``pip install`` that provides it."""
