"""The singular-value spectrum of a deep network's input–output Jacobian (dynamical isometry).

For h_{l+1} = W_l φ(h_l) + b_l at the fixed point q* the Jacobian is J = Π_l W_l D_l with
D_l = diag(φ'(h_l)).  For wide layers the factors are asymptotically free, and the
S-transform of JJᵀ is the product of its factors' (Pennington, Schoenholz & Ganguli 2017,
arXiv:1711.04735, eq. 8; 2018, arXiv:1802.09979, §3):

.. math::

    S_{JJ^T}(z) = S_{D^2}(z)^L\\, S_{WW^T}(z)^L,\\qquad
    S_{WW^T} = \\sigma_w^{-2} \\text{ (orthogonal)},\\quad
    S_{WW^T} = \\frac{1}{\\sigma_w^2 (1 + z)} \\text{ (Gaussian)}.

Layered: the law of D (atoms where φ' is constant, quadrature nodes elsewhere; ``DLaw``) →
the moments of d = σw² φ'(√q* z)², μ_k = E[d^k] (certified Gaussian expectations) → power
series arithmetic on S-transforms (``moment_series``: exact or interval arithmetic, also
symbolic in μ_k and L) → the density by solving the subordination equation for each
λ + iελ (``_density``) → the public ``jacobian_spectrum`` and ``isometry_settings``.

Derivations, the density method and its checks: notes/isometry.md.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy

from ..errors import NonFiniteError, NotConvergedError, VanishcalcError
from ..validate import integer, real
from ..value import Value

__all__ = ["jacobian_spectrum", "JacobianSpectrum", "DLaw", "SpectralDensity",
           "isometry_settings", "IsometrySettings", "moment_series", "spectrum_moments_expr"]

WEIGHTS = ("gaussian", "orthogonal")
#: z range of the quadrature nodes of D's continuous part (the Gaussian mass beyond is 1.5e-23)
Z_MAX = 10.0
_PANEL = 0.25
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_PREC = 200            # bits of the interval arithmetic of the moment series


# ---------------------------------------------------------------- the law of D = φ'(h)


@dataclass(frozen=True)
class DLaw:
    """The law of D = φ'(h), h ~ N(0, q*): atoms plus a discretized continuous part.

    ``atoms``: ((value of φ', probability), …) for the intervals where φ' is constant (relu:
    ((0, 1/2), (1, 1/2)); hardtanh: 1 on [−1, 1], 0 outside), merged by value; at q* = 0
    the one-sided limits φ'(0−), φ'(0+) with 1/2 each.  ``nodes``, ``weights``: φ' at
    Gauss–Legendre nodes of the rest (z ∈ [−10, 10], panels of 1/4, kinks as edges) and
    their probabilities.  ``zero_mass`` = P(D = 0), which becomes an atom of JJᵀ at 0."""

    q_star: float
    atoms: tuple
    nodes: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)

    @property
    def continuous_mass(self) -> float:
        return float(self.weights.sum())

    @property
    def zero_mass(self) -> float:
        return float(sum(m for v, m in self.atoms if v == 0.0))

    def cdf(self, t):
        """P(D ≤ t) for an array of t: atoms exact; the continuous part interpolated linearly
        through the nodes' cumulative weights, each node's weight centred on it."""
        t = np.asarray(t, dtype=float)
        out = np.zeros(t.shape)
        for v, m in self.atoms:
            out = out + np.where(t >= v, m, 0.0)
        if self.nodes.size:
            # equal values (a symmetric φ' at ±z) merged first: interp needs distinct nodes
            vals, inv = np.unique(self.nodes, return_inverse=True)
            w = np.bincount(inv, weights=self.weights)
            mid = np.cumsum(w) - w / 2
            out = out + np.interp(t, vals, mid, left=0.0, right=float(w.sum()))
        return out

    def squared(self, sigma_w2):
        """(values, probabilities) of d = σw² D², atoms merged, zeros dropped (they add
        nothing to ψ_D(x) = E[xd/(1 − xd)])."""
        vals = np.concatenate([[sigma_w2 * v * v for v, _ in self.atoms],
                               sigma_w2 * self.nodes ** 2])
        probs = np.concatenate([[m for _, m in self.atoms], self.weights])
        keep = (vals > 0) & (probs > 0)
        vals, probs = vals[keep], probs[keep]
        uniq, inv = np.unique(vals, return_inverse=True)
        return uniq, np.bincount(inv, weights=probs)


def _norm_cdf(x):
    if x == math.inf:
        return 1.0
    if x == -math.inf:
        return 0.0
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def d_law(act, q_star: float, panel: float = _PANEL) -> DLaw:
    """The law of φ'(√q* z) (see :class:`DLaw`); ``panel``: the width in z of each 16-node
    Gauss–Legendre panel of the continuous part."""
    from ..maps.activation import derivative_of, one_sided_at_zero
    d = derivative_of(act)
    atoms = {}
    if q_star == 0.0:
        for v in one_sided_at_zero(d):
            atoms[float(v)] = atoms.get(float(v), 0.0) + 0.5
        return DLaw(0.0, tuple(sorted(atoms.items())), np.zeros(0), np.zeros(0))
    sq = math.sqrt(q_star)
    nodes, weights = [], []
    for piece in d.pieces:
        lo, hi = piece.lo / sq, piece.hi / sq
        if not piece.expr.free_symbols:                # φ' constant here: an atom
            v = float(piece.expr)
            atoms[v] = atoms.get(v, 0.0) + _norm_cdf(hi) - _norm_cdf(lo)
            continue
        a, b = max(lo, -Z_MAX), min(hi, Z_MAX)
        if a >= b:
            continue
        n = max(1, int(math.ceil((b - a) / panel)))
        edges = np.linspace(a, b, n + 1)
        mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
        z = (mid[:, None] + half[:, None] * _GL_NODES[None, :]).ravel()
        w = (half[:, None] * _GL_WEIGHTS[None, :]).ravel() * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
        # the panel's probability, exactly, spread over its nodes (Φ differences, not the
        # quadrature's sum, so atoms and continuous part add up to 1)
        prob = _norm_cdf(hi) - _norm_cdf(lo)
        w = w * (prob / w.sum()) if w.sum() > 0 else w
        nodes.append(piece.numpy(sq * z))
        weights.append(w)
    nodes = np.concatenate(nodes) if nodes else np.zeros(0)
    weights = np.concatenate(weights) if weights else np.zeros(0)
    return DLaw(q_star, tuple(sorted(atoms.items())), nodes, weights)


# ---------------------------------------------------------------- power series of S-transforms


def _mul(a, b, n, zero):
    out = [zero] * n
    for i in range(min(n, len(a))):
        if a[i] == 0:
            continue
        for j in range(min(n - i, len(b))):
            out[i + j] = out[i + j] + a[i] * b[j]
    return out


def _recip(a, n, zero, one):
    """1/a as a series (a[0] = 1)."""
    out = [one] + [zero] * (n - 1)
    for k in range(1, n):
        acc = zero
        for j in range(1, min(k, len(a) - 1) + 1):
            acc = acc + a[j] * out[k - j]
        out[k] = -acc
    return out


def _falling(L, j, one):
    """binom(L, j) for an integer, interval or symbolic L."""
    out = one
    for i in range(j):
        out = out * (L - i)
    return out / math.factorial(j)


def _power(a, L, n, zero, one):
    """a^L = Σ_j binom(L, j)(a − 1)^j for a[0] = 1 (L an integer or a symbol)."""
    u = [zero] + list(a[1:n])
    out = [one] + [zero] * (n - 1)
    uj = [one] + [zero] * (n - 1)
    for j in range(1, n):
        uj = _mul(uj, u, n, zero)
        c = _falling(L, j, one)
        out = [o + c * t for o, t in zip(out, uj)]
    return out


def _inverse(f, n, zero, one):
    """g with f(g(w)) = w for f = w + f_2 w² + … (coefficients by power, f[0] = 0, f[1] = 1):
    Lagrange inversion, g_m = [z^{m−1}] (z/f(z))^m / m."""
    h = _recip(f[1:] + [zero], n, zero, one)          # z/f(z)
    g = [zero] * (n + 1)
    hm = [one] + [zero] * (n - 1)
    for m in range(1, n + 1):
        hm = _mul(hm, h, n, zero)
        g[m] = hm[m - 1] / m
    return g


def moment_series(nu, depth, weights, zero=0, one=1):
    """Normalized moments m̃_k = m_k/m_1^k, k = 1..K, of JJᵀ from ν_j = μ_j/μ_1^j, j = 1..K.

    ``nu`` = [ν_1 = 1, ν_2, …, ν_K] (numbers, intervals or SymPy expressions); ``depth``
    an integer or a SymPy symbol.  S-transform composition (notes/isometry.md, §2):
    ψ_D = Σ ν_k w^k → χ_D = ψ_D^{-1} → S_D = χ_D (1 + w)/w → S = S_D^L S_W^L, S_W = 1
    (orthogonal) or 1/(1 + w) (Gaussian), normalized → χ = wS/(1 + w) → ψ = χ^{-1}."""
    K = len(nu)
    psi_d = [zero] + list(nu)
    chi_d = _inverse(psi_d, K, zero, one)
    s_d = _mul(chi_d[1:], [one, one], K, zero)            # χ_D/w · (1 + w)
    s = _power(s_d, depth, K, zero, one)
    one_plus = [one, one]
    if weights == "gaussian":
        s = _mul(s, _power(_recip(one_plus, K, zero, one), depth, K, zero, one), K, zero)
    chi = [zero] + _mul(s, _recip(one_plus, K, zero, one), K, zero)
    psi = _inverse(chi, K, zero, one)
    return psi[1:K + 1]


def spectrum_moments_expr(k, weights="orthogonal"):
    """m_k of JJᵀ as a SymPy polynomial in L and μ_1..μ_k, μ_j = E[(σw² φ'(√q* z)²)^j].

    >>> spectrum_moments_expr(2, "orthogonal")
    mu_1**(2*L)*(-L + L*mu_2/mu_1**2 + 1)
    >>> spectrum_moments_expr(2, "gaussian")
    mu_1**(2*L)*(L*mu_2/mu_1**2 + 1)
    """
    k = integer("spectrum_moments_expr", "k", k, 1)
    weights = _weights_iv("spectrum_moments_expr", weights)
    L = sympy.Symbol("L", positive=True, integer=True)
    mus = sympy.symbols(f"mu_1:{k + 1}", positive=True)
    nu = [sympy.Integer(1)] + [mus[j - 1] / mus[0] ** j for j in range(2, k + 1)]
    m = moment_series(nu, L, weights, sympy.Integer(0), sympy.Integer(1))[k - 1]
    return sympy.expand(m) * mus[0] ** (k * L)


# ---------------------------------------------------------------- the density


@dataclass(frozen=True)
class SpectralDensity:
    """The eigenvalue density of JJᵀ (the squared singular values of J).

    ``x``, ``density``: λ and ρ(λ) on a grid (the part representable in doubles; plot
    these); ``log_x`` and ``log_density`` = λρ(λ), the density of log λ, on the full grid.
    ``atoms``: ((λ, mass), …) point masses (λ = 0 when P(φ' = 0) > 0; the whole law when D
    is deterministic and W orthogonal).  ``checks``: the density's mass (+ atoms) − 1, its
    first and second moments over m1 and m2 − 1: the error of the method (notes/isometry.md
    §3); ``error`` is their largest magnitude.  ``cdf(λ)`` is the predicted distribution."""

    x: np.ndarray
    density: np.ndarray
    log_x: np.ndarray
    log_density: np.ndarray
    atoms: tuple
    checks: dict
    method: str
    log_edge: float | None = None

    @property
    def error(self) -> float:
        return max(abs(v) for v in self.checks.values()) if self.checks else 0.0

    def cdf(self, lam):
        """P(eigenvalue ≤ λ) for an array of λ: the atoms, plus the density's mass between
        the grid's bottom and λ; the mass the grid misses (1 − atoms − grid mass, see
        ``checks["mass"]``) is counted at the grid's bottom."""
        lam = np.asarray(lam, dtype=float)
        out = np.zeros(lam.shape)
        for loc, mass in self.atoms:
            out = out + np.where(lam >= loc, mass, 0.0)
        if self.log_x.size >= 2:
            u = self.log_x
            seg, top = _segments(u, self.log_density, self.log_edge)
            above = np.concatenate([np.cumsum(seg[::-1])[::-1], [0.0]]) + top   # mass above u_i
            missing = 1.0 - above[0] - sum(m for _, m in self.atoms)
            with np.errstate(divide="ignore"):
                lu = np.log(np.maximum(lam, 0.0))
            inside = above[0] - np.interp(lu, u, above)
            out = out + np.where(lu >= u[0], missing + inside, 0.0)
        return out


def _segments(u, rho_u, log_edge):
    """Masses of the density of u = log λ between consecutive grid points (ascending u), and
    between the top point and the edge.  With an edge the integral is taken in
    t = √(log_edge − u), ∫ρ du = ∫ 2tρ dt: an inverse-square-root edge (relu, orthogonal,
    L = 2: a product of two free projections) is then a finite integrand, where a trapezoid
    in u put 35 times the whole mass into the first panel."""
    if log_edge is None:
        return (rho_u[1:] + rho_u[:-1]) / 2 * np.diff(u), 0.0
    t = np.sqrt(np.maximum(log_edge - u, 0.0))
    g = 2 * t * rho_u
    seg = (g[1:] + g[:-1]) / 2 * (t[:-1] - t[1:])
    return seg, float(g[-1] * t[-1])          # [edge, top point]: g held constant


def _integral(u, rho_u, log_edge, weight=None):
    """∫ weight(u) ρ(u) du over the grid (and up to the edge), in t when there is an edge."""
    f = rho_u if weight is None else rho_u * weight
    seg, top = _segments(u, f, log_edge)
    return float(seg.sum() + top)


def _psi(x, vals, probs):
    """ψ_D(x) = E[xd/(1 − xd)], 1 + ψ_D(x) and ψ_D'(x).  1 + ψ = P(d = 0) + E[1/(1 − xd); d > 0]
    directly: as 1 + ψ → 0 (|x| → ∞, λ → 0) forming it from ψ would cancel all digits."""
    r = 1.0 / (1.0 - x * vals)
    p0 = max(1.0 - float(probs.sum()), 0.0)
    return np.sum(probs * (r - 1.0)), p0 + np.sum(probs * r), np.sum(probs * vals * r * r)


def _log_s(x, vals, probs, L, gaussian):
    """log s(x) and d log s/dx on the branch ψ_{JJᵀ}(1/s) = ψ_D(x) (notes/isometry.md §3):
    orthogonal 1/s = x^L ((1 + ψ)/ψ)^{L−1}; Gaussian s x^L = ψ^{L−1}(1 + ψ)."""
    p, p1, dp = _psi(x, vals, probs)
    if gaussian:
        ls = (L - 1) * np.log(p) + np.log(p1) - L * np.log(x)
        d = (L - 1) * dp / p + dp / p1 - L / x
    else:
        ls = -L * np.log(x) - (L - 1) * (np.log(p1) - np.log(p))
        d = -L / x + (L - 1) * dp * (1 / p - 1 / p1)
    return ls, d, p1


def _upper_edge(vals, probs, L, gaussian):
    """(x at the edge, log λ_max) in normalized units: the first minimum of the real s(x)
    on (0, 1/max d) (s → ∞ as x → 0⁺; outside the support s(x) is real and monotone)."""
    from scipy.optimize import brentq
    top = 1.0 / vals.max()
    t = np.concatenate([np.geomspace(1e-9, 0.5, 200), 1 - np.geomspace(0.5, 1e-12, 200)[1:]])
    xs = top * t
    ds = np.array([_log_s(x, vals, probs, L, gaussian)[1] for x in xs])
    up = np.nonzero((ds[:-1] < 0) & (ds[1:] >= 0))[0]
    if up.size:
        i = int(up[0])
        x_edge = brentq(lambda x: _log_s(x, vals, probs, L, gaussian)[1], xs[i], xs[i + 1],
                        xtol=1e-15 * xs[i + 1], rtol=1e-15)
    else:
        x_edge = xs[-1]
    return x_edge, float(_log_s(x_edge, vals, probs, L, gaussian)[0])


def _newton(x0, target, vals, probs, L, gaussian, max_iter=80):
    """Newton on log s(x) = target (mod 2πi) from x0: (x, ψ_D(x)) or None.  At the edge the
    root is double (linear convergence): a residual below 1e-11 is accepted there."""
    x = complex(x0)
    for _ in range(max_iter):
        ls, d, p = _log_s(x, vals, probs, L, gaussian)
        f = ls - target
        f = complex(f.real, (f.imag + math.pi) % (2 * math.pi) - math.pi)    # mod 2πi
        if not np.isfinite(f) or d == 0:
            return None
        step = f / d
        if abs(step) > 0.5 * abs(x):
            step *= 0.5 * abs(x) / abs(step)
        x -= step
        if abs(f) < 1e-13 and abs(step) < 1e-12 * abs(x):
            return x, _psi(x, vals, probs)[1]
        if not np.isfinite(x):
            return None
    if abs(f) < 1e-11:
        return x, _psi(x, vals, probs)[1]
    return None


#: s = λ(1 + iε): the density is taken this far above the real axis
EPS = 1e-9


def _density_grid(vals, probs, L, gaussian, rel_width, eps=EPS, n=1500):
    """(log λ̃, density of log λ̃) on a grid descending from the upper edge; normalized λ̃.

    For each s = λ̃(1 + iε) solve log s(x) = log s by Newton, continued from the previous
    grid point; among the starts x_prev, x_prev(1 ± iδ) the root with Im G ≤ 0 is kept,
    G(s) = (1 + ψ_D(x))/s; then ρ(log λ̃) = −Im[(1 + ψ)/(1 + iε)]/π."""
    from scipy.optimize import brentq
    x_edge, u_edge = _upper_edge(vals, probs, L, gaussian)
    span = 14.0 * (L + 1) + 30.0 if gaussian else 14.0 * L + 30.0
    # small values of d reach far down: (d̃ at the 1 % quantile)^L (leaky relu: 1e-4 per layer)
    order = np.argsort(vals)
    low = vals[order][min(np.searchsorted(np.cumsum(probs[order]), 0.01), vals.size - 1)]
    span += L * max(0.0, -math.log(low))
    fine = min(span, 12.0 * max(rel_width, 1e-4))
    t = np.linspace(0.0, 1.0, n)
    rel = np.unique(np.concatenate([-span * t ** 3, -fine * t, [0.02, 0.2]]))[::-1]
    # start above the edge, on the real branch (0, x_edge)
    u0 = u_edge + rel[0]
    x = brentq(lambda x: _log_s(x, vals, probs, L, gaussian)[0] - u0,
               _bracket_low(vals, probs, L, gaussian, u0, x_edge), x_edge)
    log_eps = complex(math.log1p(eps * eps) / 2, math.atan(eps))
    us, rho, xs = [], [], []
    total = float(probs.sum())         # the mass of the nonzero eigenvalues, 1 − P(d = 0)
    mass = 0.0
    u_prev = u0
    for r in rel[1:]:
        u = u_edge + r
        best = _continue(x, u_prev, u, vals, probs, L, gaussian, eps, log_eps)
        if best is None and (total - mass < 1e-4 or (rho and rho[-1] < 1e-10 * max(rho))):
            break        # lost in the far tail, the mass found or the density negligible
            #              there: the checks say how much is missing
        if best is None:
            raise NotConvergedError(f"jacobian_spectrum: the density equation has no root with "
                                    f"Im G ≤ 0 at log λ = {u:.6g} (continuation lost)")
        x, u_prev = best[0], u
        if us:
            mass += (us[-1] - u) * (rho[-1] + max(best[1], 0.0)) / 2
        us.append(u)
        rho.append(max(best[1], 0.0))
        xs.append(x)
        if total - mass < 1e-13 and rho[-1] < 1e-15:
            break        # below the support: nothing left to find
    us, rho, xs = _refine(np.array(us), np.array(rho), np.array(xs), vals, probs, L, gaussian,
                          eps, log_eps)
    return us[::-1], rho[::-1], u_edge


def _refine(us, rho, xs, vals, probs, L, gaussian, eps, log_eps, rounds=12, tol=1e-6):
    """Halve the grid steps (u descending) where the trapezoid's error scale |Δρ|·|Δu|, the
    mass a step can misplace, is above ``tol``: lower edges and the singularities of
    interior atoms (leaky relu or selu at L = 2, orthogonal), which the cubic grid meets
    with coarse steps.  (A criterion relative to max ρ fails: an inverse-square-root top
    edge makes max ρ as large as the first grid point is close to it.)"""
    for _ in range(rounds):
        du = -np.diff(us)
        big = np.nonzero((np.abs(np.diff(rho)) * du > tol) & (du > 1e-9))[0]
        if not big.size or us.size > 20000:
            break
        new = []
        for i in big:
            um = (us[i] + us[i + 1]) / 2
            got = _continue(xs[i], us[i], um, vals, probs, L, gaussian, eps, log_eps)
            if got is not None:
                new.append((um, max(got[1], 0.0), got[0]))
        if not new:
            break
        us = np.concatenate([us, [n[0] for n in new]])
        rho = np.concatenate([rho, [n[1] for n in new]])
        xs = np.concatenate([xs, [n[2] for n in new]])
        order = np.argsort(-us)
        us, rho, xs = us[order], rho[order], xs[order]
    return us, rho, xs


def _solve_at(x, u, vals, probs, L, gaussian, eps, log_eps, starts):
    """(root, density of log λ) at u from the given starts, the first physical one (Im G ≤ 0)
    that stays within half of |x| of the previous root (a continuous branch); else None."""
    for start in starts:
        res = _newton(start, u + log_eps, vals, probs, L, gaussian)
        if res is None:
            continue
        xr, p1 = res
        val = -(p1 / (1 + 1j * eps)).imag / math.pi
        if val >= -1e-10 and abs(xr - x) <= 0.5 * abs(x):
            return xr, val
    return None


def _continue(x, u_from, u_to, vals, probs, L, gaussian, eps, log_eps, depth=0):
    """The root at u_to continued from x at u_from: directly, or (when the root runs away or
    turns unphysical: x can turn quickly in the complex plane) through halved steps; at the
    finest level also from x(1 ± 10⁻³i), x(1 ± 0.1i) (the entry into the support at the edge,
    where the real root turns complex)."""
    got = _solve_at(x, u_to, vals, probs, L, gaussian, eps, log_eps, (x,))
    if got is not None:
        return got
    if depth < 10:
        mid = (u_from + u_to) / 2
        half = _continue(x, u_from, mid, vals, probs, L, gaussian, eps, log_eps, depth + 1)
        if half is not None:
            return _continue(half[0], mid, u_to, vals, probs, L, gaussian, eps, log_eps,
                             depth + 1)
    return _solve_at(x, u_to, vals, probs, L, gaussian, eps, log_eps,
                     (x * (1 + 1e-3j), x * (1 - 1e-3j), x * (1 + 0.1j), x * (1 - 0.1j)))


def _bracket_low(vals, probs, L, gaussian, u0, x_edge):
    x = x_edge
    for _ in range(2000):
        x *= 0.5
        if _log_s(x, vals, probs, L, gaussian)[0] > u0:
            return x
    raise NotConvergedError("jacobian_spectrum: no real root above the spectrum's edge")


# ---------------------------------------------------------------- the public object


def _weights_iv(where, weights):
    if weights not in WEIGHTS:
        raise VanishcalcError(f"{where}: weights = {weights!r} is not one of {WEIGHTS}; "
                              "pass weights='gaussian' (i.i.d. N(0, σw²/N)) or 'orthogonal' "
                              "(Haar-orthogonal scaled by σw)")
    return weights


def _d2_moment(act, q, sigma_w2, k):
    """μ_k = E[(σw² φ'(√q z)²)^k] as a Value (certified Gaussian expectation; at q = 0 the
    one-sided limit (φ'(0−)^{2k} + φ'(0+)^{2k})/2)."""
    from ..gaussian.expect import expect
    from ..maps.activation import derivative_of, one_sided_at_zero
    d = derivative_of(act)
    if q == 0.0:
        a, b = one_sided_at_zero(d)
        val = sigma_w2 ** k * (a ** (2 * k) + b ** (2 * k)) / 2
        return val, 4e-16 * k * val
    p = d.power(2 * k, f"{act.name}'^{2 * k}")
    v = expect(p, q)
    return sigma_w2 ** k * float(v), sigma_w2 ** k * (v.error + 4e-16 * k * abs(float(v)))


class JacobianSpectrum:
    """The spectrum of JJᵀ for a depth-L plain network at its fixed point q*.

    Built by :func:`jacobian_spectrum`.  Attributes: ``q_star``, ``chi1`` (= μ1), ``m1``
    (= χ1^L), ``variance`` (σ²_{JJᵀ}), ``spread`` (σ²/m1²), ``d_law`` (:class:`DLaw`),
    ``zero_mass``; methods ``moments(k)``, ``mu(k)``, ``density()``, ``edge()``,
    ``edge_growth(depths)``; ``x`` and ``density_values`` hold the default density grid
    (``x``, ``density`` of :meth:`density`, for plotting)."""

    def __init__(self, mf, depth, weights):
        self.meanfield = mf
        self.act = mf.phi
        self.sigma_w, self.sigma_b = mf.sigma_w, mf.sigma_b
        self.sigma_w2 = mf.sigma_w ** 2
        self.depth = depth
        self.weights = weights
        self.q_star = mf.q_star()
        self.d_law = d_law(self.act, float(self.q_star))
        self._mu = {}
        self.chi1 = self.mu(1)
        c1 = float(self.chi1)
        if c1 <= 0:
            raise VanishcalcError(f"{self!r}: E[φ'(h)²] = 0 at the fixed point: J = 0")
        #: log m1 = L log χ1: finite where m1 itself leaves the double range (deep nets off
        #: the critical line); ``spread`` and ``normalized_moment`` never overflow
        self.log_m1 = depth * math.log(c1)

    def _exp(self, log_value, what):
        if log_value > 709.0:
            raise NonFiniteError(
                f"{self!r}: {what} = e^{log_value:.6g} overflows a double (χ1 = "
                f"{float(self.chi1):.6g} over {self.depth} layers); use log_m1, spread or "
                "normalized_moment(k) = m_k/m1^k, which stay finite")
        return math.exp(log_value)

    @property
    def m1(self) -> Value:
        """m1 = χ1^L, the mean eigenvalue of JJᵀ (NonFiniteError beyond the double range)."""
        m1 = self._exp(self.log_m1, "m1")
        rel = self.depth * self.chi1.error / float(self.chi1) + 4e-16 * self.depth
        return Value(m1, error=rel * m1, error_kind="estimate", method="spectrum:chi1^L")

    def __repr__(self):
        return (f"JacobianSpectrum({self.act.name!r}, sigma_w={self.sigma_w:g}, "
                f"sigma_b={self.sigma_b:g}, depth={self.depth}, weights={self.weights!r})")

    @property
    def zero_mass(self) -> float:
        """P(φ'(h) = 0): the mass of JJᵀ's eigenvalue 0 (free multiplicative convolution
        keeps the largest atom at 0; relu: 1/2 at every depth)."""
        return self.d_law.zero_mass

    def mu(self, k) -> Value:
        """μ_k = E[(σw² φ'(√q* z)²)^k]; the q* error is propagated by a difference quotient."""
        k = integer("JacobianSpectrum.mu", "k", k, 1)
        if k not in self._mu:
            q = float(self.q_star)
            val, err = _d2_moment(self.act, q, self.sigma_w2, k)
            if q > 0 and self.q_star.error > 0:
                h = max(1e-6 * q, 1e3 * self.q_star.error)
                up, _ = _d2_moment(self.act, q + h, self.sigma_w2, k)
                err += abs(up - val) / h * self.q_star.error
            self._mu[k] = Value(val, error=err, error_kind="estimate",
                                method="spectrum:E[(σw²φ'²)^k]")
        return self._mu[k]

    def _normalized_moments(self, K):
        """Intervals of m̃_k = m_k/m1^k, k = 1..K."""
        ctx = mpmath.iv
        old = ctx.prec
        ctx.prec = _PREC
        try:
            mus = [self.mu(j) for j in range(1, K + 1)]
            if float(mus[0]) == 0.0:
                raise VanishcalcError(f"{self!r}: E[φ'(h)²] = 0 at the fixed point: J = 0")
            ivs = [ctx.mpf([float(m) - m.error, float(m) + m.error]) for m in mus]
            nu = [ctx.mpf(1)] + [ivs[j - 1] / ivs[0] ** j for j in range(2, K + 1)]
            return moment_series(nu, self.depth, self.weights, ctx.mpf(0), ctx.mpf(1))
        finally:
            ctx.prec = old

    def moments(self, k) -> Value:
        """m_k = ∫ λ^k ρ(λ) dλ of JJᵀ's eigenvalue law, from the S-transform composition in
        interval arithmetic on μ_1..μ_k ± their errors (plus m1's)."""
        k = integer("JacobianSpectrum.moments", "k", k, 1)
        m = self.normalized_moment(k)
        scale = self._exp(k * self.log_m1 + math.log(max(float(m), 1e-300)), f"m{k}")
        m1_rel = self.depth * self.chi1.error / float(self.chi1) + 4e-16 * self.depth
        err = scale * (m.error / max(float(m), 1e-300) + k * m1_rel + 4e-16 * k)
        return Value(scale, error=err, error_kind="estimate", method="spectrum:s-transform-series")

    def normalized_moment(self, k) -> Value:
        """m_k/m1^k (1 for k = 1): the shape of the spectrum, independent of its scale χ1^L."""
        k = integer("JacobianSpectrum.normalized_moment", "k", k, 1)
        m = self._normalized_moments(k)[k - 1]
        mid = float(m.mid)
        return Value(mid, error=float(m.delta) / 2 + 4e-16 * abs(mid), error_kind="estimate",
                     method="spectrum:s-transform-series")

    @property
    def spread(self) -> Value:
        """σ²_{JJᵀ}/m1² = L(μ2/μ1² − 1) (orthogonal) or L(μ2/μ1²) (Gaussian)."""
        m = self._normalized_moments(2)[1]
        return Value(float(m.mid) - 1.0, error=float(m.delta) / 2 + 4e-16,
                     error_kind="estimate", method="spectrum:s-transform-series")

    @property
    def variance(self) -> Value:
        """σ²_{JJᵀ} = m2 − m1² = m1²·L(μ2/μ1² − 1 + s), s = 1 Gaussian, 0 orthogonal."""
        sp = self.spread
        m1 = float(self.m1)
        return Value(float(sp) * m1 * m1,
                     error=sp.error * m1 * m1 + 2 * abs(float(sp)) * m1 * self.m1.error,
                     error_kind="estimate", method="spectrum:s-transform-series")

    # ---- the density

    def _squared_law(self, panel=_PANEL):
        law = self.d_law if panel == _PANEL else d_law(self.act, float(self.q_star), panel)
        vals, probs = law.squared(self.sigma_w2)
        return vals / float(self.chi1), probs       # normalized: E[d̃] = 1 over all mass

    def _deterministic(self):
        """True when D² takes one nonzero value (besides possibly 0)."""
        vals, _ = self._squared_law()
        return vals.size == 1

    @functools.cached_property
    def _density(self) -> SpectralDensity:
        return self.density()

    def density(self, n=1500) -> SpectralDensity:
        """The eigenvalue density of JJᵀ (method: notes/isometry.md §3)."""
        n = integer("JacobianSpectrum.density", "n", n, 50)
        L = self.depth
        gaussian = self.weights == "gaussian"
        # at small depth the subordination root x stays near the real axis, where a coarse
        # node set of d's continuous part shows its poles (mish, L = 2: 4 % off with panels
        # of 1/4, 1e-6 with 1/16)
        vals, probs = self._squared_law(_PANEL if L > 4 else _PANEL / 4)
        log_m1 = self.log_m1
        atoms = []
        if self.zero_mass > 0:
            atoms.append((0.0, self.zero_mass))
        if vals.size == 0:
            raise VanishcalcError(f"{self!r}: φ'(h) = 0 almost surely at q*; J = 0")
        if vals.size == 1 and not gaussian and self.zero_mass == 0:
            # D_l = √d·I and W_l orthogonal: JJᵀ = d^L·I exactly (a projection-valued D,
            # relu's, is not this case: products of projections and rotations spread)
            lam = self._exp(L * math.log(float(vals[0]) * float(self.chi1)), "the eigenvalue")
            atoms.append((lam, float(probs[0])))
            empty = np.zeros(0)
            return SpectralDensity(empty, empty, empty, empty, tuple(atoms),
                                   {"mass": sum(m for _, m in atoms) - 1.0}, "spectrum:atoms")
        if L == 1 and not gaussian:
            return self._single_orthogonal_layer(atoms)
        if not gaussian:
            atoms += self._top_atoms()
        rel = math.sqrt(max(math.log1p(max(float(self.spread), 0.0)), 0.0))
        u, rho, u_edge = _density_grid(vals, probs, L, gaussian, rel, n=n)
        for loc, m in atoms:
            if loc > 0:
                # a top atom is a pole of G; at s = λ(1 + iε) it leaves a Lorentzian of
                # width ελ that the fine grid at the edge would count a second time
                lam, at = np.exp(u), math.exp(math.log(loc) - log_m1)
                rho = np.maximum(rho - m * EPS * lam * lam / math.pi
                                 / ((lam - at) ** 2 + (EPS * lam) ** 2), 0.0)
        mass = _integral(u, rho, u_edge)
        e1 = _integral(u, rho, u_edge, np.exp(u))
        # m2 check only where e^{2u} stays finite (normalized units: u ≤ a few hundred)
        e2 = _integral(u, rho, u_edge, np.exp(2 * np.clip(u, -700, 350)))
        m2 = self._normalized_moments(2)[1]
        # atoms in normalized units (λ/m1): at 0 (mass P(d = 0)) and, orthogonal, at the top
        a0 = sum(m for _, m in atoms)
        a1 = sum(math.exp(math.log(loc) - log_m1) * m for loc, m in atoms if loc > 0)
        a2 = sum(math.exp(2 * (math.log(loc) - log_m1)) * m for loc, m in atoms if loc > 0)
        checks = {"mass": mass + a0 - 1.0, "m1": e1 + a1 - 1.0,
                  "m2": (e2 + a2) / float(m2.mid) - 1.0}
        log_x = u + log_m1
        ok = (log_x > -700) & (log_x < 700)
        x = np.exp(log_x[ok])
        return SpectralDensity(x, rho[ok] / x, log_x, rho, tuple(atoms), checks,
                               "spectrum:subordination-newton", u_edge + log_m1)

    def _top_atoms(self):
        """Atoms of JJᵀ away from 0 for orthogonal W: d has an atom v with mass p (hardtanh:
        v = σw² on |h| < 1); a direction kept by all L layers' projections is scaled by v^L
        exactly, and L generic subspaces of codimension 1 − p meet in dimension
        N(1 − L(1 − p)).  Free probability agrees: μ⊠ν has an atom at ab of mass
        μ({a}) + ν({b}) − 1 when that is positive (Belinschi 2003), so L-fold, v^L with
        1 − L(1 − p); two distinct atoms never sum above 1."""
        L = self.depth
        out = []
        for v, p in self.d_law.atoms:
            mass = 1.0 - L * (1.0 - p)
            if v != 0.0 and mass > 0:
                out.append((self._exp(L * math.log(self.sigma_w2 * v * v), "the top atom"),
                            mass))
        return out

    def _single_orthogonal_layer(self, atoms, bins=400):
        """L = 1, orthogonal W: JJᵀ = W D² Wᵀ has the eigenvalues of D², i.e. the law of
        d = σw² φ'(√q* z)² itself: its atoms, and a histogram (log-spaced bins) of the
        continuous part's quadrature nodes, whose mass is exact and whose moments are off
        by the bin width (the checks say by how much)."""
        law = self.d_law
        atoms = [(self.sigma_w2 * v * v, m) for v, m in law.atoms if v != 0.0]
        if self.zero_mass > 0:
            atoms.append((0.0, self.zero_mass))
        merged = {}
        for loc, m in atoms:
            merged[loc] = merged.get(loc, 0.0) + m
        atoms = tuple(sorted(merged.items()))
        d = self.sigma_w2 * law.nodes ** 2
        w = law.weights
        keep = (d > 0) & (w > 0)
        d, w = d[keep], w[keep]
        if d.size == 0:
            empty = np.zeros(0)
            return SpectralDensity(empty, empty, empty, empty, atoms,
                                   {"mass": sum(m for _, m in atoms) - 1.0}, "spectrum:atoms")
        lu = np.log(d)
        edges = np.linspace(lu.min(), lu.max() + 1e-12, bins + 1)
        hist, _ = np.histogram(lu, bins=edges, weights=w)
        u = (edges[1:] + edges[:-1]) / 2
        rho_u = hist / np.diff(edges)
        m1 = float(self.chi1)
        am1 = sum(loc * m for loc, m in atoms)
        am2 = sum(loc * loc * m for loc, m in atoms)
        mass = float(hist.sum()) + sum(m for _, m in atoms)
        e1 = float(np.sum(hist * np.exp(u))) + am1
        e2 = float(np.sum(hist * np.exp(2 * u))) + am2
        checks = {"mass": mass - 1.0, "m1": e1 / m1 - 1.0, "m2": e2 / float(self.mu(2)) - 1.0}
        x = np.exp(u)
        return SpectralDensity(x, rho_u / x, u, rho_u, atoms, checks, "spectrum:law-of-d-histogram")

    @property
    def x(self):
        """λ grid of the default density (for plotting)."""
        return self._density.x

    @property
    def density_values(self):
        return self._density.density

    def arrays(self):
        """(x, density) of the default density grid."""
        d = self._density
        return d.x, d.density

    def edge(self, depth=None) -> float:
        """λ_max of JJᵀ (the largest squared singular value of J) at ``depth`` (default: this
        spectrum's), from the first minimum of the real s(x) (notes/isometry.md §4)."""
        L = self.depth if depth is None else integer("JacobianSpectrum.edge", "depth", depth, 1)
        vals, probs = self._squared_law()
        if vals.size == 1 and self.weights == "orthogonal" and self.zero_mass == 0:
            return self._exp(L * math.log(float(vals[0]) * float(self.chi1)), "λ_max")
        _, u = _upper_edge(vals, probs, L, self.weights == "gaussian")
        lam = self._exp(u + L * math.log(float(self.chi1)), "λ_max")
        if self.weights == "orthogonal" and L == self.depth:
            lam = max([lam] + [loc for loc, _ in self._top_atoms()])
        return lam

    def edge_growth(self, depths):
        """(depths, λ_max, largest singular value √λ_max) for each depth."""
        depths = np.array([integer("JacobianSpectrum.edge_growth", "depth", int(d), 1)
                           for d in np.atleast_1d(depths)])
        lam = np.array([self.edge(int(d)) for d in depths])
        return depths, lam, np.sqrt(lam)


def _spectrum_iv(spec, sigma_w, sigma_b, depth, weights):
    from ..maps.meanfield import MeanField
    where = "jacobian_spectrum"
    depth = integer(where, "depth", depth, 1, why="(the number of layers)")
    weights = _weights_iv(where, weights)
    if isinstance(spec, MeanField):
        if spec.sigma_w is None:
            raise VanishcalcError(
                f"{where}: the free-probability spectrum is derived for the plain network "
                "h_{l+1} = W_l φ(h_l) + b_l; a block of layers (BatchNorm, LayerNorm, residual) "
                "is not covered: BN couples the units of a batch and LN rescales by a random "
                "norm, so D_l is no longer a diagonal independent of W_l "
                "(notes/isometry.md §6). Pass a nonlinearity and sigma_w, sigma_b")
        if sigma_w is not None and real(where, "sigma_w", sigma_w) != spec.sigma_w:
            raise VanishcalcError(f"{where}: sigma_w = {sigma_w!r} differs from the MeanField's "
                                  f"{spec.sigma_w}; pass one or the other")
        return spec, depth, weights
    if sigma_w is None:
        raise VanishcalcError(f"{where}: sigma_w is required, e.g. "
                              "jacobian_spectrum('tanh', sigma_w=1.05, sigma_b=0.01, depth=100)")
    return MeanField(spec, sigma_w, 0.0 if sigma_b is None else sigma_b), depth, weights


def jacobian_spectrum(spec, sigma_w=None, sigma_b=None, depth=1, weights="gaussian"):
    """The singular-value spectrum of the input–output Jacobian of a deep random network.

    .. math::

        S_{JJ^T} = S_{D^2}^L S_{WW^T}^L,\\qquad m_1 = \\chi_1^L,\\qquad
        \\frac{\\sigma^2_{JJ^T}}{m_1^2} = L\\Big(\\frac{\\mu_2}{\\mu_1^2} - 1 + s\\Big),

    μ_k = E[(σw² φ'(√q* z)²)^k], s = 1 for Gaussian W, 0 for orthogonal W.

    Parameters
    ----------
    spec : str, sympy.Expr, Activation or MeanField
        φ, or a plain ``MeanField(φ, σw, σb)`` (then sigma_w/sigma_b come from it).
    sigma_w, sigma_b : float
        Weight and bias scales (σw, σb).
    depth : int
        L ≥ 1, the number of layers W_l D_l in J.
    weights : {"gaussian", "orthogonal"}
        i.i.d. N(0, σw²/N) or Haar-orthogonal scaled by σw.

    Returns
    -------
    JacobianSpectrum

    Raises
    ------
    VanishcalcError
        depth < 1, unknown weights, a block of layers (BN/LN: not covered), no fixed point
        (``DivergenceError``), φ' = 0 almost surely.

    Notes
    -----
    notes/isometry.md.  The eigenvalue 0 carries P(φ'(h) = 0) (relu: 1/2).

    References
    ----------
    Pennington, Schoenholz & Ganguli 2017, arXiv:1711.04735, eqs. 8–17.
    Pennington, Schoenholz & Ganguli 2018, arXiv:1802.09979.

    Examples
    --------
    >>> s = jacobian_spectrum("relu", 2 ** 0.5, 0.0, depth=10, weights="orthogonal")
    >>> round(float(s.m1), 12), round(float(s.spread), 12)
    (1.0, 10.0)
    """
    mf, depth, weights = _spectrum_iv(spec, sigma_w, sigma_b, depth, weights)
    return JacobianSpectrum(mf, depth, weights)


# ---------------------------------------------------------------- isometry settings


@dataclass(frozen=True)
class IsometrySettings:
    """(σw, σb) on the critical line minimizing σ²_{JJᵀ}/m1² at the given depth.

    ``spread`` is that minimum (L(μ2/μ1² − 1 + s)); ``q_star`` the fixed point; ``scan``
    the (σb, σw, q*, spread) rows examined; ``limit`` as in :class:`CriticalPoint`."""

    sigma_w: Value
    sigma_b: float
    q_star: Value | None
    spread: Value
    depth: int
    weights: str
    scan: tuple
    limit: str | None = None

    act: object = None

    @property
    def spectrum(self) -> JacobianSpectrum:
        """The full :class:`JacobianSpectrum` at these settings."""
        return jacobian_spectrum(self.act, float(self.sigma_w), self.sigma_b,
                                 self.depth, self.weights)


def _spread_at(act, q, depth, weights):
    """(L(μ2/μ1² − 1 + s), its error) at fixed point q; σw cancels in μ2/μ1²."""
    s = 1.0 if weights == "gaussian" else 0.0
    if q == 0.0:
        from ..maps.activation import derivative_of, one_sided_at_zero
        a, b = one_sided_at_zero(derivative_of(act))
        m1, m2 = (a * a + b * b) / 2, (a ** 4 + b ** 4) / 2
        return depth * (m2 / (m1 * m1) - 1.0 + s), 4e-16 * depth * (m2 / (m1 * m1) + s)
    (m1, e1), (m2, e2) = _d2_moment(act, q, 1.0, 1), _d2_moment(act, q, 1.0, 2)
    r = m2 / (m1 * m1)
    return depth * (r - 1.0 + s), depth * (e2 / (m1 * m1) + 2 * r * e1 / m1 + 4e-16 * (r + s))


def _critical_row(act, sb, depth, weights):
    """(σb, CriticalPoint, q*, spread, its error) on the critical line, or None where there
    is no stable critical point at this σb."""
    from ..solve.criticality import critical_sigma_w
    try:
        cp = critical_sigma_w(act, sb)
    except VanishcalcError:          # unstable, not converged, no sign change: no point here
        return None
    q = 0.0 if cp.q_star is None else float(cp.q_star)
    return (sb, cp, q) + _spread_at(act, q, depth, weights)


def isometry_settings(spec, depth, weights="orthogonal", sigma_b_values=None):
    """The critical (σw, σb) whose Jacobian spectrum is narrowest at depth L.

    On the critical line (χ1 = 1, :func:`~vanishcalc.solve.criticality.critical_sigma_w`)
    m1 = 1 at every depth and σ²_{JJᵀ} = L(μ2/μ1² − 1 + s); the σb minimizing μ2/μ1² is
    found on a scan and, when the minimum is inside the scan, refined by a bounded
    minimization in log σb between its neighbours.  For tanh that is σb → 0, q* → 0, where
    D → 1 and orthogonal W reach isometry (spread → 0); relu's spread is L (orthogonal) or
    2L (Gaussian) at its only critical point.

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ.
    depth : int
        L ≥ 1.
    weights : {"orthogonal", "gaussian"}
    sigma_b_values : sequence of float, optional
        The σb scanned (default 0 and 40 values in [1e-4, 2]).

    Returns
    -------
    IsometrySettings
        ``sigma_w``, ``sigma_b``, ``q_star`` (None for a positively homogeneous φ: every q is
        fixed and the spread does not depend on it), ``spread`` with its error, ``scan``.

    Raises
    ------
    VanishcalcError
        no stable critical point at any σb scanned; bad depth or weights.

    Examples
    --------
    >>> r = isometry_settings("tanh", depth=100, sigma_b_values=[0.0, 0.1])
    >>> r.sigma_b, float(r.spread)
    (0.0, 0.0)
    """
    from scipy.optimize import minimize_scalar
    from ..activation import activation
    depth = integer("isometry_settings", "depth", depth, 1)
    weights = _weights_iv("isometry_settings", weights)
    act = activation(spec)
    if sigma_b_values is None:
        sigma_b_values = np.concatenate([[0.0], np.geomspace(1e-4, 2.0, 40)])
    # each entry through real() (a string or None gets its message, not numpy's ValueError)
    raw = np.atleast_1d(np.asarray(sigma_b_values, dtype=object)).ravel()
    if raw.size == 0:
        raise VanishcalcError("isometry_settings: sigma_b_values is empty; pass None (the "
                              "default scan of σb ∈ {0} ∪ [1e-4, 2]) or a list of σb ≥ 0")
    sbs = sorted(real("isometry_settings", "sigma_b", v, nonneg=True) for v in raw)
    rows = [r for r in (_critical_row(act, sb, depth, weights) for sb in sbs) if r is not None]
    if not rows:
        raise VanishcalcError(f"isometry_settings: φ = {act.name} has no stable critical point "
                              f"at the σb scanned ({sbs[0]:g} … {sbs[-1]:g}); see "
                              "critical_sigma_w for where its critical line is stable")
    i = min(range(len(rows)), key=lambda j: rows[j][3])
    best = rows[i]
    if 0 < i < len(rows) - 1 and rows[i - 1][0] > 0:
        lo, hi = math.log(rows[i - 1][0]), math.log(rows[i + 1][0])
        cache = {}

        def spread(t):
            r = _critical_row(act, math.exp(t), depth, weights)
            cache[t] = r
            return math.inf if r is None else r[3]
        res = minimize_scalar(spread, bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-6, "maxiter": 60})
        r = cache.get(res.x)
        if r is not None and r[3] < best[3]:
            best = r
    sb, cp, q, spr, err = best
    qv = None if cp.q_star is None else cp.q_star
    return IsometrySettings(sigma_w=cp.sigma_w, sigma_b=sb, q_star=qv,
                            spread=Value(spr, error=err, error_kind="estimate",
                                         method="isometry:critical-line-minimum"),
                            depth=depth, weights=weights,
                            scan=tuple((r[0], float(r[1].sigma_w), r[2], r[3]) for r in rows),
                            limit=cp.limit, act=act)
