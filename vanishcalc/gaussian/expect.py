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
from ..errors import (NonFiniteError, NotConvergedError, VanishcalcError, VanishcalcWarning,
                      expectation_label)
from ..validate import real
from ..value import Value
from . import numeric, scales, series, symbolic, tails

DEFAULT_RTOL = 1e-14
# An error estimate up to ACCEPT × the target is returned as it is (honestly) rather than
# raised as NotConvergedError: at the default rtol that is 1e-10 of E|f|.
ACCEPT = 1e4


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
    >>> v = expect("tanh(x)**2")       # mpmath: 0.39429449039784117441…
    >>> abs(float(v) - 0.39429449039784117441) <= v.error
    True
    """
    qf = _expect_iv(q, rtol, exact_timeout)
    act = activation(f)
    try:
        return _expect_cached(act, qf, rtol, bool(exact), exact_timeout)
    except VanishcalcError:
        raise
    except OverflowError as exc:
        raise NonFiniteError(f"{expectation_label(act.name)} at q = {qf:g} overflows a double: {exc}") from exc
    except (TypeError, ArithmeticError, NotImplementedError, RecursionError) as exc:
        raise NotConvergedError(f"{expectation_label(act.name)} at q = {qf:g} could not be computed: "
                                f"{type(exc).__name__}: {exc}") from exc


@functools.lru_cache(maxsize=4096)
def _expect_cached(act: Activation, q: float, rtol: float, exact: bool, exact_timeout):
    if q == 0.0:
        return _at_zero(act)
    if series.applicable(act, q):
        value, error, l1 = _from_series(act, q)
        method = "series:tiny-q"
    elif _double_is_reliable(act, q):
        value, error, l1 = _numeric(act, q, rtol)
        method = "numeric:gauss-kronrod"
    else:
        value, error, l1 = _high_precision(act, q)
        method = "numeric:mpmath"
    if not math.isfinite(value):
        raise NonFiniteError(f"{expectation_label(act.name)} at q = {q:g} is not finite ({value})")
    if exact:
        try:
            closed = symbolic.closed_form(act, q, timeout=exact_timeout)
        except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError):
            # A rule tripping over an odd integrand must not cost the user the numeric value.
            closed = None
        if closed is not None:
            digits = closed_digits(closed)
            approx = math.nan if digits is None else float(digits)
            if math.isfinite(approx) and abs(approx - value) <= 10 * error + 4 * np.finfo(float).eps * l1:
                return _exact_value(closed, digits, "exact:gaussian-rules")
            if math.isfinite(approx):
                return _referee(act, q, closed, digits, value, error, l1, method)
            # SymPy cannot evaluate the closed form to 30 digits (it cancels exp(1e-200)
            # against erf(…)): its float would be unknown, so the numeric value is returned.
    return Value(value, error=error, error_kind="estimate", method=method)


def _exact_value(closed, digits, method):
    """A Value holding the closed form (tidied when first read), with the float from its
    *strict* high-precision digits (``Value.from_exact``'s plain evalf returns noise where
    the form cancels 100 digits)."""
    approx = float(digits)
    err = 0.0 if closed == 0 else _rounding(approx)
    return Value(approx, make_exact=lambda: symbolic.tidy(closed), error=err, error_kind="bound",
                 method=method, digits=digits)


def _from_series(act, q):
    v, e = series.expect_series(act, q)
    value = float(v)
    err = float(e) + _rounding(value)
    return value, err, abs(value)


def _rounding(value):
    """Half an ulp of a double, and 2^-1074 (the least double) where it is subnormal."""
    return abs(value) * 2.0 ** -53 + (2.0 ** -1074 if abs(value) < _NORMAL_MIN else 0.0)


def closed_digits(closed):
    """The closed form as a 50-digit SymPy Float whose first 25 digits are certain, or None
    when SymPy cannot reach that accuracy (catastrophic cancellation in
    exp(2e30)·(1 − erf(…)))."""
    try:
        v30 = closed.evalf(30, strict=True, maxn=4000)
        # evalf's strict mode trusts its own error estimates, which a form that cancels
        # 30 digits (elu at q = 1e-30) can fool by an ulp; a second evaluation at 50 digits
        # must agree with it.
        v50 = closed.evalf(50, strict=True, maxn=4000)
        if abs(v50 - v30) > abs(v50) * 1e-25:
            return None
        if v50 == 0:
            return sympy.Float(0)          # an exact zero (odd φ) evaluates to Zero, not a Float
        if not isinstance(v50, sympy.Float):
            return None        # a complex or unevaluated result: no real digits to give
        return v50
    except (TypeError, ValueError, ArithmeticError, sympy.core.evalf.PrecisionExhausted):
        return None


# Sample points (in z) where φ is evaluated both in double and at high precision.
_CHECK_Z = np.array([-3.1, -1.7, -0.9, -0.37, -0.013, 0.011, 0.41, 0.83, 1.9, 2.9])
_NORMAL_MIN = 2.2250738585072014e-308


def _check_dps(act, sq):
    """Digits for a high-precision evaluation at x = sq·z: 30, plus twice the decades that
    separate the scales of the expression (sq, its feature widths, its constants) from 1:
    exp(x) − 1 at x = 1e-100 cancels 100 digits, and so can the pieces' integrals."""
    return 30 + 2 * scales.decades(act, sq)


def _double_is_reliable(act, q):
    """Whether φ in double precision matches φ at high precision at a few sample points.

    exp(x) − 1 (elu's negative piece) is 0 in double for |x| < 1e-17, and a quadrature of
    those zeros converges beautifully to a wrong value; so does any cancelling formula at a
    scale far from 1.  At unit scale this costs ten 30-digit evaluations (< 1 ms).
    """
    sq = math.sqrt(q)
    if scales.decades(act, sq) < 3:
        # Every scale within 1e±3 of 1: the double loses at most a few digits, far below the
        # 1e-12 this check looks for, so the ten 30-digit evaluations are skipped.
        return True
    x = sq * _CHECK_Z
    try:
        with np.errstate(all="ignore"):
            y = np.asarray(act.numpy(x), dtype=float) * np.ones_like(x)
    except (OverflowError, TypeError, ValueError):
        return False     # a constant beyond the double range (10**320)
    dps = _check_dps(act, sq)
    pairs = []
    with mpmath.workdps(dps):
        for xi, yi in zip(x, y):
            if not math.isfinite(yi):
                continue
            piece = next((p for p in act.pieces if p.lo <= xi <= p.hi), None)
            if piece is None:
                continue
            try:
                v = tails.mp_eval(piece.expr, mpmath.mpf(float(xi)))
            except (tails._TooLarge, ZeroDivisionError, ValueError, NotImplementedError, MemoryError):
                continue
            if not isinstance(v, mpmath.mpc):
                pairs.append((yi, v))
    # Measured against the largest sample: a value that underflows where φ is negligible
    # (exp(−e^(e^x)) at x = 3) is harmless; one that cancels to 0 (elu) or to a subnormal
    # with 12 bits left (x² at q = 1e-320) is not.
    scale = max((abs(v) for _, v in pairs), default=0)
    # Below 1e-290 a mismatch is an underflow the double cannot help (and the integral
    # there is negligible unless all of it is that small, which the subnormal floors cover).
    return all(abs(yi - v) <= 1e-12 * scale + 1e-290 for yi, v in pairs)


def _high_precision(act, q):
    """(value, error, E|f|) by the mpmath path, for integrands a double cannot hold."""
    label = f"{expectation_label(act.name)} at q = {q:g}"
    value, err = _mp_reference(act, q, label, dps=_check_dps(act, math.sqrt(q)))
    # mpmath's own estimate is the difference of two tanh–sinh levels: widened tenfold, and
    # never below an ulp of the result.
    err = 10 * err + 2 * _rounding(value)
    return value, err, abs(value)


def _referee(act, q, closed, digits, value, error, l1, method):
    """Closed form and quadrature disagree: decide with an independent 30-digit computation.

    The referee is mpmath's tanh–sinh quadrature of the same integrand, evaluated at 30
    digits by our own capped evaluator, on panels split at the kinks and at every feature
    the expression shows (``scales``).  Whichever of the two agrees with it is returned;
    if neither does, nothing is certified.
    """
    label = f"{expectation_label(act.name)} at q = {q:g}"
    approx = float(digits)
    closed = symbolic.tidy(closed)      # as the messages below show it
    if closed.has(sympy.Float):
        # Decimal constants (selu's α, λ to 31 digits) are multiplied out to ~40 digits in
        # the closed form; where its terms cancel (q = 1e-30) those digits are all it has.
        warnings.warn(f"dropped closed form {closed} for {label}: its decimal constants cannot "
                      f"resolve the cancellation in it (it gives {approx!r}; {method} gives "
                      f"{value!r} ± {error:.1e})", VanishcalcWarning, stacklevel=4)
        return Value(value, error=error, error_kind="estimate", method=method)
    ref, ref_err = _mp_reference(act, q, label, dps=_check_dps(act, math.sqrt(q)))
    slack = ref_err + 4 * np.finfo(float).eps * max(l1, abs(ref))
    if math.isfinite(approx) and abs(approx - ref) <= slack + abs(ref) * 2.0 ** -50:
        return _exact_value(closed, digits, "exact:gaussian-rules(refereed)")
    if abs(value - ref) <= error + slack:
        warnings.warn(f"dropped closed form {closed} for {label}: it gives {approx!r}, quadrature "
                      f"gives {value!r} ± {error:.1e} and a 30-digit referee {ref!r}",
                      VanishcalcWarning, stacklevel=4)
        return Value(value, error=error, error_kind="estimate", method=method)
    raise NotConvergedError(
        f"{label} is not certified: the closed form {closed} gives {approx!r}, quadrature "
        f"{value!r} ± {error:.1e}, and a 30-digit referee {ref!r} ± {ref_err:.1e}",
        best=Value(value, error=max(error, abs(value - ref)), error_kind="estimate",
                   method=method))


_REFEREE_PANELS = 600


_MAX_DPS = 200


def _mp_reference(act, q, label, dps=30):
    """E[φ(√q z)] by mpmath.quad at ``dps`` digits, with its error estimate (floats)."""
    if dps > _MAX_DPS:
        raise NotConvergedError(
            f"{label}: the scales of φ and q span more than {(_MAX_DPS - 30) // 2} decades; "
            "neither double precision nor a bounded-time high-precision quadrature resolves it")
    sc = scales.of_activation(act)
    with mpmath.workdps(dps):
        qm = mpmath.mpf(symbolic.exact_q(q).p) / symbolic.exact_q(q).q
        sq = mpmath.sqrt(qm)
        z_max = tails.plan(act, q).z_max
        pts = {mpmath.mpf(t) for t in range(-int(z_max), int(z_max) + 1)}
        pts |= {mpmath.mpf(-z_max), mpmath.mpf(z_max)}
        for k in act.kinks_exact:
            pts.add(mpmath.mpf(sympy.N(k, dps + 5)) / sq)
        for cx, wx in sc.features:
            cz, wz = mpmath.mpf(cx) / sq, mpmath.mpf(wx) / sq
            if abs(cz) < z_max + 1 and wz < 1:
                for j in range(-2, int(math.ceil(math.log2(2 / float(wz)))) + 1):
                    pts |= {cz - wz * 2 ** j, cz + wz * 2 ** j}
                pts.add(cz)
        edges = sorted(p for p in pts if abs(p) <= z_max)
        if len(edges) > _REFEREE_PANELS:
            raise NotConvergedError(f"{label}: closed form and quadrature disagree, and the "
                                    "integrand is too oscillatory for the 30-digit referee")
        total, err = mpmath.mpf(0), mpmath.mpf(0)
        for a, b in zip(edges, edges[1:]):
            mid = float((a + b) / 2) * float(sq)
            piece = next((p for p in act.pieces if p.lo <= mid <= p.hi), act.pieces[-1])

            def g(z, expr=piece.expr):
                return tails.mp_eval(expr, sq * z) * mpmath.npdf(z)
            try:
                v, e = mpmath.quad(g, [a, b], error=True)
            except tails._TooLarge:
                raise NotConvergedError(f"{label}: φ cannot be evaluated at {dps} digits either "
                                        "(an exponential or a phase beyond reach)") from None
            total += v
            err += abs(e)
        for loc, weight in act.deltas:
            lm = mpmath.mpf(sympy.N(loc, dps + 5))
            total += mpmath.mpf(sympy.N(weight, dps + 5)) * mpmath.npdf(lm, 0, sq)
        return float(total), float(err) + tails.plan(act, q).tail_error


def _at_zero(act):
    val = act.expr.subs(act.expr.free_symbols.pop(), 0) if act.expr.free_symbols else act.expr
    if act.deltas and any(float(k) == 0.0 for k, _ in act.deltas):
        raise NonFiniteError(f"{expectation_label(act.name, '0')} is infinite: a Dirac mass sits at 0 and q = 0")
    if not val.is_finite:
        raise NonFiniteError(f"{act.name} at 0 is not finite")
    return Value.from_exact(val, method="exact:q=0")


def _numeric(act, q, rtol):
    sq = math.sqrt(q)
    label = f"{expectation_label(act.name)} at q = {q:g}"
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
    try:
        value, error, l1 = numeric.adaptive_gk(integrand, edges, rtol=rtol, label=label,
                                               max_panels=scales.MAX_PANELS, second_rule=True)
    except NotConvergedError as exc:
        # The target rtol·E|f| is a wish; the error bar is what must be true.  When the
        # rounding noise of φ itself (exp(x) − 1 at tiny x) keeps the estimate a little
        # above the target, the honest value ± error is returned, not an error.
        if exc.best is None or not hasattr(exc, "l1") or exc.best[1] > ACCEPT * rtol * exc.l1:
            raise
        (value, error), l1 = exc.best, exc.l1
    for loc, weight in act.deltas:
        value += float(weight) * math.exp(-float(loc) ** 2 / (2 * q)) / math.sqrt(2 * math.pi * q)
    return value, error + plan.tail_error + _resolution_floor(sc, sq, plan.z_max) * l1, l1


def _resolution_floor(sc, sq, z_max):
    """Relative error from where a double can put x: near a feature of width w at c, x
    carries an error of an ulp of c, and φ changes by (ulp of c)/w of itself, e.g. 1e-12
    for exp(−1e6·(x − 3)²).  No rule's error estimate sees it (every rule evaluates the
    same rounded x), so it is added here."""
    worst = 0.0
    for cx, wx in sc.features:
        cz, wz = cx / sq, wx / sq
        if wz < 0.5 and abs(cz) <= z_max:
            worst = max(worst, abs(cz) / wz)
    return 8 * np.finfo(float).eps * worst


def _mp_integrand(act, sq, z):
    x = mpmath.mpf(sq) * z
    for p in act.pieces:
        if p.lo <= float(x) <= p.hi:
            try:
                v = tails.mp_value(p.expr, x)
            except tails._Unresolvable:
                raise NotConvergedError(
                    f"{expectation_label(act.name)} cannot be certified: at x = {float(x):.4g} a sine or cosine "
                    "has an argument above 1e15, whose phase no double (or 30-digit) evaluation "
                    "resolves") from None
            except (tails._TooLarge, MemoryError):
                return math.inf
            return float(v * mpmath.npdf(z))
    return math.nan
