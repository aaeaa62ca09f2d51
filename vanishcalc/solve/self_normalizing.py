"""Self-normalizing constants for any family φ_θ: the θ that make (mean 0, variance 1) a fixed
point of the mean/variance map of a wide layer (Klambauer et al. 2017), and its stability.

Klambauer et al. (arXiv:1706.02515, §"Constructing Self-Normalizing Neural Networks") feed
a unit z = Σ_i w_i x_i with inputs of mean μ and variance ν, weights with ω = Σ w_i and
τ = Σ w_i², so z ~ N(μω, ντ) for a wide layer, and map (μ, ν) to the mean and variance of
φ(z).  At normalized weights (ω = 0, τ = 1) and (μ, ν) = (0, 1), z ~ N(0, 1), so the fixed
point conditions are

.. math::

    \\mathbb{E}[\\varphi_\\theta(z)] = 0, \\qquad \\mathbb{E}[\\varphi_\\theta(z)^2] = 1,

two equations: two free parameters (SELU: α, λ), or one when φ_θ is odd (the mean vanishes
for every θ).  The Jacobian of (μ, ν) ↦ (μ̃, ν̃) there (Klambauer et al., the section on the
stable and attracting fixed point (0, 1) for normalized weights: ω = 0, τ = 1) has a zero
first column (μ̃, ν̃ do not depend on μ when ω = 0) and

.. math::

    \\frac{\\partial\\tilde\\mu}{\\partial\\nu} = \\tfrac12\\,\\mathbb{E}[(z^2 - 1)\\varphi(z)],
    \\qquad
    \\frac{\\partial\\tilde\\nu}{\\partial\\nu} = \\tfrac12\\,\\mathbb{E}[(z^2 - 1)\\varphi(z)^2]

(differentiating the Gaussian density in its variance: no φ'' and so no Dirac masses at
kinks), so its eigenvalues are 0 and ∂ν̃/∂ν.  SELU: ∂μ̃/∂ν = 0.0888348, ∂ν̃/∂ν = 0.7826479,
spectral norm 0.7877 < 1 (the paper's value).

Expectations are mpmath tanh–sinh quadratures at ``DPS`` digits, split at the kinks of
φ_θ (zeros of its Max/Min/Abs/sign/Heaviside/Piecewise conditions, located numerically, so
``Min(a*(exp(x) - 1), 0)`` works); Newton's method on θ with a finite-difference Jacobian at
that precision.  Derivation: notes/self-normalizing.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy

from ..activation import _boundaries
from ..errors import (ComplexValuedError, DivergenceError, NotConvergedError, ParseError,
                      SingularityError, VanishcalcError)
from ..parse import X, param_symbol, parse
from ..validate import real
from ..value import Value

__all__ = ["self_normalizing", "SelfNormalizing"]

DPS = 30                 # working digits of the quadratures and of Newton's method
RESIDUAL_TOL = 1e-24     # |E[φ]|, |E[φ²] − 1| at which Newton stops
QUAD_TOL = 1e-20         # a quadrature error estimate above this is reported, not used
MAX_ITER = 60
TIME_BUDGET_S = 30.0
STALL_ITER = 6           # Newton stops when the residual has not halved over this many steps
X_SCAN = 40.0            # kinks are searched on |x| ≤ X_SCAN (beyond, the weight is < e^-800)
X_TAIL = 60.0            # φ(x)²·pdf(x) must be negligible here, or E[φ²] is not trusted
_SCAN = np.sinh(np.linspace(-math.asinh(X_SCAN), math.asinh(X_SCAN), 8001))


@dataclass(frozen=True)
class SelfNormalizing:
    """Parameter values making (μ, ν) = (0, 1) a fixed point, and the map's Jacobian there.

    ``params``: name → :class:`Value` (double, with an error estimate); ``digits``: name →
    the value to ``DPS`` − 5 significant digits (string).  ``mean`` and ``second_moment``:
    E[φ(z)] and E[φ(z)²] at the solution (0 and 1 within their errors).  ``jacobian``:
    ((∂μ̃/∂μ, ∂μ̃/∂ν), (∂ν̃/∂μ, ∂ν̃/∂ν)) at ω = 0, τ = 1; ``eigenvalues`` its eigenvalues
    (0 and ∂ν̃/∂ν); ``spectral_norm`` its largest singular value (Klambauer et al.'s
    contraction test); ``stable``: every eigenvalue below 1 in magnitude, so the fixed point
    attracts.  ``expr``: φ with the solved values substituted (30-digit floats)."""

    expr: sympy.Expr
    params: dict
    digits: dict
    mean: Value
    second_moment: Value
    jacobian: tuple
    eigenvalues: tuple
    spectral_norm: Value
    stable: bool
    iterations: int

    def __repr__(self):
        vals = ", ".join(f"{k} = {self.digits[k]}" for k in self.params)
        eig = ", ".join(f"{float(e):.6g}" for e in self.eigenvalues)
        return (f"SelfNormalizing({vals}; Jacobian eigenvalues {eig}, spectral norm "
                f"{float(self.spectral_norm):.6g}, {'stable' if self.stable else 'unstable'})")


def _self_normalizing_iv(expr, params, guess):
    if isinstance(params, str):
        params = (params,)
    if not isinstance(expr, str):
        raise ParseError(f"self_normalizing: expr must be an expression string such as "
                         f"'l*(Max(x, 0) + Min(a*(exp(x) - 1), 0))', got {type(expr).__name__}")
    phi = parse(expr, params=params)
    names = tuple(params)
    if not 1 <= len(names) <= 2:
        raise VanishcalcError(
            f"self_normalizing: {len(names)} free parameter(s) {names}; the two conditions "
            "E[φ(z)] = 0 and E[φ(z)²] = 1 fix two parameters (or one for an odd φ): substitute "
            "numbers for the others")
    syms = tuple(param_symbol(n) for n in names)
    absent = [n for n, s in zip(names, syms) if not phi.has(s)]
    if absent:
        raise VanishcalcError(f"self_normalizing: parameter(s) {absent} do not appear in {expr!r}; "
                              "name only the parameters the expression uses")
    if not phi.has(X):
        raise VanishcalcError(f"self_normalizing: {expr!r} does not depend on x")
    if guess is None:
        guess = {}
    if not isinstance(guess, dict):
        raise VanishcalcError("self_normalizing: guess must be a dict such as {'a': 1.5, 'l': 1.0}")
    unknown = sorted(set(guess) - set(names))
    if unknown:
        raise VanishcalcError(f"self_normalizing: guess names {unknown} are not among params {names}")
    start = [real("self_normalizing", f"guess[{n!r}]", guess.get(n, 1.0)) for n in names]
    return phi, names, syms, start


def self_normalizing(expr, params=("a", "l"), *, guess=None) -> SelfNormalizing:
    r"""Solve E[φ_θ(z)] = 0, E[φ_θ(z)²] = 1 for the free parameters θ of φ_θ, z ~ N(0, 1).

    .. math::
        g(\mu, \nu) = \big(\mathbb{E}[\varphi(z)],\ \mathrm{Var}[\varphi(z)]\big),\quad
        z \sim N(\mu\omega, \nu\tau), \qquad g(0, 1) = (0, 1) \text{ at } \omega = 0,\ \tau = 1

    Parameters
    ----------
    expr : str
        φ as an expression in ``x`` and the names in ``params`` (the only place the parser
        accepts names other than its fixed grammar).
    params : sequence of str
        The free parameters: two, or one when φ is odd in x (mean 0 for every value).
    guess : dict, optional
        Starting values (default 1 for each parameter); the root Newton's method reaches
        from there is returned.

    Returns
    -------
    SelfNormalizing
        The values (doubles with error estimates, and 25 digits), the residual moments,
        the Jacobian of the mean/variance map at (0, 1), its eigenvalues and spectral norm.

    Raises
    ------
    ParseError
        a name in ``expr`` not declared in ``params``, a bad parameter name.
    VanishcalcError
        a parameter that does not appear, more than two parameters, no solution (one
        parameter and E[φ] ≠ 0 at the variance solution), a singular system.
    ComplexValuedError, SingularityError, DivergenceError
        φ_θ complex, infinite, or too fast-growing for E[φ²] at the starting point.
    NotConvergedError
        Newton's method found no root within its iteration and time budget.

    Notes
    -----
    Derivation and the Jacobian: notes/self-normalizing.md.

    References
    ----------
    Klambauer, Unterthiner, Mayr & Hochreiter 2017, arXiv:1706.02515: eq. 2 (SELU), the
    mean/variance map g, Theorem 1 (α01 ≈ 1.6733, λ01 ≈ 1.0507, spectral norm 0.7877).

    Examples
    --------
    >>> s = self_normalizing("l*(Max(x, 0) + Min(a*(exp(x) - 1), 0))", params=("a", "l"))
    >>> s.digits["a"][:20], s.digits["l"][:20]
    ('1.673263242354377284', '1.050700987355480493')
    >>> round(float(s.spectral_norm), 4), s.stable
    (0.7877, True)
    """
    phi, names, syms, start = _self_normalizing_iv(expr, params, guess)
    family = _Family(phi, syms, expr)
    with mpmath.workdps(DPS):
        p, iterations = _newton(family, [mpmath.mpf(v) for v in start], names)
        return _result(family, names, p, iterations)


# ---------------------------------------------------------------- φ_θ in mpmath


class _Family:
    """φ_θ(x) as mpmath and numpy callables of (x, θ), and its kinks at a given θ."""

    def __init__(self, phi, syms, text):
        self.phi, self.syms, self.text = phi, syms, text
        args = (X, *syms)
        mp_names = {"Heaviside": lambda u, h0=0.5: mpmath.mpf(1) if u > 0 else
                    (mpmath.mpf(0) if u < 0 else mpmath.mpf(h0))}
        self.mp = sympy.lambdify(args, phi, modules=[mp_names, "mpmath"])
        self.bounds_np, self.bounds_mp = [], []
        for b in {sympy.expand(b) for b in _boundaries(phi)}:
            if not b.has(X):
                continue
            self.bounds_np.append(sympy.lambdify(args, b, modules="numpy"))
            self.bounds_mp.append(sympy.lambdify(args, b, modules=[mp_names, "mpmath"]))

    def at(self, x, p):
        v = self.mp(x, *p)
        if isinstance(v, mpmath.mpc):
            if v.imag != 0:
                raise ComplexValuedError(f"φ = {self.text} is complex at x = {mpmath.nstr(x, 6)} "
                                         f"for {self._where(p)}; φ must be real on the whole real line")
            v = v.real
        return mpmath.mpf(v)

    def _where(self, p):
        return ", ".join(f"{s} = {mpmath.nstr(v, 8)}" for s, v in zip(self.syms, p))

    def kinks(self, p):
        """Sorted zeros of the branch conditions in |x| ≤ X_SCAN at θ = p (sign changes on a
        grid, refined by bisection to the working precision)."""
        pf = [float(v) for v in p]
        out = []
        for bnp, bmp in zip(self.bounds_np, self.bounds_mp):
            with np.errstate(all="ignore"):
                vals = np.asarray(bnp(_SCAN, *pf), dtype=float) * np.ones_like(_SCAN)
            sgn = np.sign(vals)
            for i in np.nonzero(sgn[:-1] * sgn[1:] < 0)[0]:
                out.append(_bisect(lambda t: bmp(t, *p), mpmath.mpf(_SCAN[i]), mpmath.mpf(_SCAN[i + 1])))
            zeros = np.nonzero(sgn == 0)[0]
            if len(zeros) < 16:      # more: the condition vanishes on a stretch (Max(a·x, 0)
                for i in zeros:      # at a = 0), where both branches agree: no kink
                    out.append(mpmath.mpf(_SCAN[i]))
        out.sort()
        unique = []
        for k in out:
            if not unique or k - unique[-1] > mpmath.mpf(10) ** (-DPS + 5):
                unique.append(k)
        return unique

    def moments(self, p, weights):
        """E[w(z)·φ(z)^k] for each (w, k) in ``weights`` (w a function of z or None), with
        the quadratures' error estimates: ([values], [errors])."""
        pts = [-mpmath.inf, *self.kinks(p), mpmath.inf]
        self._check_tail(p)
        vals, errs = [], []
        norm = 1 / mpmath.sqrt(2 * mpmath.pi)
        for w, k in weights:
            def g(z, w=w, k=k):
                v = self.at(z, p) ** k * mpmath.exp(-z * z / 2) * norm
                return v if w is None else w(z) * v
            v, e = mpmath.quad(g, pts, error=True)
            if not (mpmath.isfinite(v) and mpmath.isfinite(e)):
                raise SingularityError(f"E[φ(z)^{k}] is not finite for φ = {self.text} at "
                                       f"{self._where(p)}: φ is infinite or undefined somewhere")
            vals.append(v)
            errs.append(e)
        return vals, errs

    def _check_tail(self, p):
        for x in (-X_TAIL, X_TAIL):
            t = mpmath.mpf(x)
            try:
                g = self.at(t, p) ** 2 * mpmath.exp(-t * t / 2)
            except VanishcalcError:
                raise
            except (ZeroDivisionError, OverflowError, ValueError) as exc:
                raise SingularityError(f"φ = {self.text} cannot be evaluated at x = {x:g} for "
                                       f"{self._where(p)}: {exc}") from None
            if not g < mpmath.mpf(10) ** -60:
                raise DivergenceError(
                    f"E[φ(z)²] for φ = {self.text} at {self._where(p)}: φ(x)²·e^(−x²/2) is "
                    f"{mpmath.nstr(g, 3)} at x = {x:g}, so φ grows too fast for a trusted (or "
                    "finite) Gaussian second moment; start from other values (guess=)")


def _bisect(f, lo, hi):
    flo = f(lo)
    for _ in range(4 * DPS):
        mid = (lo + hi) / 2
        fm = f(mid)
        if fm == 0:
            return mid
        if (fm > 0) == (flo > 0):
            lo, flo = mid, fm
        else:
            hi = mid
        if hi - lo <= mpmath.mpf(10) ** (-DPS) * max(1, abs(lo)):
            break
    return (lo + hi) / 2


# ---------------------------------------------------------------- Newton's method


def _conditions(family, p, n):
    """The residuals (E[φ] and E[φ²] − 1, or only the latter for one parameter), their
    quadrature errors, and E[φ]."""
    (m1, m2), (e1, e2) = family.moments(p, [(None, 1), (None, 2)])
    if n == 2:
        return [m1, m2 - 1], [e1, e2], m1
    return [m2 - 1], [e2], m1


def _jacobian(family, p, n):
    J = mpmath.matrix(n, n)
    for j in range(n):
        h = mpmath.mpf(10) ** (-DPS // 3) * max(1, abs(p[j]))
        up, dn = list(p), list(p)
        up[j] += h
        dn[j] -= h
        fu = _conditions(family, up, n)[0]
        fd = _conditions(family, dn, n)[0]
        for i in range(n):
            J[i, j] = (fu[i] - fd[i]) / (2 * h)
    return J


def _norm(v):
    return max(abs(x) for x in v)


def _newton(family, p, names):
    n = len(p)
    t0 = time.monotonic()
    F, _, _ = _conditions(family, p, n)       # errors at the start point propagate as they are
    best = (p, F)
    history = [_norm(F)]
    for it in range(1, MAX_ITER + 1):
        if _norm(F) <= RESIDUAL_TOL:
            return p, it - 1
        if time.monotonic() - t0 > TIME_BUDGET_S:
            break
        if len(history) > STALL_ITER and history[-1] > history[-1 - STALL_ITER] / 2:
            break      # damped steps that no longer make progress: a minimum of |F| above 0
        J = _jacobian(family, p, n)
        try:
            step = mpmath.lu_solve(J, mpmath.matrix(F))
        except ZeroDivisionError:
            step = None
        if step is None or not all(mpmath.isfinite(s) for s in step):
            raise VanishcalcError(
                f"self_normalizing: the conditions do not determine {names} at "
                f"{family._where(p)}: ∂(E[φ], E[φ²])/∂θ is singular there (the parameters "
                "enter only together, or E[φ] = 0 for every θ as for an odd φ, which needs one "
                "parameter only); fix one of them or start elsewhere")
        lam = mpmath.mpf(1)
        for _ in range(30):
            trial = [p[i] - lam * step[i] for i in range(n)]
            try:
                Ft = _conditions(family, trial, n)[0]
            except (DivergenceError, SingularityError, ComplexValuedError):
                Ft = None
            if Ft is not None and _norm(Ft) < _norm(F):
                break
            lam /= 2
        else:
            break
        p, F = trial, Ft
        history.append(_norm(F))
        if _norm(F) < _norm(best[1]):
            best = (p, F)
    bp, bF = best
    raise NotConvergedError(
        f"self_normalizing: no solution of E[φ(z)] = 0, E[φ(z)²] = 1 found for φ = {family.text} "
        f"from the starting values (Newton's method stalled or ran out of its {MAX_ITER} "
        f"iterations / {TIME_BUDGET_S:g} s); the best "
        f"point {family._where(bp)} leaves residuals {', '.join(mpmath.nstr(f, 3) for f in bF)}. "
        "The conditions may have no solution for this family; try other starting values (guess=)",
        best={nm: float(v) for nm, v in zip(names, bp)})


# ---------------------------------------------------------------- the answer


def _result(family, names, p, iterations):
    n = len(p)
    F, E, m1 = _conditions(family, p, n)
    (m1, m2, b2, d2), (e1, e2, eb, ed) = family.moments(
        p, [(None, 1), (None, 2), (lambda z: (z * z - 1) / 2, 1), (lambda z: (z * z - 1) / 2, 2)])
    if n == 1 and abs(m1) > max(1e3 * e1, mpmath.mpf(10) ** -20):
        raise VanishcalcError(
            f"self_normalizing: no solution with one parameter {names[0]}: at "
            f"{family._where(p)} the variance condition E[φ(z)²] = 1 holds but "
            f"E[φ(z)] = {mpmath.nstr(m1, 6)} ≠ 0 (φ is not odd); free a second parameter "
            "(e.g. a shift 'b' or a negative-side scale)")
    worst = max(E)
    if worst > QUAD_TOL:
        raise NotConvergedError(f"self_normalizing: the quadratures of φ = {family.text} have error "
                                f"estimates up to {mpmath.nstr(worst, 3)}; the solution is not "
                                "certain beyond that")
    # Error of θ: first order, δθ = J⁻¹·(residual + quadrature error), doubled; then the
    # rounding to a double.
    J = _jacobian(family, p, n)
    Jinv = J ** -1
    slack = [abs(F[i]) + E[i] for i in range(n)]
    params, digits = {}, {}
    for i, name in enumerate(names):
        err = 2 * sum(abs(Jinv[i, j]) * slack[j] for j in range(n))
        v = float(p[i])
        params[name] = Value(v, error=float(err) + abs(v) * 2.0 ** -53 + abs(float(p[i] - v)),
                             error_kind="estimate", method="self-normalizing:mpmath-newton")
        digits[name] = mpmath.nstr(p[i], DPS - 5)
    method = "self-normalizing:mpmath-quad"
    mean = Value(float(m1), error=float(e1) + abs(float(m1)) * 2.0 ** -53, error_kind="estimate",
                 method=method)
    second = Value(float(m2), error=float(e2) + abs(float(m2)) * 2.0 ** -53,
                   error_kind="estimate", method=method)
    # ∂ν̃/∂ν = ∂E[φ²]/∂ν − 2μ̃ ∂μ̃/∂ν, and μ̃ = E[φ] = 0 at the solution to its residual.
    dnu = d2 - 2 * m1 * b2
    jac = ((0.0, float(b2)), (0.0, float(dnu)))
    e_dnu = float(ed + 2 * abs(m1) * eb + 2 * abs(b2) * e1)
    eig = (Value(0.0, exact=sympy.Integer(0), error=0.0, method="self-normalizing:omega=0"),
           Value(float(dnu), error=e_dnu + abs(float(dnu)) * 2.0 ** -53, error_kind="estimate",
                 method=method))
    norm = mpmath.sqrt(b2 ** 2 + dnu ** 2)
    spectral = Value(float(norm), error=float(eb + e_dnu) + float(norm) * 2.0 ** -53,
                     error_kind="estimate", method=method)
    expr = family.phi.subs({s: sympy.Float(mpmath.nstr(v, DPS), DPS) for s, v in zip(family.syms, p)})
    return SelfNormalizing(expr=expr, params=params, digits=digits, mean=mean, second_moment=second,
                           jacobian=jac, eigenvalues=eig, spectral_norm=spectral,
                           stable=abs(float(dnu)) < 1.0, iterations=iterations)
