"""BatchNorm / LayerNorm gradient rates and the affine (γ, β) that sets them, for any φ.

Layered like DKS' ``activation_transform``: Gaussian moments of ψ(z) = φ(γz + β)
(``_moments_fast``, certified ``_rate_certified``) → the rate (``_rate``) → solvers
(``_solve_gamma``, ``_minimize_beta``) → public entries ``bn_gradient_rate``,
``ln_gradient_rate``, ``bn_affine``.

The per-layer growth of the expected squared gradient norm of a deep network with blocks
h → BN → γĥ + β → φ → Dense at infinite width and batch (Yang et al. 2019, Thm 3.10 in the
large-batch limit; derivation in notes/normalization.md):

.. math::

    \\lambda_{BN}(\\gamma, \\beta)
      = \\frac{\\gamma^2\\,E[\\varphi'(\\gamma z+\\beta)^2]}{\\mathrm{Var}[\\varphi(\\gamma z+\\beta)]},
    \\qquad
    \\lambda_{LN}(\\gamma, \\beta)
      = \\frac{\\gamma^2\\,E[\\varphi'(\\gamma z+\\beta)^2]}{E[\\varphi(\\gamma z+\\beta)^2]} .

(LN divides by the second moment: the mean over units of a random Dense output is 0, so
LayerNorm does not remove E[φ]²; BatchNorm's batch centering does.)  relu: λ_BN = π/(π−1),
λ_LN = 1.  Linear φ at batch B: λ_BN = (B−2)/(B−3).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import sympy
from scipy.optimize import brentq, minimize_scalar
from scipy.special import ndtr

from ..activation import Activation, activation
from ..errors import NotConvergedError, VanishcalcError
from ..gaussian.expect import expect
from ..gaussian.numeric import adaptive_gk, std_normal_pdf
from ..maps.norm import _affine_iv as _gamma_beta_iv
from ..maps.norm import batch_iv
from ..parse import X
from ..validate import real
from ..value import Value

GAMMA_RANGE = (1e-2, 1e2)      # γ scanned by the solver (log grid), then refined by Brent
BETA_RANGE = (-6.0, 6.0)       # β scanned by optimize="beta"
SATURATION = 1e-3              # |φ'| < SATURATION·max|φ'| counts as saturated (as sim/)
Z_MAX = 38.0                   # e^{-38²/2} underflows: nothing beyond matters for sub-Gaussian-tail φ


# ---------------------------------------------------------------- input validation


def _affine_iv(where, spec, gamma, beta):
    act = activation(spec)
    g, b = _gamma_beta_iv(where, gamma, beta)
    if act.derivative(1).deltas:
        raise VanishcalcError(f"{where}: φ = {act.name} jumps, so E[φ'²] is infinite and the "
                              "gradient rate is not defined; use a continuous φ")
    return act, g, b


def _exact_number(v: float):
    """The decimal the user typed as an exact Rational (0.1 → 1/10)."""
    return sympy.Rational(repr(float(v)))


# ---------------------------------------------------------------- Gaussian moments of ψ(z) = φ(γz + β)


@dataclass(frozen=True)
class _Moments:
    d2: float        # E[ψ'(z)²] = γ² E[φ'(γz+β)²]
    var: float       # Var[ψ(z)]
    m2: float        # E[ψ(z)²]
    cov_z: float     # Cov(ψ(z), z) = E[z ψ(z)] = γ E[φ'(γz+β)]
    error: float     # summed quadrature error estimate (absolute, on the largest term)


def _moments_fast(act: Activation, g: float, b: float) -> _Moments:
    """The four moments by adaptive Gauss–Kronrod in z, split at the kinks (k − β)/γ.

    The variance is computed from ψ0 = φ(γz+β) − φ(β) (both of its moments are O(γ²) for
    small γ), so it does not cancel catastrophically in the linear regime γ → 0."""
    f, df = act.numpy, act.derivative(1).numpy
    phi_b = float(f(np.array([b]))[0])
    breaks = sorted({(k - b) / g for k in act.kinks} | {-b / g})
    edges = np.unique(np.concatenate([np.linspace(-Z_MAX, Z_MAX, 39),
                                      [z for z in breaks if -Z_MAX < z < Z_MAX]]))

    # f(γz+β) − φ(β) carries a rounding error of a few ulp of φ(β): an absolute floor
    floor = 64 * np.finfo(float).eps * max(abs(phi_b), 1e-300)

    def integrate(fn, atol=1e-300):
        try:
            v, e, _ = adaptive_gk(lambda z: fn(z) * std_normal_pdf(z), edges, rtol=1e-12,
                                  atol=atol)
        except NotConvergedError as exc:     # rounding noise of the difference: keep its error
            if exc.best is None:
                raise
            v, e = exc.best
        return v, e
    d2, e1 = integrate(lambda z: (g * df(g * z + b)) ** 2)
    m1, e2 = integrate(lambda z: f(g * z + b) - phi_b, floor)
    s2, e3 = integrate(lambda z: (f(g * z + b) - phi_b) ** 2)
    cz, e4 = integrate(lambda z: z * f(g * z + b))
    var = s2 - m1 * m1
    m2 = s2 + 2 * phi_b * m1 + phi_b ** 2
    return _Moments(d2, var, m2, cz, e1 + e2 * (2 * abs(m1) + 1) + e3 + e4)


def _rate_from(m: _Moments, norm: str) -> float:
    den = m.var if norm == "bn" else m.m2
    if not den > 0:
        raise VanishcalcError(f"φ(γz + β) is constant at this (γ, β): the {norm.upper()} "
                              "standardization of the next layer divides by zero")
    return m.d2 / den


def _rate_certified(act: Activation, gamma: float, beta: float, norm: str, exact: bool) -> Value:
    try:
        return _rate_expect(act, gamma, beta, norm, exact)
    except NotConvergedError:
        # φ(γz+β) − φ(β) at tiny γ: expect's relative target is below the rounding noise of
        # the difference; the fast path keeps the noise as its error estimate.
        m = _moments_fast(act, gamma, beta)
        rate = _rate_from(m, norm)
        den = m.var if norm == "bn" else m.m2
        return Value(rate, error=rate * m.error / min(den, m.d2), error_kind="estimate",
                     method=f"{norm}-rate:quadrature-noisy-difference")


def _rate_expect(act: Activation, gamma: float, beta: float, norm: str, exact: bool) -> Value:
    """The infinite-batch (or infinite-width, LN) rate through ``expect``: exact when every
    expectation has a closed form, else certified quadrature with a propagated error."""
    g, b = _exact_number(gamma), _exact_number(beta)
    psi = activation(act.expr.subs(X, g * X + b))
    dpsi = psi.derivative(1)
    d2 = expect(dpsi.map(lambda e: e ** 2, f"({psi.name})'²"), exact=exact)
    phi_b = act.expr.subs(X, b)
    psi0 = activation(sympy.expand(psi.expr - phi_b)) if phi_b != 0 else psi
    m1 = expect(psi0, exact=exact)
    s2 = expect(psi0.map(lambda e: e ** 2, f"({psi0.name})²"), exact=exact)
    if norm == "bn":
        den = float(s2) - float(m1) ** 2
        den_err = s2.error + 2 * abs(float(m1)) * m1.error
        den_exact = (s2.exact - m1.exact ** 2
                     if s2.exact is not None and m1.exact is not None else None)
    else:
        den = float(s2) + 2 * float(phi_b) * float(m1) + float(phi_b) ** 2
        den_err = s2.error + 2 * abs(float(phi_b)) * m1.error
        den_exact = (s2.exact + 2 * phi_b * m1.exact + phi_b ** 2
                     if s2.exact is not None and m1.exact is not None else None)
    if not den > 0:
        raise VanishcalcError(f"φ(γz + β) = {psi.name} is constant: the {norm.upper()} "
                              "standardization of the next layer divides by zero")
    method = f"{norm}-rate:infinite-{'batch' if norm == 'bn' else 'width'}"
    if d2.exact is not None and den_exact is not None:
        expr = sympy.simplify(d2.exact / den_exact)
        return Value.from_exact(expr, method=method + ":exact")
    rate = float(d2) / den
    err = rate * (d2.error / max(float(d2), 1e-300) + den_err / den) + 4e-16 * rate
    return Value(rate, error=err, error_kind="estimate", method=method + ":quadrature")


def _is_affine(act: Activation):
    try:
        poly = sympy.Poly(act.expr, X)
    except sympy.PolynomialError:
        return False
    return not act.kinks and poly.degree() <= 1


# ---------------------------------------------------------------- public: rates


def bn_gradient_rate(spec, gamma=1.0, beta=0.0, batch=None, *, width=256, depth=24, n_nets=16,
                     seed=0) -> Value:
    """Per-layer growth of E‖∂L/∂h‖² in a deep BatchNorm network with affine (γ, β).

    .. math::

        \\lambda = \\frac{\\gamma^2 E[\\varphi'(\\gamma z+\\beta)^2]}{\\mathrm{Var}[\\varphi(\\gamma z+\\beta)]}
        \\quad (B = \\infty),\\qquad \\lambda = \\frac{B-2}{B-3} \\quad (\\varphi \\text{ linear, batch } B).

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ.
    gamma, beta : float
        BN affine γ > 0 and β (Ioffe & Szegedy 2015).
    batch : int or None
        Batch size B ≥ 4; None for the infinite-batch limit.
    width, depth, n_nets, seed
        Only for a finite batch and a nonlinear φ, where no closed form is known: the rate
        is then measured by simulation (``vanishcalc.sim.composed``) at this width.

    Returns
    -------
    Value
        Exact when every Gaussian expectation has a closed form (relu at γ = 1, β = 0:
        π/(π − 1)); ``method`` says ``…:quadrature`` or ``…:simulation`` otherwise.  A
        simulated rate carries its Monte-Carlo standard error (``error_kind="estimate"``)
        and a finite-width bias of order 1/width that the error does not include.

    Raises
    ------
    VanishcalcError (ValueError)
        γ ≤ 0, non-finite γ or β, batch < 4 (degenerate standardization), φ with jumps.

    Notes
    -----
    notes/normalization.md.

    References
    ----------
    Yang et al. 2019, arXiv:1902.08129, Thm 3.10 (relu: π/(π−1)); linear (B−2)/(B−3) is
    derived in the note from E[1/χ²_{B−1}] = 1/(B−3).

    Examples
    --------
    >>> bn_gradient_rate("relu")
    pi/(-1 + pi) ≈ 1.46694220692426 (exact)
    >>> bn_gradient_rate("x", batch=8)
    6/5 ≈ 1.2 (exact)
    """
    act, g, b = _affine_iv("bn_gradient_rate", spec, gamma, beta)
    B = batch_iv("bn_gradient_rate", batch)
    if B is None:
        return _rate_certified(act, g, b, "bn", exact=True)
    if _is_affine(act):
        if act.expr.diff(X) == 0:
            raise VanishcalcError(f"bn_gradient_rate: φ = {act.name} is constant")
        return Value.from_exact(sympy.Rational(B - 2, B - 3), method="bn-rate:linear-batch")
    from ..sim.composed import measure_rate
    rate, se = measure_rate(act, gamma=g, beta=b, batch=B, width=width, depth=depth,
                            n_nets=n_nets, seed=seed, norm="bn")
    return Value(rate, error=se, error_kind="estimate",
                 method=f"bn-rate:simulation(width={width}, batch={B}, nets={n_nets})")


def ln_gradient_rate(spec, gamma=1.0, beta=0.0) -> Value:
    """Per-layer growth of E‖∂L/∂h‖² in a deep LayerNorm network (infinite width, σb = 0).

    .. math::

        \\lambda_{LN} = \\frac{\\gamma^2 E[\\varphi'(\\gamma z+\\beta)^2]}{E[\\varphi(\\gamma z+\\beta)^2]}

    The same as :func:`bn_gradient_rate` with the variance replaced by the second moment:
    LayerNorm standardizes over units, whose mean after a random Dense layer is 0, so E[φ]²
    stays in the denominator (BatchNorm's batch centering removes it), and LN does not reset
    the correlation between inputs.  No batch dependence; at width N the 2 directions of the
    per-input projection give a 1 − O(1/N) correction.  With a Dense bias σb before LN the
    denominator is E[φ²] + σb²/σw².

    Examples
    --------
    >>> ln_gradient_rate("relu")
    1 ≈ 1.0 (exact)
    """
    act, g, b = _affine_iv("ln_gradient_rate", spec, gamma, beta)
    return _rate_certified(act, g, b, "ln", exact=True)


# ---------------------------------------------------------------- the trade-off


@functools.lru_cache(maxsize=256)
def _dphi_max(act: Activation) -> float:
    from ..sim.compile import dphi_max
    return dphi_max(act)


def saturated_fraction(act: Activation, gamma: float, beta: float) -> float:
    """P(|φ'(γz + β)| < 1e-3·max|φ'|), z ~ N(0, 1): the units that pass no gradient.

    The set is located on a z grid of step 1e-3 over [−12, 12] (plus the tails beyond, by
    their end values); each boundary is refined by bisection, and the probabilities of the
    intervals are summed with the normal CDF."""
    act = activation(act)
    thr = SATURATION * _dphi_max(act)
    df = act.derivative(1).numpy

    def sat(z):
        with np.errstate(all="ignore"):
            return np.abs(df(gamma * np.asarray(z, dtype=float) + beta)) < thr
    z = np.linspace(-12.0, 12.0, 24001)
    s = sat(z)
    total = 0.0
    # tails beyond ±12 take the end values (probability < 2e-33)
    flips = np.nonzero(s[1:] != s[:-1])[0]
    edges = [-np.inf]
    for i in flips:
        lo, hi = z[i], z[i + 1]
        slo = s[i]
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if sat(np.array([mid]))[0] == slo:
                lo = mid
            else:
                hi = mid
        edges.append(0.5 * (lo + hi))
    edges.append(np.inf)
    state = s[0]
    for a, c in zip(edges[:-1], edges[1:]):
        if state:
            total += float(ndtr(c) - ndtr(a))
        state = not state
    return total


@dataclass(frozen=True)
class BNAffine:
    """A BatchNorm affine (γ, β) and the trade-off it sits on.

    ``gamma``, ``beta``: the affine; ``rate``: per-layer squared-gradient growth
    (:func:`bn_gradient_rate`, a Value); ``saturated_fraction``: P(|φ'(γz+β)| < 1e-3·max|φ'|);
    ``nonlinearity``: 1 − Cov(φ(γz+β), z)²/Var φ(γz+β), the share of the unit's variance
    its best linear fit does not explain (0 for a linear unit: rate 1, but no expressivity).
    """

    gamma: float
    beta: float
    rate: Value
    saturated_fraction: float
    nonlinearity: float
    spec: str = ""

    def __repr__(self):
        return (f"BNAffine({self.spec!r}: gamma={self.gamma:.6g}, beta={self.beta:.6g}, "
                f"rate={float(self.rate):.6g} ± {self.rate.error:.1e}, "
                f"saturated={self.saturated_fraction:.3g}, nonlinearity={self.nonlinearity:.3g})")


def _rate(act, g, b):
    return _rate_from(_moments_fast(act, g, b), "bn")


def _solve_gamma(act: Activation, target: float, beta: float) -> float:
    """The smallest γ on GAMMA_RANGE with λ(γ, β) = target (log-grid bracket, then Brent)."""
    gs = np.logspace(math.log10(GAMMA_RANGE[0]), math.log10(GAMMA_RANGE[1]), 61)
    rs = []
    for gv in gs:
        try:
            rs.append(_rate(act, float(gv), beta))
        except (VanishcalcError, ArithmeticError):
            rs.append(math.nan)
    rs = np.asarray(rs)
    r = rs - target
    for i in range(len(gs) - 1):
        if np.isfinite(r[i]) and r[i] == 0:
            return float(gs[i])
        if np.isfinite(r[i]) and np.isfinite(r[i + 1]) and (r[i] > 0) != (r[i + 1] > 0):
            return brentq(lambda gv: _rate(act, gv, beta) - target, gs[i], gs[i + 1],
                          xtol=1e-14, rtol=1e-12)
    fin = rs[np.isfinite(rs)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (math.nan, math.nan)
    raise VanishcalcError(
        f"bn_affine: rate = {target:g} is unreachable for φ = {act.name} at beta = {beta:g}: "
        f"over gamma in [{GAMMA_RANGE[0]:g}, {GAMMA_RANGE[1]:g}] the rate spans "
        f"[{lo:.6g}, {hi:.6g}]; pick a rate in that range, or another beta "
        "(optimize='beta' finds the β with the smallest rate)")


def _minimize_beta(act: Activation, gamma: float) -> float:
    """β on BETA_RANGE minimizing λ(γ, β): grid scan, then bounded Brent around the best."""
    bs = np.linspace(BETA_RANGE[0], BETA_RANGE[1], 121)
    rs = np.array([_safe_rate(act, gamma, float(bv)) for bv in bs])
    if not np.any(np.isfinite(rs)):
        raise NotConvergedError(f"bn_affine: no finite rate for φ = {act.name} at gamma = {gamma:g}")
    i = int(np.nanargmin(rs))
    lo, hi = bs[max(i - 1, 0)], bs[min(i + 1, len(bs) - 1)]
    res = minimize_scalar(lambda bv: _safe_rate(act, gamma, bv), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-10})
    return float(res.x) if res.fun <= rs[i] else float(bs[i])


def _safe_rate(act, g, b):
    try:
        v = _rate(act, g, b)
    except (VanishcalcError, ArithmeticError):
        return math.inf
    return v if math.isfinite(v) else math.inf


def _bn_affine_iv(rate, gamma, optimize):
    if optimize not in (None, "beta"):
        raise VanishcalcError(f"bn_affine: optimize = {optimize!r} must be None or 'beta'")
    if rate is not None and gamma is not None:
        raise VanishcalcError("bn_affine: give either rate (to solve for gamma) or gamma, not both")
    if rate is not None:
        r = real("bn_affine", "rate", rate, positive=True,
                 why="(the per-layer growth of the squared gradient, e.g. 1.05)")
        if optimize == "beta":
            raise VanishcalcError("bn_affine: optimize='beta' works at a fixed gamma; pass gamma, "
                                  "not rate")
        return r
    return None


def bn_affine(spec, rate=None, gamma=None, beta=0.0, optimize=None) -> BNAffine:
    """The BatchNorm affine (γ, β) for φ: solve γ for a target rate, or β minimizing it.

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ.
    rate : float, optional
        Target per-layer squared-gradient growth λ (e.g. 1.05).  γ is the smallest γ in
        [0.01, 100] with λ(γ, β) = rate (small γ is the linear regime, λ → 1 when
        φ'(β) ≠ 0; the first crossing is the most nonlinear unit whose rate stays below the
        target when λ increases with γ).
    gamma : float, optional
        Fixed γ (default 1 when neither rate nor gamma is given).
    beta : float
        β (fixed unless ``optimize="beta"``).
    optimize : None or "beta"
        "beta": at fixed γ, β ∈ [−6, 6] minimizing λ.

    Returns
    -------
    BNAffine

    Raises
    ------
    VanishcalcError (ValueError)
        both rate and gamma, bad numbers, or a rate no γ reaches (the message names the range).

    Notes
    -----
    notes/normalization.md, including exp(−x²): at β = 0, λ → 2 as γ → 0 (an even φ has
    φ'(0) = 0, so its small-γ unit is quadratic, not linear); a shifted β repairs it.

    Examples
    --------
    >>> a = bn_affine("tanh", rate=1.05)
    >>> round(a.gamma, 4), round(float(a.rate), 6)
    (0.5794, 1.05)
    """
    r = _bn_affine_iv(rate, gamma, optimize)
    g0 = 1.0 if gamma is None else gamma
    act, g, b = _affine_iv("bn_affine", spec, g0, beta)
    if r is not None:
        g = _solve_gamma(act, r, b)
    elif optimize == "beta":
        b = _minimize_beta(act, g)
    exact_ok = r is None and optimize is None
    rate_v = _rate_certified(act, g, b, "bn", exact=exact_ok)
    m = _moments_fast(act, g, b)
    nonlin = max(0.0, 1.0 - m.cov_z ** 2 / m.var) if m.var > 0 else 0.0
    return BNAffine(gamma=float(g), beta=float(b), rate=rate_v,
                    saturated_fraction=saturated_fraction(act, g, b), nonlinearity=nonlin,
                    spec=act.name)
