"""LeCun's recipe for any φ: targets where |φ''| is largest, and the input scale that starts a
deep network at its fixed point q*.

LeCun, Bottou, Orr & Müller 1998 (*Efficient BackProp*, §4.4–4.5) choose the sigmoid
f(x) = 1.7159·tanh(2x/3) so that f(±1) = ±1 and set the targets to ±1, "the points of maximum
second derivative" (for that f: x = ±(3/2)·artanh(1/√3) = ±(3/4)·log(2 + √3) = ±0.98772,
which the paper rounds to ±1), and normalize inputs to mean 0 and unit variance.  For any φ:

* :func:`lecun_targets` finds the points of max |φ''| (exact kinks when φ' jumps: there the
  curvature is a Dirac mass), and φ there (the targets);
* :func:`lecun_input_scale` gives the input second moment E[x²] = (q* − σb²)/σw² that makes the
  first pre-activation h₁ = W₀x + b₀ (W ~ N(0, σw²/fan_in), b ~ N(0, σb²)) start at the
  network's fixed point q* — equal to E[φ(√q* z)²], the second moment of a layer's output at
  the fixed point.  A positively homogeneous φ (φ = a·x on x < 0, b·x on x > 0: relu, leaky
  relu, linear) at σb = 0 and σw²(a² + b²)/2 = 1 has *every* q as a fixed point: that is
  answered with ``every_q_fixed=True`` (any input scale is kept exactly), not an error.

Derivation: notes/lecun-xavier.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy

from ..activation import activation
from ..errors import DivergenceError, VanishcalcError
from ..gaussian import bivariate as _bv
from ..maps.meanfield import MeanField
from ..parse import X
from ..validate import real
from ..value import Value

__all__ = ["lecun_targets", "LeCunTargets", "lecun_input_scale", "LeCunInputScale"]

X_RANGE = 50.0      # maxima of |φ''| are searched on |x| ≤ X_RANGE
DPS = 30
TIE_RTOL = 1e-12    # maxima within this relative distance of the largest are all targets
_GRID = np.sinh(np.linspace(-math.asinh(X_RANGE), math.asinh(X_RANGE), 40001))   # holds 0


@dataclass(frozen=True)
class LeCunTargets:
    """Points of maximal |φ''| and φ there.

    ``points``: the x of max |φ''| (sorted); ``values``: φ(points), the targets;
    ``curvature``: max |φ''| (inf when the points are kinks where φ' jumps);
    ``at_kinks``: True for that case (relu: 0; hardtanh: ±1)."""

    points: tuple
    values: tuple
    curvature: Value
    at_kinks: bool


@dataclass(frozen=True)
class LeCunInputScale:
    """The input normalization that starts the first pre-activation at the fixed point q*.

    ``input_second_moment`` = E[x_i²] per input component (inputs centered: its variance),
    ``input_std`` its square root; ``q_star`` the fixed point and ``q_slope`` ∂q'/∂q there
    (< 1: it attracts).  ``every_q_fixed``: a positively homogeneous φ at σb = 0 on its
    critical σw, where every q is a fixed point; then the three are None and any input scale
    is kept exactly (``note`` says so)."""

    q_star: Value | None
    input_second_moment: Value | None
    input_std: Value | None
    q_slope: Value | None
    every_q_fixed: bool
    note: str


# ---------------------------------------------------------------- targets


def lecun_targets(spec) -> LeCunTargets:
    r"""The points of maximal |φ''| (LeCun et al. 1998's targets) and φ there.

    .. math:: x^* = \arg\max_x |\varphi''(x)|, \qquad \text{targets } \varphi(x^*)

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        The nonlinearity φ.

    Returns
    -------
    LeCunTargets
        Each point is a zero of φ''' bracketed by bisection in mpmath (error a bound), or an
        exact kink.

    Raises
    ------
    VanishcalcError
        φ'' ≡ 0 (φ linear), φ jumping, or |φ''| largest at the edge of |x| ≤ 50 (no maximum:
        ``exp(x)``, ``x**3``, a quadratic).

    References
    ----------
    LeCun, Bottou, Orr & Müller 1998, "Efficient BackProp", §4.4 (the sigmoid
    1.7159·tanh(2x/3), targets ±1 at the maxima of the second derivative).

    Examples
    --------
    >>> t = lecun_targets("lecun_tanh")
    >>> [round(float(p), 5) for p in t.points]
    [-0.98772, 0.98772]
    >>> lecun_targets("relu").points
    (0 ≈ 0.0 (exact),)
    """
    act = activation(spec)
    d1 = act.derivative(1)
    if d1.deltas:
        where = ", ".join(sympy.sstr(k) for k, _ in d1.deltas)
        raise VanishcalcError(f"lecun_targets: φ = {act.name} jumps at x = {where}; its curvature "
                              "is not a function there; LeCun's rule needs a continuous φ")
    d2 = act.derivative(2)
    if d2.deltas:
        return _kink_targets(act, [k for k, _ in d2.deltas])
    return _smooth_targets(act, d2)


def _kink_targets(act, kinks):
    points = tuple(Value.from_exact(k, method="exact:kink") for k in kinks)
    values = tuple(Value.from_exact(_value_at(act, k), method="exact:kink") for k in kinks)
    return LeCunTargets(points=points, values=values,
                        curvature=Value(math.inf, error=0.0, method="exact:kink"), at_kinks=True)


def _value_at(act, k):
    """φ(k) at a kink k (φ is continuous there: either neighbouring piece gives it)."""
    return act.pieces[_right_of(act, k)].expr.subs(X, k)


def _piece_index(act, x):
    for j, p in enumerate(act.pieces):
        if p.lo <= x <= p.hi:
            return j
    raise AssertionError("pieces do not cover the real line")   # internal invariant


def _smooth_targets(act, d2):
    with np.errstate(all="ignore"):
        g = np.abs(np.asarray(d2.numpy(_GRID), dtype=float))
    if not np.all(np.isfinite(g)):
        bad = _GRID[~np.isfinite(g)][0]
        raise VanishcalcError(f"lecun_targets: φ'' of {act.name} is not finite near x = {bad:.6g}")
    kinks = list(act.kinks)
    candidates = []          # (|φ''| as mpf, point as mpf, error bound, exact or None)
    with mpmath.workdps(DPS):
        third = {}
        for i in range(1, len(_GRID) - 1):
            if not (g[i] >= g[i - 1] and g[i] > g[i + 1]):
                continue
            lo, hi = _GRID[i - 1], _GRID[i + 1]
            if any(lo <= k <= hi for k in kinks):
                continue     # a maximum at a kink is a one-sided limit, handled below
            j = _piece_index(act, _GRID[i])
            if j not in third:
                e2 = d2.pieces[j].expr
                third[j] = (sympy.lambdify(X, e2, "mpmath"), sympy.lambdify(X, sympy.diff(e2, X), "mpmath"))
            candidates.append(_refine(third[j], lo, hi, _GRID[i]))
        for k_exact in act.kinks_exact:     # one-sided limits of |φ''| (elu: 1 at 0⁻)
            k = float(k_exact)
            for j in (_left_of(act, k), _right_of(act, k)):
                e2 = d2.pieces[j].expr
                v = abs(sympy.N(e2.subs(X, k_exact), DPS))
                candidates.append((mpmath.mpf(str(v)), mpmath.mpf(str(sympy.N(k_exact, DPS))), 0.0,
                                   k_exact))
        if not candidates:
            top = float(np.max(g))
            if top == 0.0:
                raise VanishcalcError(f"lecun_targets: φ'' ≡ 0 for {act.name} (φ is linear): "
                                      "there is no curvature and so no LeCun target")
            raise VanishcalcError(f"lecun_targets: |φ''| of {act.name} has no isolated maximum "
                                  f"in |x| ≤ {X_RANGE:g} (it is constant or monotone there)")
        best = max(c[0] for c in candidates)
        if best == 0:
            raise VanishcalcError(f"lecun_targets: φ'' ≡ 0 for {act.name} (φ is linear): "
                                  "there is no curvature and so no LeCun target")
        if max(g[0], g[-1]) >= float(best) * (1 - 1e-9):
            raise VanishcalcError(
                f"lecun_targets: |φ''| of {act.name} is at least as large at the edge |x| = "
                f"{X_RANGE:g} ({max(g[0], g[-1]):.6g}) as at any interior maximum: it has no "
                "largest value (it grows, or keeps its size, without bound)")
        chosen = []
        for c in sorted((c for c in candidates if c[0] >= best * (1 - TIE_RTOL)),
                        key=lambda c: c[1]):
            if chosen and abs(c[1] - chosen[-1][1]) <= mpmath.mpf(10) ** (-DPS + 5):
                continue     # both one-sided limits at one kink (softsign at 0)
            chosen.append(c)
        points, values = [], []
        f_mp = {}
        for val, x, err, exact in chosen:
            kind = "estimate" if exact == "flat" else "bound"
            if exact == "flat":
                exact = None
            if exact is not None:
                points.append(Value.from_exact(exact, method="exact:kink"))
                values.append(Value.from_exact(_value_at(act, exact), method="exact:kink"))
                continue
            xf = float(x)
            points.append(Value(xf, error=err + abs(float(x) - xf) + abs(xf) * 2.0 ** -53,
                                error_kind=kind, method="lecun:bisection-on-phi'''"))
            j = _piece_index(act, xf)
            if j not in f_mp:
                f_mp[j] = (sympy.lambdify(X, act.pieces[j].expr, "mpmath"),
                           sympy.lambdify(X, sympy.diff(act.pieces[j].expr, X), "mpmath"))
            fx = f_mp[j][0](x)
            # |φ(x*) − φ(x̂)| ≤ |φ'|·|x* − x̂| over the bracket, |φ'| taken at x̂ with slack 2
            slope = abs(f_mp[j][1](x))
            values.append(Value(float(fx), error=2 * float(slope) * err + abs(float(fx)) * 2.0 ** -52,
                                error_kind=kind, method="lecun:phi-at-target"))
        curvature = Value(float(best), error=float(best) * 2.0 ** -50, error_kind="estimate",
                          method="lecun:mpmath")
    return LeCunTargets(points=tuple(points), values=tuple(values), curvature=curvature,
                        at_kinks=False)


def _left_of(act, k):
    return next(j for j, p in enumerate(act.pieces) if p.hi == float(k))


def _right_of(act, k):
    return next(j for j, p in enumerate(act.pieces) if p.lo == float(k))


def _refine(fns, lo, hi, xi):
    """(|φ''|, x, error bound, None) at the zero of s = sign(φ''(x_i))·φ''' in [lo, hi];
    (..., grid spacing, "flat") when s has no sign change there (an estimate, not a bound)."""
    f2, f3 = fns
    sgn = 1 if f2(mpmath.mpf(xi)) >= 0 else -1
    s = lambda t: sgn * f3(t)
    a, b = mpmath.mpf(lo), mpmath.mpf(hi)
    sa, sb = s(a), s(b)
    if not (sa > 0 and sb < 0):
        # no clean bracket (a flat top): the grid point, to within the grid spacing
        x = mpmath.mpf(xi)
        return (abs(f2(x)), x, float(hi - lo), "flat")
    for _ in range(200):
        m = (a + b) / 2
        sm = s(m)
        if sm == 0:
            a = b = m
            break
        if sm > 0:
            a = m
        else:
            b = m
        if b - a <= mpmath.mpf(10) ** (-DPS + 3) * max(1, abs(a)):
            break
    x = (a + b) / 2
    return (abs(f2(x)), x, float(b - a), None)


# ---------------------------------------------------------------- input normalization


def lecun_input_scale(spec, sigma_w, sigma_b=0.0, *, q0=1.0) -> LeCunInputScale:
    r"""The input second moment that starts the first pre-activation at the fixed point q*.

    .. math::
        q_1 = \sigma_w^2\, \mathbb{E}[x^2] + \sigma_b^2 = q^*
        \iff \mathbb{E}[x^2] = (q^* - \sigma_b^2)/\sigma_w^2 = \mathbb{E}[\varphi(\sqrt{q^*} z)^2]

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        The nonlinearity φ.
    sigma_w, sigma_b : float
        Weight and bias scales of the network (W ~ N(0, σw²/fan_in), b ~ N(0, σb²)).
    q0 : float
        Where the fixed point is sought from (the q* that the q-map iteration reaches from q0).

    Returns
    -------
    LeCunInputScale
        ``every_q_fixed=True`` for a positively homogeneous φ at σb = 0 and
        σw²(a² + b²)/2 = 1 (relu at σw = √2): then any input scale is a fixed point.

    Raises
    ------
    VanishcalcError
        the fixed point reached is q* = 0 (the signal dies for every input scale; also a
        homogeneous φ below its critical σw at σb = 0).
    DivergenceError
        q grows without bound (no fixed point to start at).

    Examples
    --------
    >>> s = lecun_input_scale("relu", 2 ** 0.5)
    >>> s.every_q_fixed, s.input_second_moment
    (True, None)
    """
    act = activation(spec)
    sw = real("lecun_input_scale", "sigma_w", sigma_w, positive=True, hi_bound=1e150)
    sb = real("lecun_input_scale", "sigma_b", sigma_b, nonneg=True, hi_bound=1e150)
    real("lecun_input_scale", "q0", q0, positive=True, hi_bound=1e150)
    ab = _bv._abrelu(act)
    if ab is not None and sb == 0.0:
        a, b = (float(v) for v in ab)
        k = sw * sw * (a * a + b * b) / 2          # the q-map is q' = k·q
        crit = math.sqrt(2 / (a * a + b * b)) if a or b else math.inf
        if abs(k - 1) <= 1e-12:
            return LeCunInputScale(
                q_star=None, input_second_moment=None, input_std=None,
                q_slope=Value(1.0, exact=sympy.Integer(1), error=0.0, method="exact:homogeneous"),
                every_q_fixed=True,
                note=(f"φ = {act.name} is positively homogeneous and σw²(a² + b²)/2 = 1 at σb = 0: "
                      "the q-map is the identity, every q is a fixed point, and any input scale "
                      "is kept exactly through depth; LeCun's unit variance is as good as any"))
        if k < 1:
            raise VanishcalcError(
                f"lecun_input_scale: φ = {act.name} is positively homogeneous and at σb = 0 the "
                f"q-map is q' = {k:.6g}·q: q decays to 0 for every input scale, so no input "
                f"normalization starts the network at a nonzero fixed point; use σw = {crit:.6g} "
                "(every q fixed) or σb > 0")
        raise DivergenceError(
            f"lecun_input_scale: φ = {act.name} is positively homogeneous and at σb = 0 the "
            f"q-map is q' = {k:.6g}·q: q grows without bound for every input scale; use "
            f"σw = {crit:.6g} (every q fixed) or lower σw")
    mf = MeanField(act, sigma_w=sw, sigma_b=sb)
    q_star = mf.q_star(q0)
    if float(q_star) == 0.0:
        raise VanishcalcError(
            f"lecun_input_scale: {mf!r} reaches the fixed point q* = 0 from q0 = {q0:g}: the signal "
            "dies with depth for every input scale, so no input normalization helps; raise "
            "sigma_w (past the edge of chaos) or add sigma_b")
    sw2 = sw * sw
    m2 = (float(q_star) - sb * sb) / sw2
    if not m2 > 0:
        raise VanishcalcError(
            f"lecun_input_scale: at σw = {sw:g}, σb = {sb:g} the weights' share of q* = "
            f"{float(q_star):.6g} is below double precision (q* − σb² = {float(q_star) - sb * sb:.3g}): "
            "the input scale is not resolved; raise sigma_w")
    m2_err = q_star.error / sw2 + 4 * abs(m2) * 2.0 ** -52
    second = Value(m2, error=m2_err, error_kind=q_star.error_kind, method="lecun:(q*-σb²)/σw²")
    std = Value(math.sqrt(m2), error=m2_err / (2 * math.sqrt(m2)) + math.sqrt(m2) * 2.0 ** -52,
                error_kind=q_star.error_kind, method="lecun:(q*-σb²)/σw²")
    slope = mf.q_slope()
    note = (f"normalize each input component to mean 0 and variance {m2:.6g} (std {float(std):.6g}): "
            f"then h₁ = W₀x + b₀ has variance q* = {float(q_star):.6g}, the fixed point, whose "
            f"q-map slope is {float(slope):.6g}" + (" (attracting)" if abs(float(slope)) < 1 else
                                                     " (not attracting: q drifts away from it)"))
    return LeCunInputScale(q_star=q_star, input_second_moment=second, input_std=std, q_slope=slope,
                           every_q_fixed=False, note=note)
