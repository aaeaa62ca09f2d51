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

Only stable points count: a root is kept when the q-map slope there,
σw² d/dq E[φ(√q z)²] = E[(z² − 1)φ(√q* z)²]/(2q* E[φ'(√q* z)²]), is below 1, since a deep
network settles only at a fixed point that attracts.  silu/swish and gelu violate this at
small σb (slope up to 1.1): there the χ1 = 1 point is unstable and the network ends at
another fixed point (ordered) or diverges.  The slope crosses 1 at a saddle-node of the
q-map on the line (silu: q* ≈ 14, σb ≈ 0.75); the errors name it (Hayou, Doucet & Rousseau
2019 on Swish).  Tiny q* use the series of φ² at 0 (vanishcalc.maps.activation).
"""
from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import sympy
from scipy.optimize import brentq

from ..activation import activation
from ..errors import NotConvergedError, VanishcalcError, VanishcalcWarning
from ..gaussian import bivariate as _bv
from ..gaussian.numeric import GAUSS, KRONROD, NODES, std_normal_pdf
from ..maps.activation import (derivative_of, second_moment, second_moment_slope_with_error,
                               second_moment_with_error)
from ..validate import integer, real
from ..value import Value
from ..budget import memory_limit, require_memory

__all__ = ["critical_sigma_w", "critical_line", "phase_diagram", "CriticalPoint", "CriticalLine",
           "PhaseDiagram", "UnstableCriticalPointError"]


@dataclass(frozen=True)
class CriticalPoint:
    """σw with χ1 = 1 at the given σb, the fixed point q* there, and the q-map's slope at q*.

    ``q_star`` is None when every q is a fixed point (positively homogeneous φ at σb = 0).
    ``q_slope`` is ∂q'/∂q at q* = σw² d/dq E[φ(√q z)²]: below 1 in magnitude the fixed
    point attracts nearby q, so a deep network settles there; :func:`critical_sigma_w`
    returns no other kind.
    It is exactly 1 (marginal) for the two limits that are still reached: every q of a
    positively homogeneous φ, and q* = 0 at σb = 0 when q decays to 0 from above (tanh: like
    1/(2l)).  ``limit`` names those ("homogeneous", "q*=0"), else None."""

    sigma_w: Value
    sigma_b: float
    q_star: Value | None
    q_slope: Value | None = None
    limit: str | None = None

    def __iter__(self):            # σw, q* = critical_sigma_w(...)
        return iter((self.sigma_w, self.q_star))


@dataclass(frozen=True)
class CriticalLine:
    """σw, q* and the q-map slope at q* (< 1: stable; 1 in the two marginal limits of
    :class:`CriticalPoint`) for each σb."""

    sigma_b: np.ndarray
    sigma_w: np.ndarray
    q_star: np.ndarray
    q_slope: np.ndarray | None = None


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
    sw2, sb2, _ = _line_with_error(act, q)
    return sw2, sb2


def _line_with_error(act, q):
    """(σw², σb², error of σb²) on the critical line at fixed point q > 0."""
    d2, e_d2 = second_moment_with_error(derivative_of(act), q)
    if d2 == 0.0:
        raise VanishcalcError(f"critical_sigma_w: E[φ'(√q z)²] = 0 at q = {q:g} for φ = {act.name} "
                              "(φ is constant there): χ1 = 0 for every σw, no critical point")
    m2, e_m2 = second_moment_with_error(act, q)
    sw2 = 1.0 / d2
    sb2 = q - sw2 * m2
    # σb² = q − E[φ²]/E[φ'²]: first-order propagation of both errors, plus the rounding of
    # the difference (a few ulp of its larger term)
    err = sw2 * e_m2 + sw2 * m2 * e_d2 / d2 + 4 * np.finfo(float).eps * max(q, sw2 * m2)
    return sw2, sb2, err


def _line_slope(act, q):
    """(q-map slope σw² d/dq E[φ²], its error) on the critical line at q."""
    d2, e_d2 = second_moment_with_error(derivative_of(act), q)
    ds, e_ds = second_moment_slope_with_error(act, q)
    slope = ds / d2
    return slope, abs(slope) * (e_ds / max(abs(ds), 1e-300) + e_d2 / d2) + 4e-16 * abs(slope)


#: |q-map slope − 1| below this is "marginal": neither certified stable nor unstable.
MARGINAL = 1e-9
#: The q* range scanned for critical points (log grid, then Brent).  Beyond q* = 1e6 (a
#: pre-activation std of 1000) a unit-width feature of φ is 1e-3 wide in z, finer than the
#: quadrature's panels resolve (gelu there came out as relu, with a false root at q* = 3e6).
Q_SCAN = (1e-8, 1e6, 57)


def _homogeneous_point(act, ab, sb):
    a, b = (float(v) for v in ab)
    if a == 0 and b == 0:
        raise VanishcalcError(f"critical_sigma_w: φ = {act.name} is zero; no critical point")
    if sb > 0:
        raise VanishcalcError(
            f"critical_sigma_w: φ = {act.name} is positively homogeneous, so σb²(q*) ≡ 0 on "
            f"the critical line; the line is the single point σw = √(2/(a²+b²)) = "
            f"{math.sqrt(2 / (a * a + b * b)):.6g}, σb = 0 — pass sigma_b=0")
    sw = Value.from_exact(sympy.sqrt(2 / (ab[0] ** 2 + ab[1] ** 2)), method="exact:homogeneous")
    # σw² E[φ(√q z)²] = q for every q: the q-map is the identity, slope exactly 1
    return CriticalPoint(sw, 0.0, None, Value.from_exact(sympy.Integer(1),
                                                         method="exact:homogeneous"),
                         limit="homogeneous")


def _zero_limit_point(act):
    """σb = 0, φ(0) = 0: χ1 = 1 only as q* → 0, at σw0 = 1/√lim E[φ'(√q z)²].  Slope 1 there;
    kept when q decays to 0 from above at σw0 (q-map below the diagonal for small q > 0)."""
    d0 = math.sqrt(second_moment(derivative_of(act), 0.0))
    if d0 == 0:
        raise VanishcalcError(f"critical_sigma_w: φ'(0) = 0 for {act.name}; no critical "
                              "point at σb = 0")
    sw2 = 1.0 / (d0 * d0)
    drift = None
    for q in (1e-3, 1e-2, 1e-1):
        m2, e = second_moment_with_error(act, q)
        dev = sw2 * m2 / q - 1.0          # Q(q)/q − 1 at σw0
        if abs(dev) > 1e3 * (sw2 * e / q + 1e-15):
            drift = (q, dev)
            break
    sw = Value(1.0 / d0, error=1e-16 / d0, method="critical:q*=0")
    # no measurable drift (relu6, hardtanh-like φ that are linear near 0): every small q is
    # (nearly) fixed, as for a homogeneous φ — kept, like that case
    if drift is not None and drift[1] > 0:
        where = ("" if drift is None else
                 f": at σw = {1 / d0:.6g} the q-map lies above the diagonal near 0 "
                 f"(q'/q − 1 = {drift[1]:+.3g} at q = {drift[0]:g}), so q grows away from 0")
        raise UnstableCriticalPointError(
            f"critical_sigma_w: φ = {act.name} has no stable critical point at σb = 0. χ1 = 1 "
            f"only in the limit q* = 0 (σw = {1 / d0:.6g}), and that fixed point repels{where}; "
            f"{_stable_range_text(act)}")
    return CriticalPoint(sw, 0.0, Value(0.0, exact=0, error=0.0, method="critical:q*=0"),
                         Value(1.0, exact=1, error=0.0, method="critical:q*=0"), limit="q*=0")


class UnstableCriticalPointError(VanishcalcError):
    """Every χ1 = 1 fixed point at the requested σb is unstable (|q-map slope| > 1)."""


#: The coarser grid the error messages describe the line on (stable range, saddle-nodes).
Q_COARSE = (1e-2, 1e6, 17)


@functools.lru_cache(maxsize=16384)
def _row(act, q):
    """(q, σw², σb², error of σb², slope, its error) on the critical line at q; None where a
    moment does not converge."""
    try:
        sw2, sb2, err = _line_with_error(act, q)
        slope, e_slope = _line_slope(act, q)
    except NotConvergedError:
        return None
    return (q, sw2, sb2, err, slope, e_slope)


def _scan(act, grid=Q_SCAN):
    """Rows (:func:`_row`) of the critical line on a log grid, lazily, in increasing q.

    The scan stops where φ or φ' overflows (huge q); a failure at the first point (φ
    unusable: jumps, constant) is raised."""
    first = True
    for q in np.logspace(math.log10(grid[0]), math.log10(grid[1]), grid[2]):
        try:
            r = _row(act, float(q))
        except VanishcalcError:
            if first:
                raise
            return
        first = False
        yield r


@functools.lru_cache(maxsize=256)
def _saddle_nodes(act):
    """Points of the critical line where the q-map slope crosses +1 (a saddle-node, or fold:
    two fixed points merge) or −1 (a period doubling): (q*, σw, σb, slope ±1) each."""
    rows = [r for r in _scan(act, Q_COARSE) if r is not None]
    out = []
    for r0, r1 in zip(rows[:-1], rows[1:]):
        for edge in (1.0, -1.0):
            if (r0[4] < edge) != (r1[4] < edge):
                try:
                    qc = brentq(lambda t: _line_slope(act, t)[0] - edge, r0[0], r1[0],
                                rtol=1e-10)
                    sw2, sb2 = _line_at(act, qc)
                except (VanishcalcError, ValueError):
                    continue
                out.append((qc, math.sqrt(sw2), math.sqrt(max(sb2, 0.0)), edge))
    return tuple(out)


def _stable_range_text(act):
    """Where on the critical line fixed points are stable, for error messages (on the
    coarse grid Q_COARSE: a description, not a certified range)."""
    rows = [r for r in _scan(act, Q_COARSE) if r is not None]
    sn = _saddle_nodes(act)
    stable = [r for r in rows if abs(r[4]) < 1.0 - MARGINAL and r[2] >= 0]
    cite = ("(Hayou, Doucet & Rousseau 2019, 'On the impact of the activation function on deep "
            "neural networks training', discuss this for Swish's edge of chaos)")
    fold = "; ".join(f"{'saddle-node (fold)' if e > 0 else 'period doubling'} at q* = {q:.4g}, "
                     f"σw = {w:.6g}, σb = {b:.4g}" for q, w, b, e in sn)
    fold = (f"along the critical line the fixed point changes stability where the q-map slope "
            f"reaches ±1: {fold}" if sn else "")
    if not stable:
        return (f"no point of the critical line with q* in [{Q_COARSE[0]:g}, {rows[-1][0]:.3g}] "
                f"is stable {cite}" + (f"; {fold}" if fold else ""))
    # the saddle-nodes bound the stable stretches of the line
    sbs = [math.sqrt(r[2]) for r in stable] + [b for _, _, b, _ in sn]
    return (f"{fold}; stable critical points (|q-map slope| < 1) lie at σb in about "
            f"[{min(sbs):.4g}, {max(sbs):.4g}] (q* in [{Q_COARSE[0]:g}, {rows[-1][0]:.3g}] "
            f"scanned) {cite}")


def _root_point(act, sb, target, a, b):
    """The critical point with σb²(q*) = target for q* in the bracket [a, b]."""
    root = brentq(lambda t: _line_at(act, t)[1] - target, a, b,
                  xtol=1e-300, rtol=8.9e-16, maxiter=200)
    sw2, sb2, e_sb2 = _line_with_error(act, root)
    slope, e_slope = _line_slope(act, root)
    d2, e_d2 = second_moment_with_error(derivative_of(act), root)
    dd2, e_dd2 = second_moment_slope_with_error(derivative_of(act), root)
    m2 = second_moment(act, root)
    # dσb²/dq = 1 − slope + σw⁴ E[φ²] dE[φ'²]/dq (differentiate q − E[φ²]/E[φ'²])
    dsb2 = 1.0 - slope + sw2 * sw2 * m2 * dd2
    e_q = (e_sb2 + abs(sb2 - target) + 8.9e-16 * root) / max(abs(dsb2), 1e-300) + 8.9e-16 * root
    sw = math.sqrt(sw2)
    # σw = E[φ'²]^{-1/2}: dσw/dq = −σw³ dE[φ'²]/dq / 2
    e_sw = 0.5 * sw ** 3 * (abs(dd2) * e_q + e_d2) + 2.2e-16 * sw
    return CriticalPoint(
        Value(sw, error=e_sw, error_kind="estimate", method="critical:line-root"), sb,
        Value(root, error=e_q, error_kind="estimate", method="critical:line-root"),
        Value(slope, error=e_slope, error_kind="estimate",
              method="critical:q-map-slope"))


def critical_sigma_w(spec, sigma_b=0.0) -> CriticalPoint:
    """The weight scale σw at which χ1 = σw² E[φ'(√q* z)²] = 1 for bias scale σb, at a
    stable fixed point q* (|q-map slope| < 1: the point a deep network actually settles at).

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ.
    sigma_b : float
        Bias scale σb ≥ 0.

    Returns
    -------
    CriticalPoint
        ``sigma_w``, ``q_star`` and ``q_slope`` (unpacks as ``sw, q = critical_sigma_w(...)``).
        If several stable fixed points have χ1 = 1 at this σb, the one with the smallest q*.

    Raises
    ------
    UnstableCriticalPointError (a VanishcalcError)
        if every χ1 = 1 fixed point at this σb is unstable (silu/swish and gelu at small σb:
        the q-map slope there exceeds 1, so a network moves away to another fixed point or
        diverges).  The message names the saddle-node where stability changes and the σb
        range with stable critical points.
    VanishcalcError
        if φ has no critical point at this σb (relu-like φ at σb > 0; σb beyond the range
        σb²(q*) covers for q* ∈ [1e-8, 1e8]).
    NotConvergedError
        if a root lies where the Gaussian moments cannot be certified.

    References
    ----------
    Schoenholz et al. 2017, arXiv:1611.01232, §3 and Fig. 1; Poole et al. 2016, eq. 8;
    Hayou, Doucet & Rousseau 2019, arXiv:1902.06853 (stability of the edge of chaos; Swish).

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
        return _homogeneous_point(act, ab, sb)
    phi0 = float(act.numpy(np.zeros(1))[0])
    if sb == 0.0 and phi0 == 0.0:
        return _zero_limit_point(act)
    target = sb * sb
    roots, prev, unresolved, last = [], None, False, Q_SCAN[0]
    for r in _scan(act):                   # in increasing q: the first stable root is returned
        if r is None:                      # brackets reach across it (Brent then meets it)
            unresolved = True
            continue
        last = r[0]
        g = r[2] - target
        if abs(g) <= r[3]:                 # sign not certified at this grid point: skip it
            unresolved = True
            continue
        if prev is not None and (g > 0) != (prev[1] > 0):
            p = _root_point(act, sb, target, prev[0], r[0])
            # |slope| < 1: a slope below −1 repels too (q oscillates away: period doubling)
            if abs(float(p.q_slope)) + p.q_slope.error < 1.0 - MARGINAL:
                return p
            roots.append(p)
        prev = (r[0], g)
    if roots:
        pts = "; ".join(f"σw = {float(p.sigma_w):.6g} (q* = {float(p.q_star):.4g}, q-map slope "
                        f"{float(p.q_slope):.4g})" for p in roots)
        raise UnstableCriticalPointError(
            f"critical_sigma_w: φ = {act.name} has no stable critical point at σb = {sb:g}: "
            f"χ1 = 1 at {pts}, but a q-map slope of magnitude ≥ 1 makes the fixed point "
            f"unstable, so a deep "
            f"network never settles there (it moves to another fixed point or diverges); "
            f"{_stable_range_text(act)}")
    if unresolved:
        raise NotConvergedError(
            f"critical_sigma_w: φ = {act.name} at σb = {sb:g}: no critical point found for q* in "
            f"[{Q_SCAN[0]:g}, {last:.3g}], but the Gaussian moments could not be certified at some "
            "q* of the scan, where a root may hide")
    raise VanishcalcError(f"critical_sigma_w: φ = {act.name} has no critical point at σb = {sb:g}: "
                          f"σb²(q*) on the critical line never reaches σb² for q* in "
                          f"[{Q_SCAN[0]:g}, {last:.3g}]")


def critical_line(spec, sigma_b_values) -> CriticalLine:
    """σw, q* and the q-map slope on the critical line χ1 = 1 for each σb in
    ``sigma_b_values``: stable fixed points only (see :func:`critical_sigma_w`, which raises
    :class:`UnstableCriticalPointError` for a σb without one)."""
    act = activation(spec)
    sbs = _grid("critical_line", "sigma_b_values", sigma_b_values, nonneg=True)
    pts = [critical_sigma_w(act, float(s)) for s in sbs]
    return CriticalLine(sigma_b=sbs, sigma_w=np.array([float(p.sigma_w) for p in pts]),
                        q_star=np.array([math.inf if p.q_star is None else float(p.q_star)
                                         for p in pts]),
                        q_slope=np.array([float(p.q_slope) for p in pts]))


# ---------------------------------------------------------------- vectorized phase diagram


@dataclass(frozen=True)
class PhaseDiagram:
    """Grids of shape (len(sigma_w), len(sigma_b)).

    ``status``: 0 fixed point found, 1 q collapsed to 0, 2 q diverged (then q_star = inf and the
    other fields are NaN), 3 not converged within ``max_iter`` iterations (q-map slope near 1,
    e.g. tanh at σw = 1, σb = 0; all fields NaN — ``MeanField`` resolves such points), 4 the
    iteration sits on a fixed point whose q-map slope exceeds 1 in magnitude (unstable: no
    network settles there; fields NaN).  ``q_slope``: ∂q'/∂q at q* (the ξq slope).  ``error``: largest quadrature error estimate met (absolute, in the
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
    q_slope: np.ndarray | None = None


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
    sq = act.power(2, "phi^2")
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


#: Grid points processed together: bounds the (points × quadrature nodes) work arrays.
PHASE_CHUNK = 4096
#: A phase diagram projected to run longer than this (seconds) warns after its first chunk.
PHASE_WARN_S = 60.0


def _phase_memory(n, m, nh, smooth):
    """Bytes phase_diagram needs for n grid points, m quadrature nodes, nh Hermite terms, and
    the chunk size that keeps it there: the outputs (≈ 12 float arrays of n), the Hermite
    table H and its weighted copy (m × (nh+1), smooth φ only), and per chunk ≈ 8 arrays of
    chunk × m and 4 of chunk × (nh+1)."""
    per_point = 8 * (8 * m + 4 * (nh + 1))
    fixed = 8 * 12 * n + (16 * m * (nh + 1) if smooth else 0)
    return fixed, per_point


def phase_diagram(spec, sigma_w_grid, sigma_b_grid, *, n_hermite=60, max_iter=100,
                  progress=None) -> PhaseDiagram:
    """q*, χ1, ξq, ξc (and c*) of the plain network on a σw × σb grid, vectorized.

    Fixed points: safeguarded Newton on r(q) = σw² E[φ(√q z)²] + σb² − q for all grid points
    at once (Newton when r'(q) < 0, otherwise one plain iteration), with the Gaussian means on
    a fixed composite Gauss–Kronrod grid (unit panels in z, kinks as edges); the
    largest |K21 − G10| over the grid is returned as ``error``.  Correlations in the chaotic
    phase use the Mehler (Hermite) expansion E[φ(u1)φ(u2)] = Σ a_n² cⁿ at q*, truncated at
    ``n_hermite`` terms; the neglected mass E[φ²] − Σ a_n² bounds the c-map error (``c_tail``).
    In the ordered phase c* = 1 and χc = χ1.  See notes/mean-field.md for accuracy figures.

    Only stable fixed points are reported: a point whose q-map slope at the converged q
    exceeds 1 gets status 4 (NaN fields).  The grid is processed in chunks of
    ``PHASE_CHUNK`` points (memory stays bounded for any grid size); arguments that cannot
    fit in this machine's memory raise :class:`~vanishcalc.budget.MemoryBudgetError`
    before anything is allocated, and a run projected past a minute warns after its first
    chunk with the expected duration.  ``progress``: a bar over grid points on stderr (None:
    when stderr is a terminal; see :mod:`vanishcalc.progress`).
    """
    act, sw, sb, n_hermite, max_iter = _phase_iv(spec, sigma_w_grid, sigma_b_grid, n_hermite,
                                                 max_iter)
    zmax = _tight_zmax(act, 64.0)
    n = sw.size * sb.size
    m = _batch_nodes(act, np.ones(1), zmax)[0].shape[1]
    fixed, per_point = _phase_memory(n, m, n_hermite, not act.kinks)
    limit = memory_limit()
    chunk = int(min(PHASE_CHUNK, max(1, n), max(1, (0.5 * limit - fixed) // per_point)))
    need = fixed + chunk * per_point
    if need > limit:
        nh_fit = int(max(0, (0.5 * limit - 8 * 12 * n) / (16 * m + 32) - 1))
        require_memory("phase_diagram", need,
                       f"lower n_hermite to at most {nh_fit} (the default is 60), or use a "
                       f"smaller grid than {sw.size} × {sb.size}")
    SW, SB = np.meshgrid(sw, sb, indexing="ij")
    sw2, sb2 = (SW ** 2).ravel(), (SB ** 2).ravel()
    out = {k: np.empty(n) for k in ("q", "chi1", "xi_q", "xi_c", "c", "slope")}
    status = np.empty(n, dtype=int)
    err = tail = 0.0
    t0 = time.perf_counter()
    from ..progress import bar
    meter = bar(n, f"phase diagram {act.name}", progress, unit="point")
    for s0 in range(0, n, chunk):
        sl = slice(s0, min(n, s0 + chunk))
        res = _phase_chunk(act, sw2[sl], sb2[sl], zmax, n_hermite, max_iter)
        meter.update(sl.stop - sl.start)
        for k in out:
            out[k][sl] = res[k]
        status[sl] = res["status"]
        err, tail = max(err, res["error"]), max(tail, res["c_tail"])
        if s0 == 0 and n > chunk:
            projected = (time.perf_counter() - t0) * n / chunk
            if projected > PHASE_WARN_S:
                warnings.warn(f"phase_diagram: {sw.size} × {sb.size} = {n} grid points will take "
                              f"about {projected:.0f} s (measured on the first {chunk}); "
                              "memory stays bounded (chunks)", VanishcalcWarning, stacklevel=2)
    meter.close()
    shape = SW.shape
    ok = status < 2
    nan = np.where(ok, 1.0, np.nan)
    q_star = np.where(ok, out["q"], np.where(status == 2, np.inf, np.nan))
    return PhaseDiagram(sigma_w=sw, sigma_b=sb, q_star=q_star.reshape(shape),
                        chi1=(out["chi1"] * nan).reshape(shape),
                        xi_q=(out["xi_q"] * nan).reshape(shape),
                        xi_c=(out["xi_c"] * nan).reshape(shape),
                        c_star=(out["c"] * nan).reshape(shape),
                        status=status.reshape(shape), error=err, c_tail=tail,
                        q_slope=(out["slope"] * nan).reshape(shape))


def _phase_chunk(act, sw2, sb2, zmax, n_hermite, max_iter):
    """Fixed points, slopes and depth scales for one chunk of grid points (flat arrays)."""
    n = sw2.size
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
    # a fixed point the iteration sits on exactly but that repels (|slope| > 1) is not reached
    unstable = (status == 0) & (np.abs(slope) > 1.0 + 1e-9)
    status[unstable] = 4
    ok = status < 2
    xi_q = _xi(slope)
    c_star = np.ones(n)
    chic = chi1.copy()
    chaotic = ok & (chi1 > 1.0) & (status == 0)
    tail = 0.0
    if np.any(chaotic):
        c_star[chaotic], chic[chaotic], tail = _chaotic_c(act, qs[chaotic], sw2[chaotic],
                                                           sb2[chaotic], e2[chaotic], zmax, n_hermite)
    return dict(q=q, chi1=chi1, xi_q=xi_q, xi_c=_xi(chic), c=c_star, slope=slope, status=status,
                error=err, c_tail=tail)


def _xi(slope):
    a = np.abs(slope)
    with np.errstate(divide="ignore"):
        return np.where(a >= 1.0 - 1e-9, np.inf, np.where(a == 0, 0.0, -1.0 / np.log(a)))


def _chaotic_c(act, q, sw2, sb2, e2, zmax, nh, chunk=512):
    """c* and χc from the Mehler expansion at q*: C(c) = (σw² Σ a_n² cⁿ + σb²)/q*."""
    a2 = mehler_coeffs(act, q, zmax, nh, chunk)
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


def mehler_amplitudes(act, q, zmax, nh, width=0.5):
    """(a, err, inside) for one q > 0: the Hermite amplitudes a_n (n = 0..nh) of φ(√q z) (a_n²
    as in :func:`mehler_coeffs`, here on panels of ``width``), an error estimate of each on
    [−zmax, zmax] (the Kronrod–Gauss difference plus 16 ulp of Σ|φ·h_n·w|), and
    ∫ h_n² dΦ over [−zmax, zmax] (1 − it is the mass of h_n² beyond, for the caller's bound of
    the part of a_n cut off there).  Half-width panels: at width 1 the 10-point Gauss
    rule's own error (the estimate) is 1e-12 for tanh at q = 4, at 0.5 it is 1e-16."""
    qa = np.array([q])
    if not act.kinks:
        z, wk, wg = (a[0] for a in _batch_nodes(act, np.ones(1), zmax, width))
        H = np.empty((z.size, nh + 1))
        H[:, 0], H[:, 1] = 1.0, z
        for k in range(1, nh):
            H[:, k + 1] = (z * H[:, k] - math.sqrt(k) * H[:, k - 1]) / math.sqrt(k + 1)
        f = act.numpy(np.sqrt(qa)[:, None] * z)
        a = (f @ (wk[:, None] * H))[0]
        a_gauss = (f @ (wg[:, None] * H))[0]
        l1 = (np.abs(f) @ (np.abs(wk)[:, None] * np.abs(H)))[0]
        inside = wk @ (H * H)
    else:
        z, wk, wg = _batch_nodes(act, qa, zmax, width)
        f0 = act.numpy(np.sqrt(qa)[:, None] * z)
        f, fg = f0 * wk, f0 * wg
        a, a_gauss, l1, inside = (np.empty(nh + 1) for _ in range(4))
        h_prev, h = np.ones_like(z), z.copy()
        a[0], a_gauss[0], l1[0], inside[0] = f.sum(), fg.sum(), np.abs(f).sum(), wk.sum()
        for k in range(1, nh + 1):
            a[k], a_gauss[k], l1[k] = (f * h).sum(), (fg * h).sum(), np.abs(f * h).sum()
            inside[k] = (wk * h * h).sum()
            h_prev, h = h, (z * h - math.sqrt(k) * h_prev) / math.sqrt(k + 1)
    return a, np.abs(a - a_gauss) + 16 * np.finfo(float).eps * l1, inside


def mehler_coeffs(act, q, zmax, nh, chunk=512):
    """a_n² (n = 0..nh) of φ(√q z) in orthonormal Hermite polynomials, for each q in the
    array ``q``: the Mehler expansion E[φ(√q z1)φ(√q z2)] = Σ a_n² cⁿ at correlation c
    (composite Gauss–Kronrod in z, kinks k/√q as panel edges)."""
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
    return a2
