"""Xavier/Glorot initialization for any φ: forward and backward gains and their fan compromise.

A dense layer h' = W φ(h) with W_ij of variance s² and h ~ N(0, q) keeps

* the forward second moment, E[h'²] = q, iff fan_in·s²·E[φ(√q z)²] = q:
  s = g_f/√fan_in with g_f = √(q/E[φ(√q z)²]) (:func:`~vanishcalc.solve.gain.gain`);
* the backward squared gradient, E[δh²] = E[δh'²] for δh = φ'(h)⊙Wᵀδh', iff
  fan_out·s²·E[φ'(√q z)²] = 1: s = g_b/√fan_out with g_b = 1/√E[φ'(√q z)²].

Both hold only when fan_in/g_f² = fan_out/g_b² (for φ with g_f = g_b, such as relu: when
fan_in = fan_out).  Glorot & Bengio (2010, eqs. 10–12 and 16) average the two conditions:
((fan_in/g_f² + fan_out/g_b²)/2)·s² = 1, i.e.

.. math::

    s^2 = \\frac{2}{\\mathrm{fan\\_in}/g_f^2 + \\mathrm{fan\\_out}/g_b^2},
    \\qquad \\text{uniform } U(-r, r),\\ r = \\sqrt{3}\\, s,

which for g_f = g_b = 1 is their √(6/(fan_in + fan_out)).  ``q = 0`` is their "linear
regime" (φ linear near 0, §4.2.1): g_b = 1/√((φ'(0−)² + φ'(0+)²)/2) and, with the mean
removed (``convention="std"``), g_f likewise with the variance of the two-slope linear map;
that reproduces the table the seed recalls (tanh 1, sigmoid 4 = 1/σ'(0), relu √2 from He et
al. 2015's second-moment gain).  Derivation: notes/lecun-xavier.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import sympy

from ..activation import activation
from ..errors import VanishcalcError
from ..parse import X
from ..validate import integer, real
from ..value import Value
from .gain import gain

__all__ = ["xavier", "XavierInit"]

CONVENTIONS = ("second_moment", "std")


@dataclass(frozen=True)
class XavierInit:
    """Weight scales of one dense layer for φ: each condition alone, and the fan compromise.

    ``forward_gain``, ``backward_gain``: g_f, g_b.  ``forward_std`` = g_f/√fan_in keeps the
    forward second moment, ``backward_std`` = g_b/√fan_out the backward one.  ``std``: the
    compromise s = √(2/(fan_in/g_f² + fan_out/g_b²)) for W ~ N(0, s²); ``uniform_limit``:
    r = √3·s for W ~ U(−r, r) (same variance).  ``forward_factor`` = fan_in·s²/g_f² and
    ``backward_factor`` = fan_out·s²/g_b²: what the compromise multiplies the forward second
    moment and the backward squared gradient by per layer (both 1 only when the fans balance
    the gains)."""

    fan_in: int
    fan_out: int
    q: float
    convention: str
    forward_gain: Value
    backward_gain: Value
    forward_std: Value
    backward_std: Value
    std: Value
    uniform_limit: Value
    forward_factor: float
    backward_factor: float


def _xavier_iv(fan_in, fan_out, q, convention):
    fan_in = integer("xavier", "fan_in", fan_in, 1, why="(inputs per unit)")
    fan_out = integer("xavier", "fan_out", fan_out, 1, why="(outputs per unit)")
    q = real("xavier", "q", q, nonneg=True,
             why="(the pre-activation variance; 0 is Glorot's linear regime)")
    if convention not in CONVENTIONS:
        raise VanishcalcError(f"xavier: convention must be one of {', '.join(CONVENTIONS)} "
                              f"(the forward gain; the backward one is always 1/√E[φ'²]); got {convention!r}")
    return fan_in, fan_out, q


def xavier(spec, fan_in, fan_out, *, q=1.0, convention="second_moment") -> XavierInit:
    r"""Glorot/Xavier initialization for any φ: forward gain, backward gain and compromise.

    .. math::
        g_f = \sqrt{q / \mathbb{E}[\varphi(\sqrt{q} z)^2]},\quad
        g_b = 1 / \sqrt{\mathbb{E}[\varphi'(\sqrt{q} z)^2]},\quad
        s = \sqrt{2 / (\mathrm{fan\_in}/g_f^2 + \mathrm{fan\_out}/g_b^2)},\quad r = \sqrt{3}\,s

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        The nonlinearity φ.
    fan_in, fan_out : int
        Inputs and outputs of the layer (n_j, n_{j+1} in Glorot & Bengio 2010).
    q : float
        Variance of the pre-activation the gains are computed at (default 1); ``q=0`` is the
        linear-regime limit, from φ(0) and the one-sided φ'(0±), exact.
    convention : {"second_moment", "std"}
        Forward gain from E[φ²] (torch / He) or Var[φ] (mean removed, Glorot's centered
        assumption; ×4 for sigmoid at q = 0).

    Returns
    -------
    XavierInit

    Raises
    ------
    VanishcalcError
        bad fans, q < 0, an unknown convention; at q = 0, φ(0) ≠ 0 with
        convention="second_moment", φ'(0±) = 0, or φ jumping at 0.

    Notes
    -----
    notes/lecun-xavier.md derives both conditions and the table.

    References
    ----------
    Glorot & Bengio 2010, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS, eqs. 10–12, 16; He et al. 2015, arXiv:1502.01852, eqs. 10, 14.

    Examples
    --------
    >>> x = xavier("tanh", 784, 300, q=0)            # Glorot's √(6/(fan_in + fan_out))
    >>> float(x.uniform_limit) == (6 / (784 + 300)) ** 0.5
    True
    >>> xavier("sigmoid", 784, 300, q=0, convention="std").backward_gain
    4 ≈ 4.0 (exact)
    """
    fan_in, fan_out, q = _xavier_iv(fan_in, fan_out, q, convention)
    act = activation(spec)
    if q == 0.0:
        g_f, g_b = _linear_regime_gains(act, convention)
    else:
        g_f, g_b = gain(act, convention, q), gain(act, "backward", q)
    forward_std = _scaled(g_f, sympy.Integer(fan_in))
    backward_std = _scaled(g_b, sympy.Integer(fan_out))
    std = _compromise(g_f, g_b, fan_in, fan_out)
    if std.exact is not None:
        uniform = Value.from_exact(sympy.sqrt(3) * std.exact, method=std.method)
    else:
        u = math.sqrt(3.0) * float(std)
        uniform = Value(u, error=math.sqrt(3.0) * std.error + u * 2.0 ** -52,
                        error_kind=std.error_kind, method=std.method)
    s2 = float(std) ** 2
    return XavierInit(fan_in=fan_in, fan_out=fan_out, q=q, convention=convention,
                      forward_gain=g_f, backward_gain=g_b, forward_std=forward_std,
                      backward_std=backward_std, std=std, uniform_limit=uniform,
                      forward_factor=fan_in * s2 / float(g_f) ** 2,
                      backward_factor=fan_out * s2 / float(g_b) ** 2)


def _scaled(g: Value, fan) -> Value:
    """g/√fan with g's error."""
    if g.exact is not None:
        return Value.from_exact(g.exact / sympy.sqrt(fan), method=g.method)
    s = float(g) / math.sqrt(int(fan))
    return Value(s, error=g.error / math.sqrt(int(fan)) + s * 2.0 ** -52, error_kind=g.error_kind,
                 method=g.method)


def _compromise(g_f: Value, g_b: Value, fan_in, fan_out) -> Value:
    """s = √(2/D), D = fan_in/g_f² + fan_out/g_b²; δs = s·δD/(2D), δD = 2(fan_in δg_f/g_f³ +
    fan_out δg_b/g_b³) to first order."""
    method = f"xavier:{g_f.method}"
    if g_f.exact is not None and g_b.exact is not None:
        expr = sympy.sqrt(2 / (fan_in / g_f.exact ** 2 + fan_out / g_b.exact ** 2))
        return Value.from_exact(sympy.nsimplify(expr) if expr.is_Float else expr, method=method)
    gf, gb = float(g_f), float(g_b)
    t_f, t_b = fan_in / gf ** 2, fan_out / gb ** 2
    d = t_f + t_b
    s = math.sqrt(2.0 / d)
    # δD/(2D) = (t_f·δg_f/g_f + t_b·δg_b/g_b)/D: in relative errors, so that a gain near
    # 1e154 (q ~ 1e308) does not overflow g³
    rel = (t_f * (g_f.error / gf) + t_b * (g_b.error / gb)) / d
    kind = "bound" if g_f.error_kind == g_b.error_kind == "bound" else "estimate"
    return Value(s, error=1.01 * s * rel + 4 * s * 2.0 ** -52, error_kind=kind,
                 method=method)


def _linear_regime_gains(act, convention):
    """(g_f, g_b) as q → 0: φ(√q z) ≈ φ(0) + √q z·(φ'(0−) on z < 0, φ'(0+) on z > 0)."""
    left, right = act.pieces_beside_zero()
    v_left, v_right = (sympy.simplify(p.expr.subs(X, 0)) for p in (left, right))
    if sympy.simplify(v_left - v_right) != 0:
        raise VanishcalcError(f"xavier: φ = {act.name} jumps at 0 ({v_left} to {v_right}); the "
                              "linear regime (q = 0) needs φ continuous there: use q > 0")
    a, b = (sympy.simplify(sympy.diff(p.expr, X).subs(X, 0)) for p in (left, right))
    if not all(v.is_finite and v.is_real for v in (a, b, v_left)):
        raise VanishcalcError(f"xavier: φ = {act.name} has no finite slope at 0 (φ'(0−) = {a}, "
                              f"φ'(0+) = {b}); use q > 0")
    m_b = (a ** 2 + b ** 2) / 2
    if m_b == 0:
        raise VanishcalcError(f"xavier: φ'(0) = 0 for {act.name}: in the linear regime (q = 0) "
                              "φ passes no signal and no gain exists; use q > 0")
    if convention == "second_moment":
        if v_left != 0:
            raise VanishcalcError(
                f"xavier: φ(0) = {v_left} ≠ 0 for {act.name}, so E[φ(√q z)²] → φ(0)² while q → 0 "
                "and the second-moment gain √(q/E[φ²]) → 0 in the linear regime; use "
                "convention='std' (Glorot's centered assumption: the mean is removed) or q > 0")
        m_f = m_b
    else:
        # Var of a·z 1{z<0} + b·z 1{z>0}: (a² + b²)/2 − ((b − a)/√(2π))²
        m_f = m_b - (b - a) ** 2 / (2 * sympy.pi)
    method = "exact:linear-regime"
    g_f = Value.from_exact(sympy.sqrt(1 / m_f), method=method)
    g_b = Value.from_exact(sympy.sqrt(1 / m_b), method=method)
    return g_f, g_b
