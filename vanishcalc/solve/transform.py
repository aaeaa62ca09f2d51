"""DKS and TAT activation transforms for any φ (Martens et al. 2021; Zhang et al. 2022).

The transformed nonlinearity is

.. math::

    \\hat\\varphi(x) = s\\,\\bigl(\\varphi(a x + b) + c\\bigr),
    \\qquad a = \\text{input\\_scale},\\ b = \\text{input\\_shift},\\
    c = \\text{output\\_shift},\\ s = \\text{output\\_scale},

with (a, b, c, s) chosen so that the local q and c maps of φ̂ (``shared/README.md``, q = 1,
σw = 1, σb = 0) meet the conditions below for a chain of ``depth`` = L nonlinear layers
(derivation, references and the correspondence with ``dks``: notes/transforms.md):

* DKS (arXiv:2110.01765 §4–5): E[φ̂(z)] = 0 (C(0) = 0), Q(1) = E[φ̂(z)²] = 1,
  Q'(1) = E[z φ̂(z) φ̂'(z)] = 1 and C'(1) = E[φ̂'(z)²] = ζ^{1/L}, so that the network's
  c map slope is C'_f(1) = ζ.  Unknowns a, b; c and s follow in closed form.
* TAT, smooth φ (arXiv:2203.08120 §4): Q(1) = 1, Q'(1) = 1, C'(1) = 1 and
  C''(1) = E[φ̂''(z)²] = τ/L, so that C''_f(1) = τ.  Unknowns a, b, c; s follows.
* TAT, leaky ReLU (§3): the negative slope α with C_f(0) = η, the L-fold composition of the
  leaky ReLU c map, and s = √(2/(1 + α²)).

Layered like ``dks/base/activation_transform.py``: Gaussian moments of ψ(z) = φ(az + b) by a
fixed composite Gauss–Legendre rule (``_moments``) → local maps (``_dks_maps``, ``_tat_maps``)
and the residual vector of each problem (``_problem``) → the root search from dks's own
starting points (``_search``) with a Newton polish → the canonical representative
(``_canonical``) → every condition certified by vanishcalc's adaptive Gauss–Kronrod with its
error estimate (``_certified_moments``, ``_certify``) → the public entry :func:`transform`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import sympy

from ..activation import Activation, activation
from ..errors import NotConvergedError, VanishcalcError
from ..parse import X
from ..validate import integer, real
from ..value import Value

METHODS = ("dks", "tat")
DEFAULT_ZETA = 1.5          # DKS paper's ζ (dks: c_slope_1_target)
DEFAULT_ETA = 0.9           # TAT paper's η for leaky ReLU (dks: c_val_0_target)
DEFAULT_TAU = 0.3           # TAT paper's τ for smooth φ (dks: c_curve_target)
RESIDUAL_TOL = 1e-12        # every certified condition residual (plus its error) stays below this
# Beyond this depth the per-layer targets (ζ^{1/L} − 1 ≈ log ζ / L, τ/L) come within a few
# orders of RESIDUAL_TOL, and TAT's leaky-ReLU composition takes ~10 s: refused, not slow.
MAX_DEPTH = 10 ** 6
# dks's ReLU rule: the largest local C'(1) a ReLU reaches with a positive input shift
# (dks/base/activation_transform.py, _solve_for_activation_params); it is π/(π − 1), relu's
# E[relu'(z)²]/Var relu(z) at b = 0.
RELU_SHIFT_SWITCH = 1.466942206924260361

# dks's starting points (_ALWAYS_TRY_VALUES, _SAMPLE_RANGE_*), tried in the same order with
# the same pseudo-random draws (seed 123), so that where several roots exist we pick dks's.
_ALWAYS_TRY = {"input_scale": (1.0, 0.1), "input_shift": (0.0, 1.0, -1.0),
               "output_shift": (0.0, 1.0, -1.0), "negative_slope": (0.0, 0.5)}
_SAMPLE_RANGE = {"input_scale": (0.0, 2.0), "input_shift": (-3.0, 3.0),
                 "output_shift": (-3.0, 3.0), "negative_slope": (0.0, 1.0)}
_NUM_TRIES = 50
_SEED = 123
SEARCH_SECONDS = 30.0       # the root search's time budget (50 starts take < 1 s for the zoo)


# ---------------------------------------------------------------- the result


@dataclass(frozen=True)
class Condition:
    """One condition of the transform: the achieved value (certified) and its target."""

    key: str                   # "mean", "q", "q_slope", "c_slope", "c_curv", "net_c_slope", …
    name: str                  # the formula, e.g. "Q'(1) = E[z φ̂(z) φ̂'(z)]"
    value: Value
    target: float
    tolerance: float = 1e-12   # residual + error stay below it (network-level: scaled by L)

    @property
    def met(self) -> bool:
        return self.residual + self.value.error <= self.tolerance

    @property
    def residual(self) -> float:
        """|achieved − target| (the achieved value's own error is ``value.error``)."""
        return abs(float(self.value) - self.target)

    def __repr__(self):
        return (f"{self.name} = {float(self.value)!r} ± {self.value.error:.1e} "
                f"(target {self.target!r}, residual {self.residual:.1e})")


@dataclass(frozen=True)
class Transform:
    """A DKS/TAT-transformed nonlinearity φ̂(x) = s·(φ(a x + b) + c).

    Attributes
    ----------
    base : str
        The name of φ.
    method : str
        ``"dks"`` or ``"tat"``.
    depth : int
        L, the number of nonlinear layers of the chain the conditions are set for.
    target : dict
        The network-level target: ``{"zeta": ζ}``, ``{"tau": τ}`` or ``{"eta": η}``.
    input_scale, input_shift, output_shift, output_scale : float
        a, b, c, s.
    negative_slope : float or None
        The leaky ReLU slope α that TAT (and DKS, for leaky ReLU) chooses; None otherwise.
    expr : sympy.Expr
        φ̂ as an expression in ``x``: pass ``.expr`` or ``.activation`` wherever a spec goes.
    conditions : tuple of Condition
        Every condition with its certified value, error and target.
    """

    base: str
    method: str
    depth: int
    target: dict
    input_scale: float
    input_shift: float
    output_shift: float
    output_scale: float
    negative_slope: float | None
    expr: sympy.Expr
    conditions: tuple

    @functools.cached_property
    def activation(self) -> Activation:
        """φ̂ as an :class:`~vanishcalc.activation.Activation` (gain, MeanField, simulate, check),
        named by its rounded formula (``.expr`` holds the exact doubles)."""
        return Activation(self.expr, self.text)

    @property
    def text(self) -> str:
        """φ̂'s formula with 6-digit constants, e.g. ``14.9025*(tanh(0.0904379*x + 0.560107) - 0.505004)``."""
        a = sympy.Float(self.input_scale, 6) if self.input_scale != 1.0 else sympy.Integer(1)
        b = sympy.Float(self.input_shift, 6)
        u = a * X + b if self.input_shift else a * X
        if self.negative_slope is not None:
            inner = sympy.Max(u, sympy.Float(self.negative_slope, 6) * u)
        else:
            base = activation(self.base).expr
            inner = base.xreplace({f: sympy.Float(f, 6) for f in base.atoms(sympy.Float)}
                                  ).subs(X, u)
        c = self.output_shift
        shift = "" if c == 0 else (f" + {c:.6g}" if c > 0 else f" - {-c:.6g}")
        return f"{self.output_scale:.6g}*({sympy.sstr(inner)}{shift})"

    def __vanishcalc_activation__(self):
        """Lets the Transform itself stand for φ̂ wherever a spec goes: gain(t), MeanField(t, 1)."""
        return self.activation

    def __call__(self, x):
        """φ̂ on a float array."""
        return self.activation.numpy(np.asarray(x, dtype=float))

    @property
    def max_residual(self) -> float:
        """The largest residual + error over the local (per-layer) conditions."""
        return max(c.residual + c.value.error for c in self.conditions
                   if c.tolerance == RESIDUAL_TOL)

    def condition(self, key) -> Condition:
        """The condition called ``key`` ("mean", "q", "q_slope", "c_slope", "c_curv",
        "net_c_slope", "net_c_curv", "net_c0") or by its full ``name``."""
        for c in self.conditions:
            if key in (c.key, c.name):
                return c
        raise KeyError(f"{key!r}: this transform's conditions are "
                       f"{', '.join(c.key for c in self.conditions)}")

    def parameter_lines(self) -> list:
        """``name = value`` for each parameter of φ̂ (the repr's and the CLI's lines)."""
        lines = [f"input_scale  = {self.input_scale!r}",
                 f"input_shift  = {self.input_shift!r}",
                 f"output_shift = {self.output_shift!r}",
                 f"output_scale = {self.output_scale!r}"]
        if self.negative_slope is not None:
            lines.append(f"negative_slope = {self.negative_slope!r}")
        return lines

    def __repr__(self):
        tgt = ", ".join(f"{k}={v!r}" for k, v in self.target.items())
        lines = [f"Transform({self.method.upper()} of {self.base}, depth={self.depth}, {tgt})",
                 f"  φ̂(x) = {self.text}"]
        lines += [f"  {line}" for line in self.parameter_lines()]
        lines += [f"  {c!r}" for c in self.conditions]
        return "\n".join(lines)


# ---------------------------------------------------------------- input validation


def _transform_iv(spec, method, depth, zeta, eta, tau):
    where = "transform"
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise VanishcalcError(f"{where}: method = {method!r} is not one of 'dks', 'tat'")
    method = method.lower()
    depth = integer(where, "depth", depth, 1, why="(the number of nonlinear layers)")
    if depth > MAX_DEPTH:
        raise VanishcalcError(f"{where}: depth = {depth} is above {MAX_DEPTH:.0e}: the per-layer "
                              "targets (ζ^(1/L) − 1, τ/L) would come within a few digits of the "
                              "1e-12 accuracy of the conditions; use depth ≤ 10**6")
    act = activation(spec)
    family = _leaky_family(act)
    given = {k: v for k, v in (("zeta", zeta), ("eta", eta), ("tau", tau)) if v is not None}
    if act.derivative(1).deltas:
        raise VanishcalcError(f"{where}: {method.upper()} has no solution for φ = {act.name}: φ "
                              "jumps, so C'(1) = E[φ̂'(z)²] is infinite; use a continuous φ")
    if method == "dks":
        wrong = sorted(set(given) - {"zeta"})
        if wrong:
            raise VanishcalcError(f"{where}: {wrong[0]} applies to method='tat'; DKS takes zeta "
                                  "(the network's c-map slope C'_f(1))")
        z = real(where, "zeta", DEFAULT_ZETA if zeta is None else zeta)
        if not z > 1.0:
            raise VanishcalcError(f"{where}: zeta = {z!r} must be > 1 (ζ = C'_f(1) is 1 only "
                                  "for a linear network; the DKS paper uses 1.5)")
        return act, family, method, depth, {"zeta": z}
    if family is not None:                       # TAT on a (leaky) ReLU: the η condition
        if family == 0.0:
            raise VanishcalcError(f"{where}: TAT has no solution for φ = {act.name}: a ReLU's "
                                  "C''(1) is infinite (its kink) and TAT's η condition sets a "
                                  "leaky ReLU's negative slope; pass 'leaky_relu' instead")
        if "tau" in given:
            raise VanishcalcError(f"{where}: tau applies to smooth φ; for the leaky ReLU "
                                  f"{act.name} TAT takes eta (the network's C_f(0))")
        e = real(where, "eta", DEFAULT_ETA if eta is None else eta)
        if not 0.0 <= e < 1.0:
            raise VanishcalcError(f"{where}: eta = {e!r} must lie in [0, 1) (η = C_f(0) of the "
                                  "network; the TAT paper uses 0.9)")
        return act, family, method, depth, {"eta": e}
    if "eta" in given:
        raise VanishcalcError(f"{where}: eta applies to leaky ReLU only; for φ = {act.name} TAT "
                              "takes tau (the network's c-map curvature C''_f(1))")
    t = real(where, "tau", DEFAULT_TAU if tau is None else tau)
    if not t > 0.0:
        raise VanishcalcError(f"{where}: tau = {t!r} must be > 0 (τ = C''_f(1); the TAT paper "
                              "uses 0.3)")
    if act.derivative(2).deltas:
        raise VanishcalcError(f"{where}: TAT has no solution for φ = {act.name}: φ has a kink, "
                              "so C''(1) = E[φ̂''(z)²] is infinite; use a smooth φ, or a leaky "
                              "ReLU (TAT's η condition)")
    return act, family, method, depth, {"tau": t}


def leaky_slope(spec):
    """α if φ is a (scaled) leaky ReLU r·max(x, αx), r > 0, 0 ≤ α < 1 (ReLU: 0.0), else None:
    the φ for which TAT uses its η condition and dks its own unknowns.

    >>> leaky_slope("leaky_relu"), leaky_slope("relu"), leaky_slope("tanh")
    (0.01, 0.0, None)
    """
    return _leaky_family(activation(spec))


def _leaky_family(act: Activation):
    """α for φ = r·max(x, αx) with r > 0, 0 ≤ α < 1 (ReLU: α = 0), else None.

    These positively homogeneous φ are dks's 'relu' and 'leaky_relu', solved with their own
    unknowns (dks fixes a ReLU's input shift and optimizes a leaky ReLU's slope)."""
    if len(act.kinks) != 1 or act.kinks[0] != 0.0 or act.deltas:
        return None
    slopes = []
    for p in act.pieces:
        poly = sympy.Poly(p.expr, X) if p.expr.is_polynomial(X) else None
        if poly is None or poly.degree() > 1:
            return None
        coeffs = poly.all_coeffs()
        if len(coeffs) == 2 and coeffs[1] != 0:
            return None
        slopes.append(float(coeffs[0]) if len(coeffs) == 2 else 0.0)
    left, right = slopes
    if not right > 0 or not 0.0 <= left / right < 1.0:
        return None
    return left / right


# ---------------------------------------------------------------- Gaussian moments, fast


_GL_ORDER = 20
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_GL_ORDER)
Z_MAX = 14.0       # e^{-14²/2} ≈ 3e-43: beyond it no sub-exponential φ contributes


class _Family:
    """φ (or leaky ReLU with a variable slope) as numpy callables φ, φ', φ'' and kinks."""

    def __init__(self, act: Activation | None, slope: float | None = None, need_d2=False):
        if act is not None:
            self.f = act.numpy
            self.df = act.derivative(1).numpy
            self.d2f = act.derivative(2).numpy if need_d2 else None
            self.kinks = act.kinks
        else:                                      # leaky ReLU, slope α (x > 0: x; x < 0: αx)
            a = slope
            self.f = lambda x: np.where(x > 0, x, a * x)
            self.df = lambda x: np.where(x > 0, 1.0, a)
            self.d2f = None
            self.kinks = (0.0,)


@dataclass(frozen=True)
class _Moments:
    m1: float      # E[ψ] − φ(b), with ψ(z) = φ(az + b)
    var: float     # Var ψ
    phi_b: float   # φ(b)
    d2: float      # E[ψ'²] = a² E[φ'(az+b)²]
    zd: float      # E[z ψ']
    zf0d: float    # E[z (ψ − φ(b)) ψ']
    dd2: float     # E[ψ''²] (0 unless asked for)


def _moments(fam: _Family, a: float, b: float, need_d2=False) -> _Moments:
    """The moments of ψ(z) = φ(az + b) by composite 20-point Gauss–Legendre in z on
    [−Z_MAX, Z_MAX], panels of width ≤ 1/2 split at the kinks (k − b)/a and at the unit
    scale x = 0, ±2^k of φ mapped to z (as ``bn_affine._moments_fast``).  Centred at φ(b) so
    that Var ψ does not cancel for small a."""
    unit = [0.0] + [s * 2.0 ** k for k in range(-3, 7) for s in (1, -1)]
    breaks = [(k - b) / a for k in (*fam.kinks, *unit)] if a != 0 else []
    edges = np.unique(np.concatenate([np.linspace(-Z_MAX, Z_MAX, 57),
                                      [z for z in breaks if -Z_MAX < z < Z_MAX]]))
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    z = (mid[:, None] + half[:, None] * _GL_X[None, :]).ravel()
    w = (half[:, None] * _GL_W[None, :]).ravel() * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    x = a * z + b
    with np.errstate(all="ignore"):
        phi_b = float(fam.f(np.array([b]))[0])
        f0 = fam.f(x) - phi_b
        d = a * fam.df(x)
        m1 = w @ f0
        s2 = w @ (f0 * f0)
        dd2 = float(w @ (a * a * fam.d2f(x)) ** 2) if need_d2 else 0.0
        return _Moments(m1=float(m1), var=float(s2 - m1 * m1), phi_b=phi_b,
                        d2=float(w @ (d * d)), zd=float(w @ (z * d)),
                        zf0d=float(w @ (z * f0 * d)), dd2=dd2)


# ---------------------------------------------------------------- local maps and residuals


def _dks_output(m: _Moments):
    """c and s from E[φ̂] = 0 and Q(1) = 1."""
    return -(m.m1 + m.phi_b), 1.0 / math.sqrt(m.var)


def _dks_maps(m: _Moments):
    """Q'(1) and C'(1) of φ̂ at the DKS output parameters."""
    if not m.var > 0:
        return math.nan, math.nan
    return (m.zf0d - m.m1 * m.zd) / m.var, m.d2 / m.var


def _tat_maps(m: _Moments, c: float):
    """Q'(1), C'(1), C''(1) of φ̂ = s(ψ + c) with s from Q(1) = 1."""
    c0 = c + m.phi_b                                  # φ̂/s = (ψ − φ(b)) + c0
    q = m.var + (m.m1 + c0) ** 2                      # E[(ψ + c)²]
    if not q > 0:
        return math.nan, math.nan, math.nan
    return (m.zf0d + c0 * m.zd) / q, m.d2 / q, m.dd2 / q


# ---------------------------------------------------------------- the solver


@dataclass(frozen=True)
class _Problem:
    """What is solved: unknown names, the residual vector and how to read off (a, b, c, s, α)."""

    names: tuple
    residual: object          # p -> np.ndarray
    params: object            # p -> dict of input_scale, input_shift, output_shift, output_scale, negative_slope
    # The search's passes, tried in order until one finds a root: (input unit, reject), with
    # the starts' input scale and shift stretched by the unit and ``reject(params)`` true for
    # roots to skip (dks's TAT rule against 'bad' roots), or None.
    passes: tuple = ((1.0, None),)


def _problem(act, family, method, local):
    if method == "dks" and family == 0.0:
        # dks's ReLU rule: Q'(1) is dropped, the input shift fixed to ±1, a solved for C'(1)
        b = 1.0 if local < RELU_SHIFT_SWITCH else -1.0
        fam = _Family(act)

        def params(p):
            m = _moments(fam, p[0], b)
            c, s = _dks_output(m)
            return dict(input_scale=p[0], input_shift=b, output_shift=c, output_scale=s,
                        negative_slope=None)
        return _Problem(("input_scale",), lambda p: np.array([_dks_maps(_moments(fam, p[0], b))[1]
                                                              - local]), params)
    if method == "dks" and family is not None:
        # dks's leaky ReLU: unknowns (negative slope, input shift), input scale 1

        def fam_at(p):
            return _Family(None, slope=p[0])

        def residual(p):
            qs, cs = _dks_maps(_moments(fam_at(p), 1.0, p[1]))
            return np.array([qs - 1.0, cs - local])

        def params(p):
            c, s = _dks_output(_moments(fam_at(p), 1.0, p[1]))
            return dict(input_scale=1.0, input_shift=p[1], output_shift=c, output_scale=s,
                        negative_slope=p[0])
        return _Problem(("negative_slope", "input_shift"), residual, params)
    if method == "dks":
        fam = _Family(act)

        def residual(p):
            qs, cs = _dks_maps(_moments(fam, p[0], p[1]))
            return np.array([qs - 1.0, cs - local])

        def params(p):
            c, s = _dks_output(_moments(fam, p[0], p[1]))
            return dict(input_scale=p[0], input_shift=p[1], output_shift=c, output_scale=s,
                        negative_slope=None)
        return _Problem(("input_scale", "input_shift"), residual, params)
    fam = _Family(act, need_d2=True)

    def residual(p):
        qs, cs, cc = _tat_maps(_moments(fam, p[0], p[1], need_d2=True), p[2])
        return np.array([qs - 1.0, cs - 1.0, cc - local])

    def params(p):
        m = _moments(fam, p[0], p[1])
        c0 = p[2] + m.phi_b
        s = 1.0 / math.sqrt(m.var + (m.m1 + c0) ** 2)
        return dict(input_scale=p[0], input_shift=p[1], output_shift=p[2], output_scale=s,
                    negative_slope=None)
    # dks's search first (its starts and rule, so that where several roots exist we pick the
    # one dks's search meets); then the same search in φ's units (_units), which finds the
    # roots of sigmoid and tanh(50x) that tanh's units miss or reject.
    passes = ((1.0, _bad_root_rule(1.0)),)
    units = _units(act)
    if units is not None and units != (1.0, 1.0):     # in tanh's units it repeats the first
        slope, unit = units
        passes += ((unit, _bad_root_rule(slope)),)
    return _Problem(("input_scale", "input_shift", "output_shift"), residual, params,
                    passes=passes)


def _bad_root_rule(slope):
    """dks's rejection a·s ≥ 2 ("a hacky fix used to avoid certain 'bad' solutions [...] with
    unstable Q maps"), in the units of a φ with max|φ'| = ``slope`` (tanh: 1)."""
    return lambda d: d["input_scale"] * d["output_scale"] * slope >= 2.0


def _units(act: Activation):
    """(max|φ'|, w/2) of a bounded φ, for the search's second pass, where
    w = (sup φ − inf φ)/max|φ'| is the width of x over which φ rises (tanh: 2, sigmoid: 4,
    tanh(50x): 0.04); None where φ does not settle at both ends (unbounded, or algebraic
    tails like softsign's) or φ or φ' is not finite out there.

    dks's starting points and its rule a·s < 2 are written in tanh's units.  For
    φ(x) = k·tanh(x/u) + m, tanh's root (a, b, c, s) is φ's root (u·a, u·b, ·, s/k): so the
    starts stretched by u = w/2 and the rule a·s·max|φ'| < 2 (max|φ'| = k/u) are dks's search
    in φ's units.  Without a finite range there is no such unit (x²'s max|φ'| is only the
    grid's end).  max|φ'| and the range are read off a grid out to |x| = 10⁶, only to choose
    where to search (every root is certified)."""
    x = np.concatenate([-np.logspace(6, -4, 601), [0.0], np.logspace(-4, 6, 601)])
    with np.errstate(all="ignore"):
        f = np.asarray(act.numpy(x), dtype=float) * np.ones_like(x)
        d = np.abs(np.asarray(act.derivative(1).numpy(x), dtype=float) * np.ones_like(x))
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(d))):
        return None
    slope = float(np.max(d))
    spread = float(np.max(f) - np.min(f))
    # bounded: φ settles at both ends (|φ(±10⁶) − φ(±10⁵)| negligible against its spread)
    ends = np.abs(f[[0, -1]] - f[[60, -61]])
    if not slope > 0 or not spread > 0 or np.max(ends) > 1e-9 * spread:
        return None
    return slope, spread / slope / 2.0


def _starting_points(names, input_unit=1.0):
    """dks's starting points; with ``input_unit`` ≠ 1 the input scale and shift are
    stretched by it (φ's own input units in place of tanh's)."""
    import itertools
    points = list(itertools.product(*(_ALWAYS_TRY[n] for n in names)))
    rng = np.random.RandomState(_SEED)        # dks's draws, in dks's order; global state untouched
    for _ in range(_NUM_TRIES - len(points)):
        points.append(tuple(rng.uniform(low=_SAMPLE_RANGE[n][0], high=_SAMPLE_RANGE[n][1])
                            for n in names))
    if input_unit != 1.0:
        stretch = np.array([input_unit if n in ("input_scale", "input_shift") else 1.0
                            for n in names])
        points = [tuple(np.asarray(p) * stretch) for p in points]
    return points


def _safe(residual):
    def fn(p):
        with np.errstate(all="ignore"):
            r = residual(np.asarray(p, dtype=float))
        return np.where(np.isfinite(r), r, 1e6)
    return fn


def _newton_polish(residual, p, steps=6):
    """A few Newton steps with a central-difference Jacobian, kept while they lower the
    residual: hybr stops at a relative step of 1.5e-8, this takes the residual to rounding."""
    p = np.asarray(p, dtype=float)
    r = residual(p)
    for _ in range(steps):
        if np.max(np.abs(r)) < 1e-15:
            break
        h = 1e-6 * np.maximum(np.abs(p), 1e-3)
        jac = np.empty((len(r), len(p)))
        for j in range(len(p)):
            e = np.zeros_like(p)
            e[j] = h[j]
            jac[:, j] = (residual(p + e) - residual(p - e)) / (2 * h[j])
        try:
            step = np.linalg.solve(jac, r)
        except np.linalg.LinAlgError:
            break
        q = p - step
        rq = residual(q)
        if not np.all(np.isfinite(rq)) or np.max(np.abs(rq)) >= np.max(np.abs(r)):
            break
        p, r = q, rq
    return p, r


def _symmetry(act: Activation):
    """("odd", m) if φ(x) + φ(−x) = 2m (tanh, sigmoid, erf…), ("even", None) if φ(−x) = φ(x),
    else None — checked on a grid; used only to pick a canonical root, which is certified."""
    x = np.linspace(0.0, 8.0, 161)
    with np.errstate(all="ignore"):
        fp, fm = act.numpy(x), act.numpy(-x)
    scale = 1.0 + float(np.max(np.abs(fp)))
    if not np.all(np.isfinite(fp)) or not np.all(np.isfinite(fm)):
        return None
    total = fp + fm
    if np.max(np.abs(total - total[0])) <= 1e-13 * scale:
        return "odd", float(total[0]) / 2
    if np.max(np.abs(fp - fm)) <= 1e-13 * scale:
        return "even", None
    return None


def _canonical(params, symmetry):
    """The conditions see φ̂ only through E[g(φ̂, φ̂', φ̂'')] with g even in its argument's
    sign and z ~ N(0, 1) symmetric: φ̂(−x) and, for odd φ, −φ̂(−x) meet them too.  Roots
    differing by these moves are one transform; we report the one with a > 0 and, for a
    symmetric φ, b ≥ 0 (dks reports whichever its root finder reaches first)."""
    p = dict(params)
    if p["input_scale"] < 0:                 # φ̂(−x)
        p["input_scale"] = -p["input_scale"]
    if symmetry is not None and p["input_shift"] < 0:
        kind, m = symmetry
        p["input_shift"] = -p["input_shift"]
        if kind == "odd":                    # −φ̂(−x): φ(−u) = 2m − φ(u)
            p["output_shift"] = -p["output_shift"] - 2 * m
    return p


def _search(prob: _Problem, where: str):
    import time

    from scipy.optimize import root
    fn = _safe(prob.residual)
    began = time.monotonic()
    for unit, reject in prob.passes:
        for start in _starting_points(prob.names, unit):
            if time.monotonic() - began > SEARCH_SECONDS:
                raise NotConvergedError(f"{where}: no root found within the {SEARCH_SECONDS:g} s "
                                        "budget of the search; φ is expensive to evaluate or the "
                                        "target out of its reach — try a ζ closer to 1 or a "
                                        "smaller τ")
            sol = root(fn, np.asarray(start, dtype=float), method="hybr")
            if not sol.success or np.max(np.abs(sol.fun)) > 1e-6:
                continue
            p, r = _newton_polish(fn, sol.x)
            params = prob.params(p)
            if reject is not None and reject(params):
                continue
            if not all(math.isfinite(v) for v in params.values() if v is not None):
                continue
            if params["input_scale"] == 0.0:
                continue
            return p, params
    tried = "dks's, then again in φ's units" if len(prob.passes) > 1 else "dks's"
    raise VanishcalcError(f"{where}: no solution: from {_NUM_TRIES} starting points ({tried}) no "
                          f"({', '.join(prob.names)}) meets the conditions; the target may be "
                          "out of this φ's reach — try a ζ closer to 1 (DKS), a smaller τ (TAT) or "
                          "a larger depth")


# ---------------------------------------------------------------- φ̂ as an expression


def _num(v: float):
    return sympy.Rational(float(v))        # the double exactly


def _expr(act: Activation, family, params) -> sympy.Expr:
    # a, b, c, s (and α) enter as the exact rationals of their doubles: φ's kinks then map to
    # exact points (k − b)/a where both pieces agree exactly, so a continuous φ̂ has no
    # spurious rounding jump (which Activation.derivative would turn into a Dirac mass);
    # Floats would not do: SymPy distributes s over the pieces and rounds there.
    a, b = _num(params["input_scale"]), _num(params["input_shift"])
    c, s = _num(params["output_shift"]), _num(params["output_scale"])
    u = a * X + b
    if params["negative_slope"] is not None:
        inner = sympy.Max(u, _num(params["negative_slope"]) * u)
    else:
        # φ's own decimal constants (selu's 40-digit λ, α) as exact rationals too
        base = act.expr.xreplace({f: sympy.Rational(f) for f in act.expr.atoms(sympy.Float)})
        inner = base.subs(X, u)
    return s * (inner + c)


# ---------------------------------------------------------------- certification


CERTIFY_Z = 38.0     # e^{-38²/2} underflows a double: the certified integrals run to ±38


def _certified_moments(fam: _Family, a: float, b: float, need_d2: bool):
    """The moments of :func:`_moments` again, each by vanishcalc's adaptive Gauss–Kronrod
    (``gaussian/numeric.adaptive_gk``, second rule on) with its error estimate: a rule
    independent of the solver's fixed Gauss–Legendre one, on [−38, 38] split at the kinks
    and at φ's unit scale mapped to z.  The integrand at ±38 (where the Gaussian factor
    underflows) is the tail estimate; a φ whose integrand is still visible there is refused."""
    from ..gaussian.numeric import adaptive_gk, panel_edges, std_normal_pdf
    unit = [0.0] + [sg * 2.0 ** k for k in range(-3, 7) for sg in (1, -1)]
    edges = panel_edges(CERTIFY_Z, [(k - b) / a for k in (*fam.kinks, *unit)])
    phi_b = float(fam.f(np.array([b]))[0])

    def f0(z):
        return fam.f(a * z + b) - phi_b

    def d(z):
        return a * fam.df(a * z + b)
    parts = {"m1": f0, "s2": lambda z: f0(z) ** 2, "d2": lambda z: d(z) ** 2,
             "zd": lambda z: z * d(z), "zf0d": lambda z: z * f0(z) * d(z)}
    if need_d2:
        parts["dd2"] = lambda z: (a * a * fam.d2f(a * z + b)) ** 2
    out = {}
    ends = np.array([-CERTIFY_Z, CERTIFY_Z])
    for name, g in parts.items():
        def weighted(z, g=g):
            return g(z) * std_normal_pdf(z)
        with np.errstate(all="ignore"):
            tail = float(np.sum(np.abs(weighted(ends))))
            try:
                v, e, l1 = adaptive_gk(weighted, edges, rtol=1e-15, atol=1e-300,
                                       label=f"a transform moment of {name}", second_rule=True)
            except NotConvergedError as exc:       # rounding noise: keep the honest estimate
                if exc.best is None:
                    raise
                (v, e), l1 = exc.best, getattr(exc, "l1", abs(exc.best[0]))
        if not (math.isfinite(tail) and tail <= 1e-16 * max(l1, 1e-300)):
            raise NotConvergedError(f"transform: the Gaussian integrand of φ at z = ±{CERTIFY_Z:g} "
                                    "is not negligible (φ grows too fast): the conditions cannot "
                                    "be certified")
        out[name] = (v, e + tail)
    out["phi_b"] = phi_b
    return out


def _cond(key, name, value, error, target, tolerance=RESIDUAL_TOL):
    return Condition(key, name, Value(value, error=error, error_kind="estimate",
                                 method="numeric:gauss-kronrod (transform moments)"),
                     target, tolerance)


def _certify(fam: _Family, params, method: str, depth: int, local: float, target: float,
             q_slope: bool):
    """Every condition of φ̂ = s(ψ + c), ψ(z) = φ(az + b), from :func:`_certified_moments`,
    errors propagated to first order plus 16 ulp of each sum's terms (cancellation)."""
    a, b = params["input_scale"], params["input_shift"]
    c, s = params["output_shift"], params["output_scale"]
    mo = _certified_moments(fam, a, b, need_d2=(method == "tat"))
    eps = 16 * np.finfo(float).eps
    (m1, e1), (s2, es2), (d2, ed2) = mo["m1"], mo["s2"], mo["d2"]
    (zd, ezd), (zf0d, ezf0d) = mo["zd"], mo["zf0d"]
    c0 = c + mo["phi_b"]                                 # φ̂/s = (ψ − φ(b)) + c0
    s_2 = s * s
    mean = s * (m1 + c0)
    mean_err = abs(s) * (e1 + eps * (abs(m1) + abs(c0)))
    q1 = s_2 * (s2 + 2 * c0 * m1 + c0 * c0)
    q1_err = s_2 * (es2 + 2 * abs(c0) * e1 + eps * (abs(s2) + 2 * abs(c0 * m1) + c0 * c0))
    conds = []
    if method == "dks":
        conds.append(_cond("mean", "E[φ̂(z)]", mean, mean_err, 0.0))
    conds.append(_cond("q", "Q(1) = E[φ̂(z)²]", q1, q1_err, 1.0))
    if q_slope:
        qs = s_2 * (zf0d + c0 * zd)
        qs_err = s_2 * (ezf0d + abs(c0) * ezd + eps * (abs(zf0d) + abs(c0 * zd)))
        conds.append(_cond("q_slope", "Q'(1) = E[z φ̂(z) φ̂'(z)]", qs, qs_err, 1.0))
    cs = s_2 * d2 / q1
    cs_err = abs(cs) * (ed2 / d2 + q1_err / q1 + eps)
    conds.append(_cond("c_slope", "C'(1) = E[φ̂'(z)²]/Q(1)", cs, cs_err,
                       local if method == "dks" else 1.0))
    if method == "dks":
        net = cs ** depth
        # a local residual r moves C'(1)^L by about L·ζ·r: the network condition's tolerance
        conds.append(_cond("net_c_slope", f"C'_f(1) = C'(1)^{depth}", net,
                           depth * net / cs * cs_err + eps * depth * net, target,
                           RESIDUAL_TOL * depth * target))
    else:
        dd2, edd2 = mo["dd2"]
        cc = s_2 * dd2 / q1
        cc_err = abs(cc) * (edd2 / max(dd2, 1e-300) + q1_err / q1 + eps)
        conds.append(_cond("c_curv", "C''(1) = E[φ̂''(z)²]/Q(1)", cc, cc_err, local))
        # a chain of c maps with C'(1) = 1: C''_f(1) = L·C''(1)
        conds.append(_cond("net_c_curv", f"C''_f(1) = {depth}·C''(1)", depth * cc,
                           depth * cc_err, target, RESIDUAL_TOL * depth))
    return tuple(conds)


# ---------------------------------------------------------------- TAT for leaky ReLU


def leaky_relu_c_map(c, negative_slope):
    """The local c map of a leaky ReLU with Q(1) = 1 (TAT eq. 7; Cho & Saul 2009):

    .. math:: C(c) = \\frac{(1-\\alpha)^2(\\sqrt{1-c^2} + (\\pi - \\arccos c)\\,c)/\\pi
              + 2\\alpha c}{1 + \\alpha^2}
    """
    a = negative_slope
    return (((1 - a) ** 2 * (math.sqrt(max(1 - c * c, 0.0)) + (math.pi - math.acos(c)) * c)
             / math.pi + 2 * a * c) / (1 + a * a))


def _network_c0(alpha, depth, mp=None):
    if mp is None:
        c = 0.0
        for _ in range(depth):
            c = leaky_relu_c_map(c, alpha)
        return c
    a = mp.mpf(alpha)
    c = mp.mpf(0)
    for _ in range(depth):
        c = ((1 - a) ** 2 * (mp.sqrt(1 - c * c) + (mp.pi - mp.acos(c)) * c) / mp.pi
             + 2 * a * c) / (1 + a * a)
    return c


def _tat_leaky(act, depth, eta, where):
    """α with C_f(0) = η by Brent on the double composition, s = √(2/(1 + α²)).

    Both conditions are closed forms: Q(1) = s²(1 + α²)/2, and C_f(0) is L steps of the
    c map, whose slope lies in [0, 1] on [0, 1] (it is convex with C'(1) = 1), so rounding
    errors do not grow along the chain: a few ulp per step bound the error."""
    from scipy.optimize import brentq
    reach = _network_c0(0.0, depth)            # the largest C_f(0): α = 0 (ReLU)
    if eta >= reach:
        raise VanishcalcError(
            f"{where}: no solution: a depth-{depth} leaky ReLU chain reaches C_f(0) ≤ "
            f"{reach:.6g} (at slope 0), below eta = {eta!r}; use a smaller eta or a larger depth")
    if eta == 0.0:
        alpha = 1.0
    else:
        alpha = brentq(lambda a: _network_c0(a, depth) - eta, 0.0, 1.0, xtol=1e-17, rtol=1e-15,
                       maxiter=200)
    eps = np.finfo(float).eps
    s = math.sqrt(2.0 / (1.0 + alpha * alpha))
    params = dict(input_scale=1.0, input_shift=0.0, output_shift=0.0, output_scale=s,
                  negative_slope=alpha)
    q1 = s * s * (1 + alpha * alpha) / 2
    conds = (Condition("q", "Q(1) = E[φ̂(z)²]",
                       Value(q1, error=8 * eps, method="closed form s²(1 + α²)/2"), 1.0),
             Condition("net_c0", f"C_f(0) = C^{depth}(0)",
                       Value(_network_c0(alpha, depth), error=16 * eps * depth,
                             method="closed-form leaky ReLU c map, composed"), eta,
                       max(RESIDUAL_TOL, 32 * eps * depth)))
    return params, conds


# ---------------------------------------------------------------- public entry


def transform(spec, method="dks", *, depth, zeta=None, eta=None, tau=None) -> Transform:
    r"""DKS or TAT transform of φ for a chain of ``depth`` nonlinear layers.

    .. math:: \hat\varphi(x) = s\,\bigl(\varphi(a x + b) + c\bigr)

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ: a zoo name or an expression in ``x``.
    method : {"dks", "tat"}
        DKS (Martens et al. 2021) or TAT (Zhang et al. 2022).
    depth : int
        L ≥ 1, the number of nonlinear layers of the network (dks: the maximal-slope and
        subnetwork-maximizing functions of a plain chain, x^L and L·x).
    zeta : float, optional
        DKS: the network's C'_f(1) = ζ > 1 (default 1.5); the local target is ζ^{1/L}.
    eta : float, optional
        TAT for leaky ReLU: the network's C_f(0) = η ∈ [0, 1) (default 0.9).
    tau : float, optional
        TAT for smooth φ: the network's C''_f(1) = τ > 0 (default 0.3); local target τ/L.

    Returns
    -------
    Transform
        a, b, c, s (and α for leaky ReLU), φ̂ as ``.expr`` / ``.activation``, and
        ``.conditions``: each condition certified by :func:`vanishcalc.expect`, residual
        plus error ≤ 1e-12.

    Raises
    ------
    VanishcalcError
        bad method, depth < 1, ζ ≤ 1, τ ≤ 0, η ∉ [0, 1), a parameter of the other method, or
        no solution (ReLU under TAT, a target beyond φ's reach).
    NotConvergedError
        if the certified conditions miss 1e-12 (``best`` holds the Transform).

    Notes
    -----
    Derivation, dks's conventions and the checks: notes/transforms.md.

    References
    ----------
    Martens et al. 2021, "Rapid training of deep neural networks without skip connections or
    normalization layers using Deep Kernel Shaping", arXiv:2110.01765, §4–5.
    Zhang et al. 2022, "Deep learning without shortcuts: shaping the kernel with tailored
    rectifiers" (TAT), arXiv:2203.08120, §3–4.

    Examples
    --------
    >>> t = transform("tanh", "dks", depth=100)
    >>> round(t.input_scale, 6), t.max_residual < 1e-12
    (0.090438, True)
    """
    act, family, method, depth, target = _transform_iv(spec, method, depth, zeta, eta, tau)
    where = f"transform({act.name!r}, method={method!r})"
    if method == "tat" and family is not None:
        params, conds = _tat_leaky(act, depth, target["eta"], where)
        return _result(act, method, depth, target, params, conds, 0.5)
    if method == "dks":
        local = target["zeta"] ** (1.0 / depth)
    else:
        local = target["tau"] / depth
    prob = _problem(act, family, method, local)
    p, params = _search(prob, where)
    if family is None:
        params = _canonical(params, _symmetry(act))
    if params["negative_slope"] is not None:
        fam = _Family(None, slope=params["negative_slope"])
    else:
        fam = _Family(act, need_d2=(method == "tat"))
    q_slope = not (method == "dks" and family == 0.0)
    conds = _certify(fam, params, method, depth, local, next(iter(target.values())), q_slope)
    return _result(act, method, depth, target, params, conds, family)


def _result(act, method, depth, target, params, conds, family):
    expr = _expr(act, family, params)
    t = Transform(base=act.name, method=method, depth=depth, target=dict(target),
                  input_scale=float(params["input_scale"]),
                  input_shift=float(params["input_shift"]),
                  output_shift=float(params["output_shift"]),
                  output_scale=float(params["output_scale"]),
                  negative_slope=(None if params["negative_slope"] is None
                                  else float(params["negative_slope"])),
                  expr=expr, conditions=conds)
    for bad in conds:
        if not bad.met:
            raise NotConvergedError(f"transform: the certified condition {bad.name} misses its "
                                    f"target by {bad.residual:.2g} ± {bad.value.error:.1g} "
                                    f"(> {bad.tolerance:g})", best=t)
    return t
