"""mpmath reference for Gaussian expectations E[f(√q·z)], z ~ N(0, 1).

.. math::
    \\mathbb{E}[f(\\sqrt{q}\\,z)] = \\int_{-\\infty}^{\\infty} f(x)\\,
        \\frac{e^{-x^2/(2q)}}{\\sqrt{2\\pi q}}\\,dx

computed with ``mpmath.quad`` (tanh–sinh) at ``dps`` digits.  The real line is split at the
kinks the *caller* passes (in x), and at a fixed grid ±√q·{1, 2, 4, 8, 16}, so no
quadrature panel straddles a point where f is not smooth.  This module deliberately does
not import vanishcalc: the kinks and the expressions come from the tests.

The scale ``abs_mean`` = E|f(√q z)| is what relative-error targets are measured against;
it is computed at low precision (it is a scale, not a reference value).
"""
from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy

X = sympy.Symbol("x", real=True)

_GRID_Z = (-16, -8, -4, -2, -1, 0, 1, 2, 4, 8, 16)


@dataclass(frozen=True)
class GaussRef:
    """A reference expectation: ``value`` (mpf), its quadrature error estimate, and E|f|."""

    value: mpmath.mpf
    error: mpmath.mpf
    abs_mean: float

    def __float__(self):
        return float(self.value)


def _breakpoints(q, kinks):
    sq = mpmath.sqrt(mpmath.mpf(q))
    pts = {mpmath.mpf(k) if not isinstance(k, sympy.Basic) else mpmath.mpf(sympy.N(k, mpmath.mp.dps + 5))
           for k in kinks}
    pts |= {sq * t for t in _GRID_Z}
    return [mpmath.ninf, *sorted(pts), mpmath.inf]


def lambdify_mp(expr, symbol=X):
    """``expr`` as a Python function of one mpf, via ``sympy.lambdify(..., "mpmath")``."""
    return sympy.lambdify(symbol, expr, "mpmath")


def gauss_expect(expr, q=1, kinks=(), *, dps=40, symbol=X, abs_dps=15) -> GaussRef:
    """E[f(√q z)] for a SymPy expression ``expr`` in ``symbol``, split at ``kinks`` (in x).

    Parameters
    ----------
    expr : sympy.Expr
        f as an expression in ``symbol``.
    q : number
        Variance of the argument (q > 0); pass a string or Rational for exactness (``"1/4"``).
    kinks : iterable of numbers
        Points (in x) where f or a derivative is not smooth; written by the test.
    dps : int
        Working precision of the reference value.

    Returns
    -------
    GaussRef
        ``value`` to about ``dps`` digits, mpmath's own ``error`` estimate, and E|f| as a float.
    """
    f = lambdify_mp(expr, symbol)
    with mpmath.workdps(dps + 10):
        qm = mpmath.mpf(sympy.N(sympy.sympify(q), dps + 15)) if isinstance(q, (str, sympy.Basic)) \
            else mpmath.mpf(q)
        norm = 1 / mpmath.sqrt(2 * mpmath.pi * qm)
        pts = _breakpoints(qm, kinks)

        def g(x):
            return f(x) * mpmath.exp(-x * x / (2 * qm))

        value, err = mpmath.quad(g, pts, error=True)
        value, err = value * norm, abs(err) * norm
    with mpmath.workdps(abs_dps):
        pts_abs = _breakpoints(qm, list(kinks))
        qa = mpmath.mpf(qm)
        abs_mean = mpmath.quad(lambda x: abs(f(x)) * mpmath.exp(-x * x / (2 * qa)), pts_abs) \
            / mpmath.sqrt(2 * mpmath.pi * qa)
    with mpmath.workdps(dps):
        return GaussRef(value=+value, error=+err, abs_mean=float(abs_mean))


def gauss_moments(expr, q=1, kinks=(), *, dps=40, symbol=X):
    """References for E[f], E[f²] and E[f'²] at q (f' by ``sympy.diff``; same kinks)."""
    d = sympy.diff(expr, symbol)
    return (gauss_expect(expr, q, kinks, dps=dps, symbol=symbol),
            gauss_expect(expr ** 2, q, kinks, dps=dps, symbol=symbol),
            gauss_expect(d ** 2, q, kinks, dps=dps, symbol=symbol))


# ---------------------------------------------------------------- the zoo, written independently
#
# Each activation as the issue (#3) and the cited papers define it, written here by hand as a
# SymPy expression (piecewise functions as Piecewise, not the Max/Min forms the library uses)
# together with its kinks.  Tests compare the library's zoo, kinks and expectations to these.

_x = X
_P = sympy.Piecewise
_R = sympy.Rational
SELU_ALPHA = sympy.Float("1.6732632423543772848170429916717", 40)    # Klambauer et al. 2017
SELU_LAMBDA = sympy.Float("1.0507009873554804934193349852946", 40)


def _softplus(u):
    return sympy.log(1 + sympy.exp(u))


ZOO = {
    # name: (expression, kinks)
    "linear": (_x, ()),
    "relu": (_P((0, _x < 0), (_x, True)), (0,)),
    "leaky_relu": (_P((_x / 100, _x < 0), (_x, True)), (0,)),
    "elu": (_P((sympy.exp(_x) - 1, _x < 0), (_x, True)), (0,)),
    "selu": (SELU_LAMBDA * _P((SELU_ALPHA * (sympy.exp(_x) - 1), _x < 0), (_x, True)), (0,)),
    "celu": (_P((sympy.exp(_x) - 1, _x < 0), (_x, True)), (0,)),
    "gelu": (_x / 2 * (1 + sympy.erf(_x / sympy.sqrt(2))), ()),
    "gelu_tanh": (_x / 2 * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (_x + _R(44715, 10 ** 6) * _x ** 3))), ()),
    "silu": (_x / (1 + sympy.exp(-_x)), ()),
    "mish": (_x * sympy.tanh(_softplus(_x)), ()),
    "tanh": (sympy.tanh(_x), ()),
    "sigmoid": (1 / (1 + sympy.exp(-_x)), ()),
    "hard_sigmoid": (_P((0, _x < -3), (_x / 6 + _R(1, 2), _x < 3), (1, True)), (-3, 3)),
    "hardtanh": (_P((-1, _x < -1), (_x, _x < 1), (1, True)), (-1, 1)),
    "relu6": (_P((0, _x < 0), (_x, _x < 6), (6, True)), (0, 6)),
    "hardswish": (_P((0, _x < -3), (_x * (_x + 3) / 6, _x < 3), (_x, True)), (-3, 3)),
    "softplus": (_softplus(_x), ()),
    "softsign": (_P((_x / (1 - _x), _x < 0), (_x / (1 + _x), True)), (0,)),
    "log_sigmoid": (-_softplus(-_x), ()),
    "sin": (sympy.sin(_x), ()),
    "erf": (sympy.erf(_x), ()),
    "gaussian": (sympy.exp(-_x ** 2), ()),
    "lecun_tanh": (_R(17159, 10000) * sympy.tanh(_R(2, 3) * _x), ()),
}
ALIASES = {"swish": "silu", "identity": "linear"}
