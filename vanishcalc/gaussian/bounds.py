"""Interval bounds of an expression over an interval of x, by walking its SymPy tree.

``value_range(expr, lo, hi)`` returns floats (a, b) with a ≤ f(x) ≤ b for every x in
(lo, hi), possibly ±inf.  It is interval arithmetic: sound (the true range lies inside)
but not tight.  Its use is the tail planner's question "is φ bounded out there?":
tanh, erf, sin, cos, atan, sigmoid-like 1/(1 + e^u) and e^{−(positive)} are bounded
whatever their argument, so tanh(exp(exp(x))) is bounded even though no probe can
evaluate exp(exp(x)) at x = 1000.
"""
from __future__ import annotations

import math

import sympy

from ..parse import X

_INF = math.inf
_FULL = (-_INF, _INF)


def _exp(v):
    if v == _INF:
        return _INF
    if v == -_INF:
        return 0.0
    try:
        return math.exp(v)
    except OverflowError:
        return _INF


def _mul(a, b):
    # 0·∞ = 0: the closed intervals contain their endpoints, so this is the sound rule.
    return 0.0 if a == 0 or b == 0 else a * b


def _monotone(fn, lo, hi, limits):
    def at(v):
        if v == _INF:
            return limits[1]
        if v == -_INF:
            return limits[0]
        try:
            return fn(v)
        except (OverflowError, ValueError):
            return limits[1] if v > 0 else limits[0]
    return at(lo), at(hi)


def _pow(base, e):
    lo, hi = base
    if e.is_Integer:
        n = int(e)
        if n == 0:
            return 1.0, 1.0
        if n < 0:
            if lo <= 0 <= hi:
                return _FULL
            inv = (1.0 / hi if hi != _INF else 0.0, 1.0 / lo if lo != -_INF else 0.0)
            return _pow((min(inv), max(inv)), sympy.Integer(-n))

        def p(v):
            try:
                return v ** n if abs(v) != _INF else (_INF if (v > 0 or n % 2 == 0) else -_INF)
            except OverflowError:
                return _INF if (v > 0 or n % 2 == 0) else -_INF
        if n % 2 == 1:
            return p(lo), p(hi)
        top = max(p(lo), p(hi))
        return (0.0 if lo <= 0 <= hi else min(p(lo), p(hi))), top
    if not e.is_number or lo < 0:
        return _FULL
    ev = float(e)

    def p(v):
        if v == _INF:
            return _INF if ev > 0 else 0.0
        if v == 0:
            return 0.0 if ev > 0 else _INF
        try:
            return v ** ev
        except OverflowError:
            return _INF
    a, b = p(lo), p(hi)
    return min(a, b), max(a, b)


_BOUNDED = {
    sympy.sin: (-1.0, 1.0), sympy.cos: (-1.0, 1.0), sympy.sign: (-1.0, 1.0),
}
_MONOTONE = {
    sympy.tanh: (math.tanh, (-1.0, 1.0)),
    sympy.erf: (math.erf, (-1.0, 1.0)),
    sympy.atan: (math.atan, (-math.pi / 2, math.pi / 2)),
    sympy.erfc: (math.erfc, (2.0, 0.0)),
    sympy.sinh: (math.sinh, (-_INF, _INF)),
}


def value_range(expr, lo=-_INF, hi=_INF):
    """(a, b) with a ≤ expr(x) ≤ b for x in [lo, hi] (floats, possibly infinite)."""
    try:
        return _range(expr, (float(lo), float(hi)))
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return _FULL


def bound(expr, lo=-_INF, hi=_INF):
    """sup |expr(x)| over [lo, hi], or inf when no finite bound is found."""
    a, b = value_range(expr, lo, hi)
    return max(abs(a), abs(b))


def _range(e, xr):
    if e is X:
        return xr
    if e.is_Number or e.is_NumberSymbol:
        v = float(e)
        return v, v
    if not e.has(X):
        try:
            v = complex(e)
        except (TypeError, ValueError):
            return _FULL
        if v.imag != 0:
            return _FULL
        return v.real, v.real
    if e.is_Add:
        a = b = 0.0
        for arg in e.args:
            lo, hi = _range(arg, xr)
            a, b = a + lo, b + hi
            if math.isnan(a) or math.isnan(b):     # −∞ + ∞
                return _FULL
        return a, b
    if e.is_Mul:
        a, b = 1.0, 1.0
        for arg in e.args:
            lo, hi = _range(arg, xr)
            prods = [_mul(a, lo), _mul(a, hi), _mul(b, lo), _mul(b, hi)]
            a, b = min(prods), max(prods)
        return a, b
    if e.is_Pow:
        base, ex = e.args
        if base is sympy.E:
            lo, hi = _range(ex, xr)
            return _exp(lo), _exp(hi)
        if ex.has(X):
            return _FULL
        return _pow(_range(base, xr), ex)
    fn = e.func
    if fn is sympy.exp:
        lo, hi = _range(e.args[0], xr)
        return _exp(lo), _exp(hi)
    if fn in _BOUNDED:
        return _BOUNDED[fn]
    if fn in _MONOTONE:
        f, lims = _MONOTONE[fn]
        lo, hi = _range(e.args[0], xr)
        a, b = _monotone(f, lo, hi, lims)
        return min(a, b), max(a, b)
    if fn is sympy.cosh:
        lo, hi = _range(e.args[0], xr)
        m = max(abs(lo), abs(hi))
        top = _INF if m == _INF else _exp(m)
        return 1.0, top
    if fn is sympy.log:
        lo, hi = _range(e.args[0], xr)
        if lo <= 0:
            return -_INF, (math.log(hi) if 0 < hi < _INF else _INF)
        return math.log(lo), (math.log(hi) if hi < _INF else _INF)
    if fn is sympy.Abs:
        lo, hi = _range(e.args[0], xr)
        m = max(abs(lo), abs(hi))
        return (0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))), m
    if fn in (sympy.Max, sympy.Min):
        rs = [_range(a, xr) for a in e.args]
        pick = max if fn is sympy.Max else min
        return pick(r[0] for r in rs), pick(r[1] for r in rs)
    if fn is sympy.Heaviside:
        return 0.0, 1.0
    return _FULL
