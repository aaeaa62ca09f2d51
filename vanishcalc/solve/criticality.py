"""The edge of chaos: σw with χ1 = 1, the critical line, and phase diagrams.

Layered: batch Gaussian means on a fixed Gauss–Kronrod grid (``_batch_means``) → the
critical line parameterized by q* (``_line_at``) → solvers (``critical_sigma_w``,
``critical_line``) → the vectorized ``phase_diagram``.

On the critical line χ1 = σw² E[φ'(√q* z)²] = 1 and q* = σw² E[φ(√q* z)²] + σb², so for
each q* > 0 (Schoenholz et al. 2017, §3; notes/mean-field.md):

.. math::

    \\sigma_w^2(q^*) = 1 / E[\\varphi'(\\sqrt{q^*} z)^2],\\qquad
    \\sigma_b^2(q^*) = q^* - \\sigma_w^2(q^*)\\, E[\\varphi(\\sqrt{q^*} z)^2].

A given σb is one 1-D root of σb²(q*) = σb², exact up to the quadrature.  Positively
homogeneous φ (relu, leaky relu, linear: φ = a·x on x < 0, b·x on x > 0) have
σb²(q*) ≡ 0: the line degenerates to the point σw = √(2/(a² + b²)), σb = 0 (relu: √2), where
every q is a fixed point; asking for σb > 0 raises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..activation import activation
from ..errors import VanishcalcError
from ..gaussian import bivariate as _bv
from ..gaussian.numeric import GAUSS, KRONROD, NODES, std_normal_pdf
from ..maps.activation import derivative_of, second_moment
from ..validate import integer, real
from ..value import Value

__all__ = ["critical_sigma_w", "critical_line", "phase_diagram", "CriticalPoint", "CriticalLine",
           "PhaseDiagram"]


@dataclass(frozen=True)
class CriticalPoint:
    """σw with χ1 = 1 at the given σb, and the fixed point q* there.

    ``q_star`` is None when every q is a fixed point (positively homogeneous φ at σb = 0)."""

    sigma_w: Value
    sigma_b: float
    q_star: Value | None

    def __iter__(self):            # σw, q* = critical_sigma_w(...)
        return iter((self.sigma_w, self.q_star))


@dataclass(frozen=True)
class CriticalLine:
    sigma_b: np.ndarray
    sigma_w: np.ndarray
    q_star: np.ndarray


def _grid(where, name, values, **bounds):
    """A 1-D float array of ``values``, each checked by :func:`vanishcalc.validate.real`."""
    arr = np.atleast_1d(np.asarray(values, dtype=object))
    if arr.ndim != 1:
        raise VanishcalcError(f"{where}: {name} must be a number or a 1-D sequence of numbers, "
                              f"got shape {arr.shape}")
    return np.array([real(where, f"{name}[{i}]", v, **bounds) for i, v in enumerate(arr)],
                    dtype=float)


def _line_at(act, q):
    """(σw², σb²) on the critical line at fixed point q > 0."""
    d2 = second_moment(derivative_of(act), q)
    if d2 == 0.0:
        raise VanishcalcError(f"critical_sigma_w: E[φ'(√q z)²] = 0 at q = {q:g} for φ = {act.name} "
                              "(φ is constant there): χ1 = 0 for every σw, no critical point")
    sw2 = 1.0 / d2
    return sw2, q - sw2 * second_moment(act, q)


def critical_sigma_w(spec, sigma_b=0.0) -> CriticalPoint:
    """The weight scale σw at which χ1 = σw² E[φ'(√q* z)²] = 1 for bias scale σb.

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ.
    sigma_b : float
        Bias scale σb ≥ 0.

    Returns
    -------
    CriticalPoint
        ``sigma_w`` and ``q_star`` (unpacks as ``sw, q = critical_sigma_w(...)``).

    Raises
    ------
    VanishcalcError
        if φ has no critical point at this σb (relu-like φ at σb > 0; σb beyond the range
        σb²(q*) covers for q* ∈ [1e-8, 1e8]).

    References
    ----------
    Schoenholz et al. 2017, arXiv:1611.01232, §3 and Fig. 1; Poole et al. 2016, eq. 8.

    Examples
    --------
    >>> sw, q = critical_sigma_w("tanh", sigma_b=0.3)
    >>> round(float(sw), 6)
    1.395584
    """
    act = activation(spec)
    sb = real("critical_sigma_w", "sigma_b", sigma_b, nonneg=True, why="(the bias std)")
    ab = _bv._abrelu(act)
    if ab is not None:
        a, b = (float(v) for v in ab)
        if a == 0 and b == 0:
            raise VanishcalcError(f"critical_sigma_w: φ = {act.name} is zero; no critical point")
        if sb > 0:
            raise VanishcalcError(
                f"critical_sigma_w: φ = {act.name} is positively homogeneous, so σb²(q*) ≡ 0 on "
                f"the critical line; the line is the single point σw = √(2/(a²+b²)) = "
                f"{math.sqrt(2 / (a * a + b * b)):.6g}, σb = 0 — pass sigma_b=0")
        sw = Value.from_exact(__import__("sympy").sqrt(2 / (ab[0] ** 2 + ab[1] ** 2)),
                              method="exact:homogeneous")
        return CriticalPoint(sw, 0.0, None)
    phi0 = float(act.numpy(np.zeros(1))[0])
    if sb == 0.0 and phi0 == 0.0:
        # q* → 0: χ1 → σw²·E[φ'(√q z)²] → σw²·(a² + b²)/2 with a, b the one-sided slopes
        # at 0 (equal unless 0 is a kink, e.g. relu6 behaves like relu there).
        d0 = math.sqrt(second_moment(derivative_of(act), 0.0))
        if d0 == 0:
            raise VanishcalcError(f"critical_sigma_w: φ'(0) = 0 for {act.name}; no critical "
                                  "point at σb = 0")
        return CriticalPoint(Value(1.0 / d0, error=1e-16 / d0, method="critical:q*=0"), 0.0,
                             Value(0.0, exact=0, error=0.0, method="critical:q*=0"))
    target = sb * sb
    qs = np.logspace(-8, 8, 65)
    prev = None
    for q in qs:
        try:
            g = _line_at(act, float(q))[1] - target
        except VanishcalcError:
            if prev is None:          # φ itself is unusable (jumps, constant): say why
                raise
            # the expectations fail far out (overflow of φ or φ' at huge q): stop the scan
            qs = qs[qs < q]
            break
        if prev is not None and (g >= 0) != (prev[1] >= 0):
            root = brentq(lambda t: _line_at(act, t)[1] - target, prev[0], float(q),
                          xtol=1e-300, rtol=8.9e-16, maxiter=200)
            sw2, _ = _line_at(act, root)
            return CriticalPoint(Value(math.sqrt(sw2), error=1e-14 * math.sqrt(sw2),
                                       error_kind="estimate", method="critical:line-root"),
                                 sb, Value(root, error=4e-15 * root, error_kind="estimate",
                                           method="critical:line-root"))
        prev = (float(q), g)
    raise VanishcalcError(f"critical_sigma_w: φ = {act.name} has no critical point at σb = {sb:g}: "
                          f"σb²(q*) on the critical line never reaches σb² for q* in "
                          f"[1e-8, {qs[-1] if len(qs) else 1e-8:.3g}]")


def critical_line(spec, sigma_b_values) -> CriticalLine:
    """σw and q* on the critical line χ1 = 1 for each σb in ``sigma_b_values``."""
    act = activation(spec)
    sbs = _grid("critical_line", "sigma_b_values", sigma_b_values, nonneg=True)
    pts = [critical_sigma_w(act, float(s)) for s in sbs]
    return CriticalLine(sigma_b=sbs, sigma_w=np.array([float(p.sigma_w) for p in pts]),
                        q_star=np.array([math.inf if p.q_star is None else float(p.q_star)
                                         for p in pts]))


# ---------------------------------------------------------------- vectorized phase diagram


@dataclass(frozen=True)
class PhaseDiagram:
    """Grids of shape (len(sigma_w), len(sigma_b)).

    ``status``: 0 fixed point found, 1 q collapsed to 0, 2 q diverged (then q_star = inf and the
    other fields are NaN), 3 not converged within ``max_iter`` iterations (q-map slope near 1,
    e.g. tanh at σw = 1, σb = 0; all fields NaN — ``MeanField`` resolves such points).  ``error``: largest quadrature error estimate met (absolute, in the
    Gaussian means; the Hermite-tail bound for ξc in the chaotic phase is ``c_tail``)."""

    sigma_w: np.ndarray
    sigma_b: np.ndarray
    q_star: np.ndarray
    chi1: np.ndarray
    xi_q: np.ndarray
    xi_c: np.ndarray
    c_star: np.ndarray
    status: np.ndarray
    error: float
    c_tail: float


def _batch_nodes(act, q, zmax, width=1.0):
    """Composite Gauss–Kronrod nodes/weights in z for each q (kinks k/√q are panel edges).

    Returns z (N, M), Kronrod weights×pdf (N, M) and Gauss weights×pdf (N, M)."""
    base = np.arange(-zmax, zmax + 0.5 * width, width)
    base[-1] = zmax
    sq = np.sqrt(q)
    if act.kinks:
        k = np.asarray(act.kinks)
        with np.errstate(divide="ignore"):
            tk = np.clip(k[None, :] / np.maximum(sq[:, None], 1e-300), -zmax, zmax)
        edges = np.sort(np.concatenate([np.broadcast_to(base, (q.size, base.size)), tk], 1), 1)
    else:
        edges = np.broadcast_to(base, (q.size, base.size))
    lo, hi = edges[:, :-1], edges[:, 1:]
    half = 0.5 * (hi - lo)
    z = (0.5 * (lo + hi))[..., None] + half[..., None] * NODES
    pdf = std_normal_pdf(z)
    wk = (half[..., None] * KRONROD * pdf).reshape(q.size, -1)
    wg = (half[..., None] * GAUSS * pdf).reshape(q.size, -1)
    return z.reshape(q.size, -1), wk, wg


def _batch_means(act, q, zmax, derivative=True):
    """E[φ²], d/dq E[φ²], E[φ'²] at each q, and the largest |K − G| error estimate.

    For smooth φ the nodes do not depend on q and the sums are matrix–vector products."""
    if act.kinks:
        z, wk, wg = _batch_nodes(act, q, zmax)
    else:
        z, wk, wg = (a[0] for a in _batch_nodes(act, np.ones(1), zmax))
    x = np.sqrt(q)[:, None] * z
    f2 = act.numpy(x) ** 2
    slope_w = (z * z - 1.0) / (2.0 * np.maximum(q, 1e-300))[:, None] if act.kinks else None
    ys = [f2, None]
    if derivative:
        ys.append(derivative_of(act).numpy(x) ** 2)
    out, err = [], 0.0
    for i, y in enumerate(ys):
        if i == 1:
            if act.kinks:
                k, g = (f2 * slope_w * wk).sum(1), (f2 * slope_w * wg).sum(1)
            else:
                zz = (z * z - 1.0)
                k = (f2 @ (zz * wk)) / (2.0 * np.maximum(q, 1e-300))
                g = (f2 @ (zz * wg)) / (2.0 * np.maximum(q, 1e-300))
        elif act.kinks:
            k, g = (y * wk).sum(1), (y * wg).sum(1)
        else:
            k, g = y @ wk, y @ wg
        out.append(k)
        err = max(err, float(np.max(np.abs(k - g), initial=0.0)))
    if not derivative:
        out.append(None)
    return out[0], out[1], out[2], err


def _tight_zmax(act, q):
    """Smallest z (step 0.5, ≥ 7) beyond which log|φ(√q z)|² − z²/2 stays 40 nats below its
    peak at the probe points z, 2z, 4z, … — the tail plan of vanishcalc.gaussian.tails on a
    finer grid."""
    from ..gaussian.tails import _log_integrand
    sq = act.map(lambda e: e ** 2, "phi^2")
    zmax = _bv._z_max(act, q)
    peak = max(_log_integrand(sq, q, z) for z in np.arange(-zmax, zmax + 0.25, 0.25))
    for z in np.arange(7.0, zmax, 0.5):
        probes = [z * 2 ** k for k in range(4)] + [zmax]
        if all(_log_integrand(sq, q, s * t) <= peak - 40 for t in probes for s in (1, -1)):
            return float(z)
    return zmax


def _phase_iv(spec, sigma_w_grid, sigma_b_grid, n_hermite, max_iter):
    w = "phase_diagram"
    return (activation(spec), _grid(w, "sigma_w_grid", sigma_w_grid, positive=True),
            _grid(w, "sigma_b_grid", sigma_b_grid, nonneg=True),
            integer(w, "n_hermite", n_hermite, 1), integer(w, "max_iter", max_iter, 1))


def phase_diagram(spec, sigma_w_grid, sigma_b_grid, *, n_hermite=60, max_iter=100) -> PhaseDiagram:
    """q*, χ1, ξq, ξc (and c*) of the plain network on a σw × σb grid, vectorized.

    Fixed points: safeguarded Newton on r(q) = σw² E[φ(√q z)²] + σb² − q for all grid points
    at once (Newton when r'(q) < 0, otherwise one plain iteration), with the Gaussian means on
    a fixed composite Gauss–Kronrod grid (unit panels in z, kinks as edges); the
    largest |K21 − G10| over the grid is returned as ``error``.  Correlations in the chaotic
    phase use the Mehler (Hermite) expansion E[φ(u1)φ(u2)] = Σ a_n² cⁿ at q*, truncated at
    ``n_hermite`` terms; the neglected mass E[φ²] − Σ a_n² bounds the c-map error (``c_tail``).
    In the ordered phase c* = 1 and χc = χ1.  See notes/mean-field.md for accuracy figures.
    """
    act, sw, sb, n_hermite, max_iter = _phase_iv(spec, sigma_w_grid, sigma_b_grid, n_hermite,
                                                 max_iter)
    SW, SB = np.meshgrid(sw, sb, indexing="ij")
    sw2, sb2 = (SW ** 2).ravel(), (SB ** 2).ravel()
    n = sw2.size
    zmax = _tight_zmax(act, 64.0)
    q = np.ones(n)
    status = np.zeros(n, dtype=int)
    active = np.ones(n, dtype=bool)
    for _ in range(max_iter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        e2, de2, _, _ = _batch_means(act, q[idx], zmax, derivative=False)
        qn = sw2[idx] * e2 + sb2[idx]
        r = qn - q[idx]
        rp = sw2[idx] * de2 - 1.0
        newton = q[idx] - r / np.where(rp < -1e-3, rp, -1.0)
        step = np.where((rp < -1e-3) & (newton > 0), newton, qn)
        done = np.abs(r) <= 1e-14 * np.maximum(q[idx], 1e-300)
        coll = (step < 1e-13) & (sb2[idx] == 0)
        div = ~np.isfinite(step) | (step > 1e10)
        step = np.where(done, q[idx], step)
        q[idx] = np.where(coll, 0.0, np.where(div, np.inf, step))
        status[idx[coll]] = 1
        status[idx[div]] = 2
        active[idx[done | coll | div]] = False
    status[active] = 3                 # still moving after max_iter: no fixed point to report
    ok = status < 2
    qs = np.where(ok, q, 1.0)
    e2, de2, d2, err = _batch_means(act, qs, zmax)
    chi1 = sw2 * d2
    slope = sw2 * de2
    if np.any(status == 1):
        # q* = 0: both slopes are σw² lim_{q→0} E[φ'(√q z)²] (φ(0) = 0 there; at a kink of φ
        # at 0 the mean of the one-sided φ'(0±)², e.g. 1/2 for relu)
        m0 = sw2 * second_moment(derivative_of(act), 0.0)
        chi1 = np.where(status == 1, m0, chi1)
        slope = np.where(status == 1, m0, slope)
    xi_q = _xi(slope)
    c_star = np.ones(n)
    chic = chi1.copy()
    chaotic = ok & (chi1 > 1.0) & (status == 0)
    tail = 0.0
    if np.any(chaotic):
        c_star[chaotic], chic[chaotic], tail = _chaotic_c(act, qs[chaotic], sw2[chaotic],
                                                           sb2[chaotic], e2[chaotic], zmax, n_hermite)
    xi_c = _xi(chic)
    shape = SW.shape
    nan = np.where(ok, 1.0, np.nan)
    q_star = np.where(ok, q, np.where(status == 2, np.inf, np.nan))
    return PhaseDiagram(sigma_w=sw, sigma_b=sb, q_star=q_star.reshape(shape),
                        chi1=(chi1 * nan).reshape(shape), xi_q=(xi_q * nan).reshape(shape),
                        xi_c=(xi_c * nan).reshape(shape), c_star=(c_star * nan).reshape(shape),
                        status=status.reshape(shape), error=err, c_tail=tail)


def _xi(slope):
    a = np.abs(slope)
    with np.errstate(divide="ignore"):
        return np.where(a >= 1.0 - 1e-9, np.inf, np.where(a == 0, 0.0, -1.0 / np.log(a)))


def _chaotic_c(act, q, sw2, sb2, e2, zmax, nh, chunk=512):
    """c* and χc from the Mehler expansion at q*: C(c) = (σw² Σ a_n² cⁿ + σb²)/q*."""
    a2 = np.empty((q.size, nh + 1))
    if not act.kinks:
        z, wk, _ = (a[0] for a in _batch_nodes(act, np.ones(1), zmax))
        H = np.empty((z.size, nh + 1))
        H[:, 0], H[:, 1] = 1.0, z
        for k in range(1, nh):
            H[:, k + 1] = (z * H[:, k] - math.sqrt(k) * H[:, k - 1]) / math.sqrt(k + 1)
        a2[:] = (act.numpy(np.sqrt(q)[:, None] * z) @ (wk[:, None] * H)) ** 2
    for s in range(0, q.size if act.kinks else 0, chunk):
        qq = q[s:s + chunk]
        z, wk, _ = _batch_nodes(act, qq, zmax)
        f = act.numpy(np.sqrt(qq)[:, None] * z) * wk
        h_prev, h = np.ones_like(z), z.copy()
        a2[s:s + chunk, 0] = f.sum(1) ** 2
        for k in range(1, nh + 1):
            a2[s:s + chunk, k] = (f * h).sum(1) ** 2
            h_prev, h = h, (z * h - math.sqrt(k) * h_prev) / math.sqrt(k + 1)
    tail = float(np.max(np.maximum(e2 - a2.sum(1), 0.0) * sw2 / q, initial=0.0))
    ks = np.arange(nh + 1)
    c = np.full(q.size, 0.5)
    for _ in range(200):
        pw = c[:, None] ** ks
        C = (sw2 * (a2 * pw).sum(1) + sb2) / q
        dC = sw2 * (a2[:, 1:] * ks[1:] * c[:, None] ** (ks[1:] - 1)).sum(1) / q
        r = C - c
        # Newton where the map contracts, its step capped at 4× the plain-iteration step
        # (uncapped steps can jump past c* onto the unstable fixed points c = ±1).
        step = np.where(dC < 1 - 1e-3, -r / np.where(dC < 1 - 1e-3, dC - 1.0, -1.0), r)
        step = np.clip(step, -4 * np.abs(r), 4 * np.abs(r))
        new = np.clip(c + step, -1.0 + 1e-15, 1.0 - 1e-15)
        if np.max(np.abs(new - c)) < 1e-15:
            c = new
            break
        c = new
    dC = sw2 * (a2[:, 1:] * ks[1:] * c[:, None] ** (ks[1:] - 1)).sum(1) / q
    return c, dC, tail
