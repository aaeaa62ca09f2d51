"""``Value``: a float that carries its closed form, its error and how it was found."""
from __future__ import annotations

import math

import sympy


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

    __slots__ = ("exact", "error", "error_kind", "method")

    def __new__(cls, value, *, exact=None, error=0.0, error_kind="bound", method=""):
        self = super().__new__(cls, value)
        self.exact = exact
        self.error = float(error)
        self.error_kind = error_kind
        self.method = method
        return self

    @classmethod
    def from_exact(cls, expr, method="exact"):
        """Build a Value from a SymPy closed form; the float is correctly rounded."""
        approx = float(sympy.N(expr, 30))
        # Rounding to double is the only error: half an ulp, bounded by |x|·2⁻⁵³.
        return cls(approx, exact=expr, error=abs(approx) * 2.0 ** -53, error_kind="bound",
                   method=method)

    def __reduce__(self):
        return (_rebuild, (float(self), self.exact, self.error, self.error_kind, self.method))

    def __repr__(self):
        if self.exact is not None:
            return f"{sympy.sstr(self.exact)} ≈ {float(self)!r} (exact)"
        return f"{float(self)!r} ± {self.error:.1e} ({self.method})"

    __str__ = __repr__

    def _repr_latex_(self):
        if self.exact is not None:
            return f"${sympy.latex(self.exact)} \\approx {float(self)!r}$"
        return f"${float(self)!r} \\pm {self.error:.1e}$"

    def relative_error(self):
        """``error / |value|`` (inf at zero)."""
        return self.error / abs(float(self)) if float(self) else math.inf


def _rebuild(value, exact, error, error_kind, method):
    return Value(value, exact=exact, error=error, error_kind=error_kind, method=method)
