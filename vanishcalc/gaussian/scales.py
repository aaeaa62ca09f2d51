"""Where φ has features far from the unit scale, read off its expression.

A quadrature rule sees only its nodes: exp(−1e8·x²) is 0 at every node of a panel of
width 2 that does not sit within 1e-4 of the origin, and K21 and G10 then agree on 0.
No error estimate built from node values can see a feature that falls between all nodes,
so the features are found from the expression instead:

* every argument ``u`` of exp, tanh, erf, sin, log, … and every base of a negative or
  fractional power (``1/(1 + 1e8·x²)``) that is a polynomial in x gives *localized
  features* at the real roots of u and of u' (the centre of a bump, the middle of a
  step).  Their width is the distance over which u changes by 1:
  w = min_k (k!/|u⁽ᵏ⁾(r)|)^{1/k}, from the Taylor coefficients of u at r.
* every argument of sin/cos/tan gives an *oscillation rate* |du/dx|: panels must be
  shorter than a period wherever the Gaussian weight matters.

``mesh`` turns these (scaled to z = x/√q) into panel edges: a geometric grading
c ± w·2^j around each localized feature and a period-fine grid under the oscillations.
The adaptive rule then refines from there.  See notes/gaussian-expectations.md §"Scales".
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import sympy

from ..errors import NotConvergedError
from ..parse import X

_FUNCS = (sympy.exp, sympy.tanh, sympy.erf, sympy.erfc, sympy.atan, sympy.sin, sympy.cos,
          sympy.tan, sympy.log, sympy.sinh, sympy.cosh, sympy.Abs, sympy.sign, sympy.Heaviside)
_TRIG = (sympy.sin, sympy.cos, sympy.tan)
MAX_DEGREE = 8            # higher-degree arguments are left to the adaptive rule
MAX_PANELS = 200_000      # 4.2 M integrand values: beyond it, an oscillation is too fast


@dataclass(frozen=True)
class Scales:
    """Localized features (centre, width) in x and polynomial oscillation phases."""

    features: tuple        # ((centre_x, width_x), ...)
    phases: tuple          # (numpy coefficient arrays of u(x) inside sin/cos/tan, highest first)
    trig_args: tuple       # non-polynomial arguments of sin/cos/tan (SymPy expressions)


@functools.lru_cache(maxsize=2048)
def scales(expr) -> Scales:
    feats, phases, trig_args = set(), [], []
    # sin(u)**n oscillates n times as fast as sin(u): its phase is scaled by n.
    power = {}
    for node in sympy.preorder_traversal(expr):
        if node.is_Pow and isinstance(node.base, _TRIG) and node.exp.is_Integer:
            power[node.base] = max(power.get(node.base, 1), abs(int(node.exp)))
        args = ()
        if isinstance(node, _FUNCS):
            args = node.args
        elif node.is_Pow and node.base.has(X) and not (node.exp.is_Integer and node.exp > 0):
            args = (node.base,)
        for u in args:
            if not u.has(X):
                continue
            coeffs = _poly_coeffs(u)
            if coeffs is None:
                if isinstance(node, _TRIG):
                    trig_args.append(u)
                continue
            feats.update(_features(coeffs))
            if isinstance(node, _TRIG):
                phases.append(coeffs * power.get(node, 1))
    return Scales(tuple(sorted(feats)), tuple(phases), tuple(trig_args))


def of_activation(act) -> Scales:
    """The union of the scales of φ's pieces (a feature outside its piece only adds edges)."""
    parts = [scales(p.expr) for p in act.pieces]
    if len(parts) == 1:
        return parts[0]
    return Scales(tuple(sorted({f for s in parts for f in s.features})),
                  tuple(c for s in parts for c in s.phases),
                  tuple(u for s in parts for u in s.trig_args))


def decades(act, sq=1.0):
    """How many decades the scales of φ at x = sq·z (sq, feature widths, constants) lie from 1."""
    out = abs(math.log10(sq)) if sq > 0 else 0.0
    for _, w in of_activation(act).features:
        out = max(out, abs(math.log10(w / sq)))
    for p in act.pieces:
        for c in p.expr.atoms(sympy.Number):
            if c != 0 and c.is_finite:
                out = max(out, abs(float(sympy.log(abs(c), 10))))
    return int(math.ceil(out))


def _poly_coeffs(u):
    try:
        poly = sympy.Poly(sympy.expand(u), X)
    except (sympy.PolynomialError, sympy.GeneratorsNeeded):
        return None
    if not 1 <= poly.degree() <= MAX_DEGREE:
        return None
    try:
        c = np.array([complex(a) for a in poly.all_coeffs()])
    except (TypeError, ValueError):
        return None
    if np.any(c.imag != 0) or not np.all(np.isfinite(c.real)):
        return None
    return c.real


def _features(c):
    """(centre, width) at the real roots of u and u' (u given by coefficients c)."""
    out = []
    deriv = np.polyder(c)
    points = []
    for poly in (c, deriv):
        if len(poly) > 1 and np.any(poly[:-1] != 0):
            r = np.roots(poly)
            points += [float(v.real) for v in r if abs(v.imag) <= 1e-9 * max(1.0, abs(v))]
    for r in points:
        w = _width(c, r)
        if math.isfinite(w) and w > 0:
            out.append((round(r, 15), float(f"{w:.3g}")))
    return out


def _width(c, r):
    """Distance over which u changes by 1 near r: min_k |t_k|^(−1/k), t_k Taylor coefficients."""
    w = math.inf
    p = np.array(c, dtype=float)
    fact = 1.0
    for k in range(1, len(c)):
        p = np.polyder(p)
        fact *= k
        t = float(abs(np.polyval(p, r))) / fact
        if t > 0:
            # in logs: a tiny t gives a huge width (inf), never numpy's overflow warning
            log_w = -math.log(t) / k
            w = min(w, math.exp(log_w) if log_w < 709.0 else math.inf)
    return w


def mesh(sc: Scales, sq: float, z_max: float, breaks, label):
    """Panel edges on [−z_max, z_max] that resolve the features of ``sc`` at x = sq·z."""
    edges = [np.linspace(-z_max, z_max, max(2, int(math.ceil(z_max))) + 1)]
    inner = [b for b in breaks if -z_max < b < z_max]
    edges.append(np.asarray(inner, dtype=float))
    for cx, wx in sc.features:
        cz, wz = cx / sq, wx / sq
        if wz >= 0.5 or abs(cz) - z_max > 8 * wz:
            continue
        if wz < 64 * np.finfo(float).eps * max(abs(cz), 1e-300):
            raise NotConvergedError(
                f"{label}: φ has a feature of width {wx:.3g} at x = {cx:.6g}, below the "
                "resolution of a double there")
        steps = wz * 2.0 ** np.arange(-2, int(math.ceil(math.log2(2.0 / wz))) + 1)
        grid = np.concatenate([[cz], cz - steps, cz + steps])
        edges.append(grid[np.abs(grid) < z_max])
    if sc.phases:
        edges.append(_oscillation_edges(sc.phases, sq, z_max, label))
    return np.unique(np.concatenate(edges))


def _oscillation_edges(phases, sq, z_max, label):
    """Edges a quarter period apart under the fastest local oscillation (density ∝ |u'(x)|).

    A quarter period, because the adaptive rule's error estimate |K21 − G10| is the G10
    error, which reaches 1e-15 for sin at about a quarter period per panel.
    """
    t = np.linspace(-z_max, z_max, 4097)
    rate = np.zeros_like(t)
    for c in phases:
        rate = np.maximum(rate, np.abs(np.polyval(np.polyder(c), sq * t)) * sq)
    density = 4 * rate / (2 * math.pi)
    if not np.all(np.isfinite(density)):
        raise NotConvergedError(f"{label}: φ oscillates too fast to integrate (an overflowing phase)")
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(t))])
    # A few more panels than periods: the trapezoid under-counts a rate that curves upward.
    n = int(math.ceil(1.25 * cum[-1])) + 1
    if n > MAX_PANELS:
        raise NotConvergedError(
            f"{label}: φ oscillates about {cum[-1] / 4:.3g} times where the Gaussian weight matters; "
            f"more than {MAX_PANELS} panels would be needed")
    if n <= 2 * z_max:
        return np.empty(0)
    return np.interp(np.linspace(0.0, cum[-1], n + 1), cum, t)


def check_trig_phases(sc: Scales, sq: float, z_max: float, label):
    """NotConvergedError where sin/cos/tan of a non-polynomial argument passes 1e15 in magnitude:
    a double then holds none of its phase (sin(e^(e^x)) at x ≈ 3.6)."""
    if not sc.trig_args:
        return
    t = np.linspace(-z_max, z_max, 2049) * sq
    for u in sc.trig_args:
        f = sympy.lambdify(X, u, "numpy")
        with np.errstate(all="ignore"):
            v = np.abs(np.asarray(f(t), dtype=float) * np.ones_like(t))
        big = ~(v <= 1e15)
        if np.any(big):
            x0 = t[np.argmax(big)]
            raise NotConvergedError(
                f"{label} cannot be certified: the argument of a sine or cosine, {sympy.sstr(u)}, "
                f"exceeds 1e15 at x ≈ {x0:.4g} (its phase is lost in double precision)")
