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

import contextlib
import contextvars
import functools
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import sympy
from scipy.optimize import brentq, minimize_scalar
from scipy.special import ndtr

from ..activation import Activation, activation
from ..errors import NotConvergedError, VanishcalcError, VanishcalcWarning
from ..gaussian.bivariate import _abrelu
from ..gaussian.expect import expect
from ..gaussian.numeric import adaptive_gk, std_normal_pdf
from ..maps.norm import _affine_iv as _gamma_beta_iv
from ..maps.norm import batch_iv
from ..parse import X
from ..validate import integer, real
from ..value import Value
from ..budget import memory_limit, require_memory

GAMMA_RANGE = (1e-2, 1e2)      # γ scanned by the solver (log grid), then refined by Brent
BETA_RANGE = (-6.0, 6.0)       # β scanned by optimize="beta"
SATURATION = 1e-3              # |φ'| < SATURATION·max|φ'| counts as saturated (as sim/)
_SIMPLIFY_MAX_OPS = 24         # closed-form rates larger than this are kept as built (see _rate_expect)
Z_MAX = 38.0                   # e^{-38²/2} underflows: nothing beyond matters for sub-Gaussian-tail φ


# ---------------------------------------------------------------- option names in messages

_CLI_NAMES = contextvars.ContextVar("bn_affine_cli_names", default=False)


@contextlib.contextmanager
def cli_option_names():
    """Within this block, messages name options as the CLI spells them (``--gamma``,
    ``--optimize beta``) instead of Python keywords (``gamma=``, ``optimize='beta'``)."""
    token = _CLI_NAMES.set(True)
    try:
        yield
    finally:
        _CLI_NAMES.reset(token)


def _opt(name, value=None):
    """An option as the user spells it here: ``--min-nonlinearity 0.1`` or
    ``min_nonlinearity=0.1`` (without value: ``--gamma`` or ``gamma``)."""
    if _CLI_NAMES.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is None else f"{flag} {value}"
    return name if value is None else f"{name}={value!r}"


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


@functools.lru_cache(maxsize=4096)
def _moments_fast(act: Activation, g: float, b: float) -> _Moments:
    """The four moments by adaptive Gauss–Kronrod in z, split at the kinks (k − β)/γ.

    The variance is computed from ψ0 = φ(γz+β) − φ(β) (both of its moments are O(γ²) for
    small γ), so it does not cancel catastrophically in the linear regime γ → 0."""
    f, df = act.numpy, act.derivative(1).numpy
    phi_b = float(f(np.array([b]))[0])
    # φ's own features sit at the unit scale in x = γz + β: at γ = 1e4 tanh switches within
    # |z| < 1e-4, inside one z-panel whose Gauss and Kronrod nodes both miss it (the rate came
    # out 0 ± 0).  Panel edges at x = 0, ±2^k (k = −3..6) mapped to z put nodes there.
    unit = [0.0] + [sgn * 2.0 ** k for k in range(-3, 7) for sgn in (1, -1)]
    breaks = sorted({(k - b) / g for k in act.kinks} | {(x - b) / g for x in unit})
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
    """The rate through ``expect`` (exact when closed forms exist), checked against the
    unit-scale-panel quadrature of :func:`_moments_fast` as an independent second rule.  On a
    disagreement beyond both error estimates, 30-digit mpmath decides (:func:`_rate_mpmath`)."""
    m = _moments_fast(act, gamma, beta)
    fast = _rate_from(m, norm)
    den = m.var if norm == "bn" else m.m2
    fast_err = fast * m.error / min(den, m.d2) + 4e-16 * fast
    try:
        v = _rate_expect(act, gamma, beta, norm, exact)
    except NotConvergedError:
        # φ(γz+β) − φ(β) at tiny γ: expect's relative target is below the rounding noise of
        # the difference; the fast path keeps the noise as its error estimate.
        return Value(fast, error=fast_err, error_kind="estimate",
                     method=f"{norm}-rate:quadrature-noisy-difference")
    if abs(float(v) - fast) <= v.error + fast_err:
        return v
    ref = _rate_mpmath(act, gamma, beta, norm)
    for cand, err, method in ((fast, fast_err, f"{norm}-rate:quadrature-unit-scale-panels"),
                              (float(v), v.error, v.method)):
        if abs(cand - ref) <= max(err, 1e-12 * abs(ref)):
            return Value(cand, error=max(err, abs(cand - ref)), error_kind="estimate",
                         method=method + " (refereed by mpmath)")
    return Value(ref, error=1e-12 * abs(ref), error_kind="estimate",
                 method=f"{norm}-rate:mpmath-30-digits")


def _rate_mpmath(act: Activation, gamma: float, beta: float, norm: str) -> float:
    """The rate from 30-digit mpmath quadrature in x = γz + β ~ N(β, γ²), split at φ's kinks,
    at x = 0, ±2^k (k = −3..6) and at β ± γ·{1, 2, 4, 8, 16} — the referee when the two
    double-precision rules disagree."""
    import mpmath
    f = sympy.lambdify(X, act.expr, "mpmath")
    df = sympy.lambdify(X, act.derivative(1).expr, "mpmath")
    with mpmath.workdps(30):
        g, b = mpmath.mpf(gamma), mpmath.mpf(beta)
        pts = {mpmath.mpf(k) for k in act.kinks} | {mpmath.mpf(0)}
        pts |= {s * mpmath.mpf(2) ** k for k in range(-3, 7) for s in (1, -1)}
        pts |= {b + s * g * t for t in (0, 1, 2, 4, 8, 16) for s in (1, -1)}
        edges = [mpmath.ninf, *sorted(pts), mpmath.inf]

        def mean(h):
            return mpmath.quad(lambda x: h(x) * mpmath.npdf(x, b, g), edges)
        fb = f(b)
        d2 = g * g * mean(lambda x: df(x) ** 2)
        m1 = mean(lambda x: f(x) - fb)
        s2 = mean(lambda x: (f(x) - fb) ** 2)
        den = s2 - m1 * m1 if norm == "bn" else s2 + 2 * fb * m1 + fb * fb
        if not den > 0:
            raise VanishcalcError(f"φ(γz + β) is constant at γ = {gamma:g}, β = {beta:g}: the "
                                  f"{norm.upper()} standardization of the next layer divides by zero")
        return float(d2 / den)


def _rate_expect(act: Activation, gamma: float, beta: float, norm: str, exact: bool) -> Value:
    """The infinite-batch (or infinite-width, LN) rate through ``expect``: exact when every
    expectation has a closed form, else certified quadrature with a propagated error."""
    g, b = _exact_number(gamma), _exact_number(beta)
    where = f"{act.name} at γz + β, γ = {gamma:.17g}, β = {beta:.17g}"
    psi = act.affine(g, b, name=f"ψ = {where}")
    dpsi = act.derivative(1).affine(g, b, factor=g, name=f"ψ' of {where}")   # γ·φ'(γz + β)
    d2 = expect(dpsi.power(2, f"(ψ')² of {where}"), exact=exact)
    phi_b = act.expr.subs(X, b)
    psi0 = act.affine(g, b, offset=-phi_b, name=f"ψ − φ(β) of {where}") if phi_b != 0 else psi
    m1 = expect(psi0, exact=exact)
    s2 = expect(psi0.power(2, f"(ψ − φ(β))² of {where}"), exact=exact)
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
        raise VanishcalcError(f"φ(γz + β) of {where} is constant: the {norm.upper()} "
                              "standardization of the next layer divides by zero")
    method = f"{norm}-rate:infinite-{'batch' if norm == 'bn' else 'width'}"
    if d2.exact is not None and den_exact is not None:
        expr = d2.exact / den_exact
        # simplify shortens the small ratios (1/tanh(1), 3√5/5 + 9/5) but costs 0.1–0.5 s on
        # the erf/exp ratios of elu, selu, relu6, and does not shorten those (selu: 56 → 58 ops);
        # deferred until .exact is read (init_table only wants the float).
        return Value.from_exact(expr, method=method + ":exact",
                                simplify=sympy.count_ops(expr) <= _SIMPLIFY_MAX_OPS)
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
    width = integer("bn_gradient_rate", "width", width, 2)
    depth = integer("bn_gradient_rate", "depth", depth, 2)
    n_nets = integer("bn_gradient_rate", "n_nets", n_nets, 1)
    _check_simulation_size(B, width, depth, n_nets)
    from ..sim.composed import measure_rate
    rate, se = measure_rate(act, gamma=g, beta=b, batch=B, width=width, depth=depth,
                            n_nets=n_nets, seed=seed, norm="bn")
    return Value(rate, error=se, error_kind="estimate",
                 method=f"bn-rate:simulation(width={width}, batch={B}, nets={n_nets})")


#: Sustained multiply-adds per second per core assumed by the time estimate (a dense layer
#: of the CPU simulator runs at about this; the estimate only decides whether to warn).
FLOPS_PER_CORE = 1e9
#: A simulated rate projected to take longer than this (seconds) warns first.
SIMULATION_WARN_S = 60.0


def _check_simulation_size(batch, width, depth, n_nets):
    """Refuse a simulation that cannot fit in memory; warn when it will run long.

    Memory: per net q, c, log F (float64) and a flag per layer, 25·n_nets·(depth+1) bytes,
    plus per running net (one per core) the width × batch activations and their gradients
    and a width × width weight matrix.  Time: per layer and net ≈ 2·width²·batch
    multiply-adds (forward and backward through W) and width² normal draws."""
    threads = max(1, min(n_nets, os.cpu_count() or 1))
    need = 25.0 * n_nets * (depth + 1) + threads * 8.0 * (2 * width * batch + width * width)
    limit = memory_limit()
    traces = 25.0 * n_nets * (depth + 1)
    # the largest batch (at this depth) and depth (at this batch) that fit on their own
    fit_batch = int(((0.9 * limit - traces) / threads - 8.0 * width * width) / (16.0 * width))
    fit_depth = int((0.9 * limit - (need - traces)) / (25.0 * n_nets)) - 1
    fits = [f"{_opt('batch')} to at most {fit_batch}" if fit_batch >= 4 else None,
            f"{_opt('depth')} to at most {fit_depth} (24 layers suffice for a per-layer rate)"
            if fit_depth >= 2 else None]
    fits = [f for f in fits if f]
    require_memory(
        "bn_gradient_rate", need,
        f"omit {_opt('batch')} for the infinite-batch rate (the finite-batch correction is "
        f"O(1/B))" + (", or lower " + " or ".join(fits) if fits else ""))
    seconds = depth * n_nets * (2.0 * width * width * batch + 20.0 * width * width) / (
        threads * FLOPS_PER_CORE)
    if seconds > SIMULATION_WARN_S:
        warnings.warn(f"bn_gradient_rate: the finite-batch rate is simulated ({n_nets} nets × "
                      f"{depth} layers at width {width}, batch {batch}); expect roughly "
                      f"{seconds:.0f} s", VanishcalcWarning, stacklevel=3)


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
    """The |φ'| scale a unit is saturated against: max|φ'| when φ' is bounded; when φ' grows
    without bound (x², exp) its max over |x| ≤ 3, the bulk of a unit Gaussian — "small
    relative to an infinite slope" would call every unit saturated (x² reported 1).  The
    same reference as the simulators' saturation counts (vanishcalc.sim.compile)."""
    from ..sim.compile import saturation_reference
    return saturation_reference(act)


def saturated_fraction(act: Activation, gamma: float, beta: float) -> float:
    """P(|φ'(γz + β)| < 1e-3·S), z ~ N(0, 1): the units that pass no gradient, with S =
    max|φ'| (bounded φ') or max over |x| ≤ 3 of |φ'| (φ' unbounded, see ``_dphi_max``).

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
    ``note``: how an optimized β was decided (interior minimum, or held at the nonlinearity
    floor because the rate keeps falling as the unit turns linear); empty otherwise.
    ``act``: φ (``saturated_fraction`` is computed from it when first read).
    """

    gamma: float
    beta: float
    rate: Value
    nonlinearity: float
    spec: str = ""
    note: str = ""
    act: Activation | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def saturated_fraction(self) -> float:
        # On first read: max|φ'| over a 48k-point grid, a quarter of init_table's BN column,
        # which never reads it.
        return saturated_fraction(self.act, self.gamma, self.beta)

    def __repr__(self):
        extra = f", {self.note.split(':')[0]}" if self.note else ""     # the gist; .note has all
        return (f"BNAffine({self.spec!r}: gamma={self.gamma:.6g}, beta={self.beta:.6g}, "
                f"rate={float(self.rate):.6g} ± {self.rate.error:.1e}, "
                f"saturated={self.saturated_fraction:.3g}, nonlinearity={self.nonlinearity:.3g}"
                f"{extra})")


def _rate(act, g, b):
    return _rate_from(_moments_fast(act, g, b), "bn")


def _solve_gamma(act: Activation, target: float, beta: float) -> float:
    """The smallest γ on GAMMA_RANGE with λ(γ, β) = target (log-grid bracket, then Brent)."""
    gs = np.logspace(math.log10(GAMMA_RANGE[0]), math.log10(GAMMA_RANGE[1]), 61)
    ab = _abrelu(act)
    if beta == 0 and ab is not None and any(v != 0 for v in ab):
        # a·x / b·x on either side of 0 (relu, leaky relu, linear): known before the scan
        raise _gamma_free_error(act, beta, target)

    def rate_at(gv):
        try:
            return _rate(act, float(gv), beta)
        except (VanishcalcError, ArithmeticError):
            return math.nan
    # Walk the grid upwards and stop at the first crossing (the smallest γ is wanted): the
    # zoo's crossings sit near γ ~ 0.2-1.6, a third of the way up, so most of the grid is
    # never evaluated.  The whole grid is needed only to describe a miss.
    rs = [rate_at(gs[0])]
    for i in range(len(gs) - 1):
        rs.append(rate_at(gs[i + 1]))
        ri, rn = rs[i] - target, rs[i + 1] - target
        if np.isfinite(ri) and ri == 0:
            return float(gs[i])
        if np.isfinite(ri) and np.isfinite(rn) and (ri > 0) != (rn > 0):
            return brentq(lambda gv: _rate(act, gv, beta) - target, gs[i], gs[i + 1],
                          xtol=1e-14, rtol=1e-12)
    rs = np.asarray(rs)
    fin = rs[np.isfinite(rs)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (math.nan, math.nan)
    if fin.size and hi - lo <= 1e-9 * abs(hi):
        raise _gamma_free_error(act, beta, target)
    raise VanishcalcError(
        f"bn_affine: rate = {target:g} is unreachable for φ = {act.name} at "
        f"{_opt('beta', beta)}: over {_opt('gamma')} in [{GAMMA_RANGE[0]:g}, "
        f"{GAMMA_RANGE[1]:g}] the rate spans [{lo:.6g}, {hi:.6g}]; pick a rate in that range, "
        f"or another {_opt('beta')} ({_opt('optimize', 'beta')} finds the β with the smallest "
        "rate)")


def _gamma_free_error(act, beta, target):
    # relu, leaky relu at β = 0: φ(γz) = γφ(z), and the rate is a ratio of squares, so γ
    # cancels: no γ changes it
    return VanishcalcError(
        f"bn_affine: the BN rate of φ = {act.name} at {_opt('beta', beta)} does not depend "
        f"on {_opt('gamma')}: it is {_rate_text(act, beta)} for every γ (φ is positively "
        f"homogeneous, so γ "
        f"only rescales the unit), so rate {target:g} cannot be set by {_opt('gamma')}; a "
        f"shift changes it: pass {_opt('beta')} (relu's rate falls towards 1 as β grows and "
        "the unit turns linear)")


#: Default floor on the nonlinearity share for optimize="beta": without one the smallest
#: rate is a linear unit (relu at β = 6: rate 1.000, nonlinearity 5e-11), which trains like
#: a linear network.  tanh at γ = 1, β = 0 has 0.07.
MIN_NONLINEARITY = 0.05


def _nonlinearity(act, g, b):
    m = _moments_fast(act, g, b)
    return max(0.0, 1.0 - m.cov_z ** 2 / m.var) if m.var > 0 else 0.0


def _rate_text(act, beta):
    """The rate at (γ = 1, β) as text, with its closed form when one exists."""
    ab = _abrelu(act)
    if beta == 0 and ab is not None:
        # φ = a·x (x < 0), b·x (x > 0): E[φ'²] = E[φ²] = (a² + b²)/2, E[φ] = (b − a)/√(2π),
        # so λ = π(a² + b²)/(π(a² + b²) − (b − a)²) (relu: π/(π − 1); notes/normalization.md).
        # Written out: the general path's sympy.simplify of the same ratio took 15–80 ms
        # for a message init_table prints for relu, leaky relu and linear.
        a, b = ab
        s = sympy.pi * (a ** 2 + b ** 2)
        rate = sympy.cancel(s / (s - (b - a) ** 2))
        return f"{sympy.sstr(rate)} ≈ {float(rate):.6g}"
    v = _rate_certified(act, 1.0, beta, "bn", exact=True)
    return f"{sympy.sstr(v.exact)} ≈ {float(v):.6g}" if v.exact is not None else f"{float(v):.6g}"


def _minimize_beta(act: Activation, gamma: float, min_nl: float = MIN_NONLINEARITY):
    """(β, note): β on BETA_RANGE minimizing λ(γ, β) among the β whose unit keeps a
    nonlinearity share ≥ ``min_nl``.  Grid scan, then bounded Brent around an interior
    minimum, or the root of nonlinearity = min_nl when the floor is what stops the descent."""
    bs = np.linspace(BETA_RANGE[0], BETA_RANGE[1], 121)
    rs = np.array([_safe_rate(act, gamma, float(bv)) for bv in bs])
    nl = np.array([_nonlinearity(act, gamma, float(bv)) if np.isfinite(r) else 0.0
                   for bv, r in zip(bs, rs)])
    if not np.any(np.isfinite(rs)):
        raise NotConvergedError(f"bn_affine: no finite rate for φ = {act.name} at gamma = {gamma:g}")
    ok = np.isfinite(rs) & (nl >= min_nl)
    if not np.any(ok):
        j = int(np.argmax(nl))
        raise VanishcalcError(
            f"bn_affine: at {_opt('gamma', gamma)} no β in [{BETA_RANGE[0]:g}, {BETA_RANGE[1]:g}] "
            f"keeps the nonlinearity share ≥ {_opt('min_nonlinearity', min_nl)} (largest "
            f"{nl[j]:.3g} at β = {bs[j]:.3g}); lower {_opt('min_nonlinearity')} or raise "
            f"{_opt('gamma')}")
    i = int(np.argmin(np.where(ok, rs, np.inf)))
    lo_ok = i > 0 and ok[i - 1]
    hi_ok = i < len(bs) - 1 and ok[i + 1]
    if lo_ok and hi_ok:
        res = minimize_scalar(lambda bv: _safe_rate(act, gamma, bv), bounds=(bs[i - 1], bs[i + 1]),
                              method="bounded", options={"xatol": 1e-10})
        b = float(res.x) if res.fun <= rs[i] else float(bs[i])
        return b, f"interior minimum of the rate over β in [{BETA_RANGE[0]:g}, {BETA_RANGE[1]:g}]"
    # the best admissible β borders an inadmissible one (the floor) or the end of the range
    for j in (i - 1, i + 1):
        if 0 <= j < len(bs) and not ok[j] and np.isfinite(rs[j]):
            b = brentq(lambda bv: _nonlinearity(act, gamma, bv) - min_nl, bs[i], bs[j],
                       xtol=1e-12)
            return float(b), (
                f"no interior optimum: the rate keeps falling as the unit turns linear "
                f"(nonlinearity share → 0), so β sits where the share reaches the floor "
                f"{_opt('min_nonlinearity', min_nl)}; a lower floor gives a smaller rate and a "
                "more linear unit")
    msg = (f"no interior optimum: the rate still falls at the end of the searched range "
           f"β ∈ [{BETA_RANGE[0]:g}, {BETA_RANGE[1]:g}] with nonlinearity share {nl[i]:.3g} there")
    warnings.warn(f"bn_affine: {msg}", VanishcalcWarning, stacklevel=3)
    return float(bs[i]), msg


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
        raise VanishcalcError(f"bn_affine: give either {_opt('rate')} (to solve for γ) or "
                              f"{_opt('gamma')}, not both")
    if rate is not None:
        r = real("bn_affine", "rate", rate, positive=True,
                 why="(the per-layer growth of the squared gradient, e.g. 1.05)")
        if optimize == "beta":
            raise VanishcalcError(f"bn_affine: {_opt('optimize', 'beta')} works at a fixed "
                                  f"{_opt('gamma')}; pass {_opt('gamma')}, not {_opt('rate')}")
        return r
    return None


def bn_affine(spec, rate=None, gamma=None, beta=0.0, optimize=None, *,
              min_nonlinearity=MIN_NONLINEARITY) -> BNAffine:
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
        "beta": at fixed γ, β ∈ [−6, 6] minimizing λ among the β whose unit keeps a
        nonlinearity share ≥ ``min_nonlinearity``.  Without that floor the minimum is a
        linear unit (λ → 1: relu at β → ∞, every unit active).  ``note`` on the result says
        whether the minimum is interior or held by the floor.
    min_nonlinearity : float
        The floor for optimize="beta" (default 0.05; tanh at γ = 1, β = 0 has 0.07).

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
    nl_floor = real("bn_affine", "min_nonlinearity", min_nonlinearity, lo=0.0, hi=1.0)
    g0 = 1.0 if gamma is None else gamma
    act, g, b = _affine_iv("bn_affine", spec, g0, beta)
    note = ""
    if r is not None:
        g = _solve_gamma(act, r, b)
    elif optimize == "beta":
        b, note = _minimize_beta(act, g, nl_floor)
    exact_ok = r is None and optimize is None
    rate_v = _rate_certified(act, g, b, "bn", exact=exact_ok)
    m = _moments_fast(act, g, b)
    nonlin = max(0.0, 1.0 - m.cov_z ** 2 / m.var) if m.var > 0 else 0.0
    return BNAffine(gamma=float(g), beta=float(b), rate=rate_v, nonlinearity=nonlin,
                    spec=act.name, note=note, act=act)
