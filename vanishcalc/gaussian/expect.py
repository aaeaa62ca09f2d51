"""E[f(√q·z)], z ~ N(0, 1): closed form when one exists, certified quadrature otherwise.

Order of work (hook, then fallback):

1. ``tails.plan`` decides whether the expectation exists (``DivergenceError`` if not) and
   where the integrand is negligible.
2. Numeric value: adaptive Gauss–Kronrod in z, split at the kinks of f mapped to z = k/√q,
   plus Dirac masses of f (derivatives of functions with jumps) in closed form.  Its error
   is the quadrature estimate plus the cut-off tail.
3. Exact value: ``symbolic.closed_form``; kept only if it agrees with the numeric value
   within the numeric error, so a wrong rule can never produce a wrong number.

The bivariate E[f(u1) g(u2)] lives in ``bivariate.py`` and reuses 2. on its outer integral.
"""
from __future__ import annotations

import functools
import math
import warnings

import mpmath
import numpy as np
import sympy

from ..activation import Activation, activation
from ..errors import NonFiniteError, NotConvergedError, VanishcalcError, VanishcalcWarning
from ..validate import real
from ..value import Value
from . import numeric, scales, symbolic, tails

DEFAULT_RTOL = 1e-14


def _expect_iv(q, rtol, exact_timeout):
    qf = real("expect", "q", q, nonneg=True, why="(it is a variance)")
    rtol = real("expect", "rtol", rtol, lo=0.0, hi=1.0)
    if not (0 < rtol < 1):
        raise VanishcalcError(f"expect: rtol = {rtol!r} must lie in (0, 1)")
    if exact_timeout is not None:
        real("expect", "exact_timeout", exact_timeout, nonneg=True, why="(seconds)")
    return qf


def expect(f, q=1.0, *, rtol=DEFAULT_RTOL, exact=True, exact_timeout=2.0) -> Value:
    r"""Gaussian expectation of a function at variance ``q``.

    .. math:: \mathbb{E}[f(\sqrt{q}\,z)] = \int f(\sqrt{q}\,z)\,\frac{e^{-z^2/2}}{\sqrt{2\pi}}\,dz

    Parameters
    ----------
    f : str, sympy.Expr or Activation
        The function: a zoo name, an expression in ``x`` (``"tanh(x)**2"``) or an Activation.
    q : float
        Variance of the argument (q ≥ 0).
    rtol : float
        Target error relative to E|f(√q z)|.
    exact : bool
        Try closed forms first (default).  ``False`` gives the numeric value only.
    exact_timeout : float
        Seconds allowed for the ``sympy.integrate`` fallback (0 disables it).

    Returns
    -------
    Value
        ``.exact`` is the closed form or None; ``.error`` the absolute error; ``.method`` the path.

    Raises
    ------
    ParseError, ComplexValuedError, SingularityError
        for a bad ``f``.
    DivergenceError
        if the expectation does not exist (``exp(x**2)`` at q ≥ 1/2).
    NonFiniteError, NotConvergedError
        if the value overflows, or the quadrature cannot meet ``rtol``.

    Notes
    -----
    Methods and error estimates: notes/gaussian-expectations.md.

    Examples
    --------
    >>> expect("exp(-2*x**2)")
    sqrt(5)/5 ≈ 0.4472135954999579 (exact)
    >>> float(expect("tanh(x)**2"))
    0.3942944903978412
    """
    qf = _expect_iv(q, rtol, exact_timeout)
    act = activation(f)
    try:
        return _expect_cached(act, qf, rtol, bool(exact), exact_timeout)
    except VanishcalcError:
        raise
    except OverflowError as exc:
        raise NonFiniteError(f"E[{act.name}(√q·z)] at q = {qf:g} overflows a double: {exc}") from exc
    except (TypeError, ArithmeticError, NotImplementedError, RecursionError) as exc:
        raise NotConvergedError(f"E[{act.name}(√q·z)] at q = {qf:g} could not be computed: "
                                f"{type(exc).__name__}: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def _expect_cached(act: Activation, q: float, rtol: float, exact: bool, exact_timeout):
    if q == 0.0:
        return _at_zero(act)
    value, error, l1 = _numeric(act, q, rtol)
    if not math.isfinite(value):
        raise NonFiniteError(f"E[{act.name}(√q·z)] at q = {q:g} is not finite ({value})")
    if exact:
        try:
            closed = symbolic.closed_form(act, q, timeout=exact_timeout)
        except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError):
            # A rule tripping over an odd integrand must not cost the user the numeric value.
            closed = None
        if closed is not None:
            try:
                approx = float(sympy.N(closed, 30))
            except (TypeError, ValueError):
                approx = math.nan
            if math.isfinite(approx) and abs(approx - value) <= 10 * error + 4 * np.finfo(float).eps * l1:
                return Value.from_exact(closed, method="exact:gaussian-rules")
            warnings.warn(f"dropped closed form {closed} for E[{act.name}(√q·z)]: it gives {approx!r}, "
                          f"quadrature gives {value!r} ± {error:.1e}", VanishcalcWarning, stacklevel=3)
    return Value(value, error=error, error_kind="estimate", method="numeric:gauss-kronrod")


def _at_zero(act):
    val = act.expr.subs(act.expr.free_symbols.pop(), 0) if act.expr.free_symbols else act.expr
    if act.deltas and any(float(k) == 0.0 for k, _ in act.deltas):
        raise NonFiniteError(f"E[{act.name}(0)] is infinite: a Dirac mass sits at 0 and q = 0")
    if not val.is_finite:
        raise NonFiniteError(f"{act.name} at 0 is not finite")
    return Value.from_exact(val, method="exact:q=0")


def _numeric(act, q, rtol):
    sq = math.sqrt(q)
    label = f"E[{act.name}(√q·z)] at q = {q:g}"
    sc = scales.of_activation(act)
    # Narrow features (in z) are probed by the tail planner too: a bump at z = 12 far
    # narrower than every probe spacing must still lie inside the integration range.
    centres = [cx / sq for cx, wx in sc.features if wx / sq < 0.5]
    plan = tails.plan(act, q, extra=centres)
    scales.check_trig_phases(sc, sq, plan.z_max, label)
    f = act.numpy
    breaks = [k / sq for k in act.kinks]

    def integrand(z):
        y = f(sq * z) * numeric.std_normal_pdf(z)
        bad = ~np.isfinite(y)
        if np.any(bad):
            # f overflowed where the Gaussian is tiny: redo those points in log space.
            y[bad] = [_mp_integrand(act, sq, zz) for zz in z[bad]]
        return y

    edges = scales.mesh(sc, sq, plan.z_max, breaks, label)
    value, error, l1 = numeric.adaptive_gk(integrand, edges, rtol=rtol, label=label,
                                           max_panels=scales.MAX_PANELS, second_rule=True)
    for loc, weight in act.deltas:
        value += float(weight) * math.exp(-float(loc) ** 2 / (2 * q)) / math.sqrt(2 * math.pi * q)
    return value, error + plan.tail_error, l1


def _mp_integrand(act, sq, z):
    x = mpmath.mpf(sq) * z
    for p in act.pieces:
        if p.lo <= float(x) <= p.hi:
            try:
                v = tails.mp_eval(p.expr, x)
            except tails._Unresolvable:
                raise NotConvergedError(
                    f"E[{act.name}(√q·z)] cannot be certified: at x = {float(x):.4g} a sine or cosine "
                    "has an argument above 1e15, whose phase no double (or 30-digit) evaluation "
                    "resolves") from None
            except tails._TooLarge:
                return math.inf
            return float(v * mpmath.npdf(z))
    return math.nan
