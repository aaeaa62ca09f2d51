"""Where the Gaussian integrand lives, and whether E[f(√q·z)] exists at all.

The expectation exists iff |f(x)| e^{−x²/(2q)} is integrable.  We look at the log of the
integrand, L(z) = log|f(√q z)| − z²/2, at probe points z = ±1, ±2, ±4, …, ±1024 with mpmath
(so e^{x²} at x = 1000 is a number, not an overflow).  If L has not turned decisively
downward by the last probes, the integrand does not decay: ``DivergenceError``.  Otherwise
the integration range is cut where L has dropped 40 nats (≈ 4e-18) below its peak and
keeps falling; that cut is the tail error estimate.

The evaluator below is our own walk over the SymPy tree rather than ``lambdify``: it caps
the argument of every exponential, so exp(exp(exp(x))) is reported as super-Gaussian
growth instead of making mpmath build a number with 10^9566 digits in its exponent.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import mpmath
import sympy

from ..errors import DivergenceError, NotConvergedError, expectation_label
from ..parse import X
from . import bounds

PROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_EXP_CAP = mpmath.mpf(10) ** 8     # exp of more than this at a probe is super-Gaussian growth
_DROP = 40.0                       # nats below the peak where the integrand is cut


class _TooLarge(Exception):
    pass


class _Unresolvable(_TooLarge):
    """sin/cos/tan of an argument so large that its phase is unknowable at working precision."""


_TRIG_CAP = mpmath.mpf(10) ** 15


def _trig(fn):
    def capped(a):
        if abs(a) > _TRIG_CAP:
            # mpmath would carry every digit of a (e^(9e6) has 4e6) to find a mod 2π.
            raise _Unresolvable
        return fn(a)
    return capped


# A larger cap for *values* (not growth tests): softplus(x) at x = 1e15 (q = 1e30) needs
# exp(1e15), an ordinary mpf; exp(exp(1e15)) would need a 1e15-digit exponent.
VALUE_EXP_CAP = mpmath.mpf(10) ** 30
_cap = [_EXP_CAP]


def _cap_exp(arg):
    if arg > _cap[0]:
        raise _TooLarge
    if arg < -_cap[0]:
        return mpmath.mpf(0)
    return mpmath.exp(arg)


def mp_value(expr, x):
    """``mp_eval`` with the value cap: for numbers, where the growth cap is too strict."""
    _cap[0] = VALUE_EXP_CAP
    try:
        return mp_eval(expr, x)
    finally:
        _cap[0] = _EXP_CAP


_MP = {
    sympy.exp: _cap_exp,
    sympy.log: lambda a: mpmath.log(a),
    sympy.sin: _trig(mpmath.sin), sympy.cos: _trig(mpmath.cos), sympy.tan: _trig(mpmath.tan),
    sympy.tanh: mpmath.tanh, sympy.atan: mpmath.atan,
    sympy.sinh: lambda a: (_cap_exp(a) - _cap_exp(-a)) / 2,
    sympy.cosh: lambda a: (_cap_exp(a) + _cap_exp(-a)) / 2,
    sympy.erf: mpmath.erf, sympy.erfc: mpmath.erfc,
    sympy.Abs: abs, sympy.sign: mpmath.sign,
}


@functools.lru_cache(maxsize=4096)
def _mp_number(expr, prec):
    # evalf was half the tail planner's time; a constant is converted once per precision.
    with mpmath.workprec(prec):
        return mpmath.mpf(sympy.N(expr, mpmath.mp.dps + 5))


def mp_eval(expr, x):
    """Evaluate a smooth (Piecewise-free) expression at mpf ``x`` with capped exponentials."""
    if expr is X:
        return x
    if expr.is_Number or expr.is_NumberSymbol:
        return _mp_number(expr, mpmath.mp.prec)
    if expr.is_Add:
        return mpmath.fsum(mp_eval(a, x) for a in expr.args)
    if expr.is_Mul:
        out = mpmath.mpf(1)
        for a in expr.args:
            out *= mp_eval(a, x)
        return out
    if expr.is_Pow:
        base, e = expr.args
        b = mp_eval(base, x)
        if e.is_Integer:
            return b ** int(e)
        ev = mp_eval(e, x)
        if b == 0:
            return mpmath.mpf(0) if ev > 0 else mpmath.inf
        # b**e = exp(e·log b): cap it like an exponential.
        if b > 0:
            return _cap_exp(ev * mpmath.log(b))
        return b ** ev
    fn = _MP.get(type(expr)) or _MP.get(expr.func)
    if fn is None:
        raise NotImplementedError(f"no mpmath evaluation for {expr.func}")
    return fn(*[mp_eval(a, x) for a in expr.args])


@dataclass(frozen=True)
class TailPlan:
    """Where to integrate: z ∈ [−z_max, z_max]; ``tail_error`` estimates what is cut off."""

    z_max: float
    tail_error: float
    log_peak: float


def _log_integrand(act, q, z):
    x = mpmath.sqrt(q) * z
    piece = act.pieces[-1] if z > 0 else act.pieces[0]
    return _log_abs(piece, x, mpmath.mp.prec) - z * z / 2


@functools.lru_cache(maxsize=65536)
def _log_abs(piece, x, prec):
    """log|φ(x)| on ``piece`` (nan: undefined, inf: super-Gaussian growth).  Cached on the
    exact mpf x: the probes z = 2^j at q and at 4q share 10 of their 11 points x = √q·z
    (√(4q) = 2√q exactly in binary), and a critical-line scan plans ~50 octaves of q."""
    try:
        try:
            v = mp_eval(piece.expr, x)
        except _Unresolvable:
            raise
        except _TooLarge:
            if math.isfinite(bounds.bound(piece.expr, float(x), float(x))):
                raise
            # Unbounded here: evaluate with the value cap (softplus(1e15) = 1e15).
            v = mp_value(piece.expr, x)
            if abs(v) > mpmath.exp(_EXP_CAP):
                return math.inf      # growth beyond e^(1e8): super-Gaussian
    except (_TooLarge, MemoryError):
        # Past what mpmath can evaluate (exp(exp(x)), sin(e^(e^x))): bound |φ(x)| instead.
        # tanh, erf, sin, sigmoid, exp(−positive) are bounded whatever their argument.
        top = bounds.bound(piece.expr, float(x), float(x))
        if not math.isfinite(top):
            return math.inf
        return math.log(top) if top > 0 else -math.inf
    except (ZeroDivisionError, ValueError, OverflowError):
        return math.nan
    if isinstance(v, mpmath.mpc):
        return math.nan
    av = abs(v)
    if av == 0:
        return -math.inf
    return float(mpmath.log(av))


def plan(act, q: float, extra=()) -> TailPlan:
    """Decide the integration range for E[φ(√q z)], or raise DivergenceError.

    ``extra`` are further points (in z) to look at besides the fixed probes: the centres of
    narrow features, which the range must include where the integrand there matters.

    Raises
    ------
    DivergenceError
        if |φ(x)|·e^{−x²/(2q)} does not decay at ±∞ (e.g. exp(x**2) at q ≥ 1/2).
    NotConvergedError
        if it decays, but too slowly to be cut within |z| ≤ 1024 at the working accuracy.
    """
    with mpmath.workdps(30):
        sides = {}
        for sign in (1, -1):
            sides[sign] = [_log_integrand(act, q, sign * z) for z in PROBES]
    for sign, L in sides.items():
        for z, val in zip(PROBES, L):
            if math.isnan(val):
                raise DivergenceError(f"{expectation_label(act.name)} is undefined: φ cannot be evaluated at "
                                      f"x = {sign * z * math.sqrt(q):.4g}")
            if val == math.inf:
                raise DivergenceError(
                    f"{expectation_label(act.name)} does not exist at q = {q:g}: φ grows faster than any "
                    f"Gaussian tail (an exponential argument exceeds 1e8 at x = {sign * z * math.sqrt(q):.4g})")
    with mpmath.workdps(30):
        extra_L = [(z, _log_integrand(act, q, z)) for z in extra if abs(z) < 1e300]
    extra_L = [(z, v) for z, v in extra_L if not math.isnan(v)]
    finite = [v for L in sides.values() for v in L if v > -math.inf]
    finite += [v for _, v in extra_L if -math.inf < v < math.inf]
    log_peak = max(finite) if finite else 0.0
    cut = []
    tail = 0.0
    for sign, L in sides.items():
        last, prev = L[-1], L[-2]
        if last > -math.inf and last >= prev - 1.0:
            raise DivergenceError(
                f"{expectation_label(act.name)} does not exist at q = {q:g}: |φ(x)|·exp(−x²/(2q)) does not "
                f"decay as x → {'+' if sign > 0 else '-'}∞ (log-integrand {prev:.4g} → {last:.4g} "
                f"between |z| = {PROBES[-2]} and {PROBES[-1]})")
        # First probe from which L stays ≥ _DROP below the peak and keeps falling.
        idx = None
        for i in range(len(PROBES)):
            tail_vals = L[i:]
            if all(v <= log_peak - _DROP for v in tail_vals) and \
                    all(b <= a for a, b in zip(tail_vals, tail_vals[1:])):
                idx = i
                break
        if idx is None:
            raise NotConvergedError(
                f"{expectation_label(act.name)} at q = {q:g} exists but its tails are too heavy to cut "
                f"within |z| ≤ {PROBES[-1]}", best=None)
        side_cut, side_tail = float(PROBES[idx]), (math.exp(L[idx]) if L[idx] > -math.inf else 0.0)
        # Where φ is bounded on this side (|φ| ≤ M), the integrand is below M·e^{−z²/2}: a
        # cut from that envelope is often far tighter than the next power-of-2 probe, which
        # matters when every panel is costly (fast oscillation needs panels per period).
        piece = act.pieces[-1] if sign > 0 else act.pieces[0]
        top = bounds.bound(piece.expr, piece.lo, piece.hi)
        if 0 < top < math.inf:
            z_env = math.sqrt(max(2 * (math.log(top) - log_peak + _DROP), 0.0))
            if z_env < side_cut:
                side_cut = z_env
                side_tail = top * math.erfc(z_env / math.sqrt(2)) / 2
        cut.append(side_cut)
        tail += side_tail
    z_max = float(max(max(cut), 8))
    for z, v in extra_L:
        # Past a feature that matters, the Gaussian factor alone falls by more than
        # 10·|z| + 50 nats within 10 more units of z (if φ grows no further there).
        if v > log_peak - _DROP and abs(z) + 10 > z_max:
            z_max = abs(z) + 10.0
    return TailPlan(z_max=z_max, tail_error=tail, log_peak=log_peak)
