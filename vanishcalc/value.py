"""``Value``: a float that carries its closed form, its error and how it was found."""
from __future__ import annotations

import math
import re

import sympy

# Decimal constants with more digits than a reader can take in (selu's λ and α are given to 31
# digits, and SymPy carries them at 40 through every product): shown rounded, kept in full in .exact.
DISPLAY_DIGITS = 8
_LONG_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d{%d,}(?:e[-+]?\d+)?" % (DISPLAY_DIGITS + 2))
ROUNDED_NOTE = f"decimal constants shown to {DISPLAY_DIGITS} digits"


def shorten_decimals(text: str) -> tuple[str, bool]:
    """``text`` with decimal constants longer than DISPLAY_DIGITS + 2 digits rounded to
    DISPLAY_DIGITS, and whether any was (then say so: ROUNDED_NOTE)."""
    short = _LONG_DECIMAL.sub(lambda m: format(float(m.group()), f".{DISPLAY_DIGITS}g"), text)
    return short, short != text


def closed_form_text(expr) -> tuple[str, bool]:
    """``sympy.sstr(expr)`` with long decimal constants rounded (:func:`shorten_decimals`).

    >>> closed_form_text(sympy.Float("1.0507009873554804934193349852946", 40) * sympy.exp(2))
    ('1.050701*exp(2)', True)
    >>> closed_form_text(sympy.sqrt(2) / 2)
    ('sqrt(2)/2', False)
    """
    return shorten_decimals(sympy.sstr(expr))


class Value(float):
    """A real number with provenance.

    A ``Value`` *is* a ``float`` (arithmetic on it gives plain floats), so it can be used
    wherever a number is expected.  It also carries

    ``exact``
        a SymPy expression equal to the number, or ``None`` when no closed form was found;
    ``error``
        a bound (``error_kind == "bound"``) or an estimate (``"estimate"``) of
        ``|float(self) - true value|``;
    ``method``
        which path produced it, e.g. ``"exact:gaussian-moments"`` or ``"numeric:gauss-kronrod"``.

    Examples
    --------
    >>> v = Value(2 ** 0.5, exact=sympy.sqrt(2), error=0.0, method="exact")
    >>> v
    sqrt(2) ≈ 1.4142135623730951 (exact)
    >>> v * 2
    2.8284271247461903
    """

    __slots__ = ("_exact", "_make_exact", "digits", "error", "error_kind", "method")

    def __new__(cls, value, *, exact=None, error=0.0, error_kind="bound", method="",
                make_exact=None, digits=None):
        self = super().__new__(cls, value)
        self._exact = exact
        # A zero-argument callable that builds ``exact`` when it is first read, for forms
        # that cost milliseconds to tidy or simplify while most callers only want the float
        # (init_table's BN rates, the zoo's gains); ``exact`` must then be left None.
        self._make_exact = make_exact
        #: The value to ≥ 25 certain digits (a SymPy Float), when a closed form gave it;
        #: arithmetic on exact values (a gain √(q/m)) reads it instead of re-evaluating.
        self.digits = digits
        self.error = float(error)
        self.error_kind = error_kind
        self.method = method
        return self

    @property
    def exact(self):
        """The closed form (a SymPy expression), or None."""
        if self._make_exact is not None:
            self._exact = self._make_exact()
            self._make_exact = None
        return self._exact

    @property
    def has_exact(self) -> bool:
        """Whether a closed form is known, without building it."""
        return self._make_exact is not None or self._exact is not None

    @classmethod
    def from_exact(cls, expr, method="exact", *, simplify=False):
        """Build a Value from a SymPy closed form; the float is correctly rounded.

        ``simplify=True``: ``.exact`` is ``sympy.simplify(expr)``, computed when first read
        (the float does not depend on it: both forms are evaluated to 30 digits)."""
        approx = float(sympy.N(expr, 30))
        # Rounding to double is the only error: half an ulp, bounded by |x|·2⁻⁵³.
        return cls(approx, exact=None if simplify else expr, error=abs(approx) * 2.0 ** -53,
                   error_kind="bound", method=method,
                   make_exact=(lambda: sympy.simplify(expr)) if simplify else None)

    def __reduce__(self):
        return (_rebuild, (float(self), self.exact, self.error, self.error_kind, self.method))

    def __repr__(self):
        if self.exact is not None:
            text, rounded = closed_form_text(self.exact)
            return f"{text} ≈ {float(self)!r} (exact{'; ' + ROUNDED_NOTE + ', in full in .exact' if rounded else ''})"
        return f"{float(self)!r} ± {self.error:.1e} ({self.method})"

    __str__ = __repr__

    def _repr_latex_(self):
        if self.exact is not None:
            floats = {f: sympy.Float(f, DISPLAY_DIGITS) for f in self.exact.atoms(sympy.Float)
                      if len(str(f).lstrip("-").replace(".", "")) > DISPLAY_DIGITS + 2}
            note = f" \\quad \\text{{({ROUNDED_NOTE})}}" if floats else ""
            return f"${sympy.latex(self.exact.xreplace(floats))} \\approx {float(self)!r}{note}$"
        return f"${float(self)!r} \\pm {self.error:.1e}$"

    def relative_error(self):
        """``error / |value|`` (inf at zero)."""
        return self.error / abs(float(self)) if float(self) else math.inf


def _rebuild(value, exact, error, error_kind, method):
    return Value(value, exact=exact, error=error, error_kind=error_kind, method=method)
