"""Vectorized adaptive Gauss–Kronrod quadrature with an error estimate.

All panels are evaluated in one numpy call per refinement round, so a typical Gaussian
expectation costs a handful of vectorized calls instead of thousands of Python-level
function calls (``scipy.integrate.quad``).  The rule is QUADPACK's 21-point Kronrod
extension of the 10-point Gauss rule; each panel's error estimate is |K21 − G10|, which
for smooth integrands is far larger than the error of the K21 value we return (a
conservative estimate, but not a rigorous bound: see notes/gaussian-expectations.md).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import NonFiniteError, NotConvergedError

# QUADPACK qk21 abscissae (positive half, descending) and weights.
_XGK = np.array([
    0.995657163025808080735527280689003, 0.973906528517171720077964012084452,
    0.930157491355708226001207180059508, 0.865063366688984510732096688423493,
    0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
    0.562757134668604683339000099272694, 0.433395394129247190799265943165784,
    0.294392862701460198131126603103866, 0.148874338981631210884826001129720,
    0.000000000000000000000000000000000])
_WGK = np.array([
    0.011694638867371874278064396062192, 0.032558162307964727478818972459390,
    0.054755896574351996031381300244580, 0.075039674810919952767043140916190,
    0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
    0.123491976262065851077958109831074, 0.134709217311473325928054001771707,
    0.142775938577060080797094273138717, 0.147739104901338491374841515972068,
    0.149445554002916905664936468389821])
_WG = np.array([
    0.066671344308688137593568809893332, 0.149451349150580593145776339657697,
    0.219086362515982043995534934228163, 0.269266719309996355091226921569469,
    0.295524224714752870173892994651338])

# Full 21-point node set on [-1, 1] and the matching weights.
NODES = np.concatenate([-_XGK[:-1], _XGK[::-1]])
KRONROD = np.concatenate([_WGK[:-1], _WGK[::-1]])
GAUSS = np.zeros(21)
# Gauss nodes are the odd-indexed Kronrod abscissae (0.9739…, 0.8650…, …).
_gauss_pos = _XGK[1::2]
for w, xg in zip(_WG, _gauss_pos):
    GAUSS[np.isclose(NODES, xg)] = w
    GAUSS[np.isclose(NODES, -xg)] = w

EPS = np.finfo(float).eps
_G10_NODES = NODES[GAUSS > 0]
_G10_WEIGHTS = GAUSS[GAUSS > 0]


def adaptive_gk(g, edges, *, rtol=1e-14, atol=0.0, max_panels=20000, max_rounds=60,
                label="integrand", second_rule=False):
    """Integrate a vectorized ``g`` over [edges[0], edges[-1]] split at ``edges``.

    Parameters
    ----------
    g : callable
        Vectorized integrand; takes and returns float arrays of the same shape.
    edges : sequence of float
        Sorted panel edges; put kinks here so no panel straddles one.
    rtol, atol : float
        Stop when the summed error estimate is ≤ max(atol, rtol·∫|g|).
    label : str
        What is being integrated, for error messages (e.g. "E[tanh(√q z)²] at q = 2").
    second_rule : bool
        Take each panel's error as at least its disagreement with an independent second
        rule (``_split_gauss``); costs 20 more evaluations per panel.

    Returns
    -------
    value, error, l1 : float
        The Kronrod sum, the summed error estimate (with a rounding floor), and ∫|g|.

    Raises
    ------
    NotConvergedError
        carrying ``(value, error)`` in ``best`` when the panel budget runs out.
    NonFiniteError
        when the integrand is not finite at a node.
    """
    lo = np.asarray(edges[:-1], dtype=float)
    hi = np.asarray(edges[1:], dtype=float)
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    done_val = 0.0
    done_err = 0.0
    done_l1 = 0.0
    done_cond = 0.0
    history = []
    for rounds in range(1, max_rounds + 1):
        half = 0.5 * (hi - lo)
        mid = 0.5 * (hi + lo)
        x = mid[:, None] + half[:, None] * NODES[None, :]
        y = _evaluate(g, x, label)
        kron = half * (y @ KRONROD)
        gauss = half * (y @ GAUSS)
        l1 = half * (np.abs(y) @ KRONROD)
        # |K − G| plus a rounding floor of 16 ulp of the panel's ∫|g|: 21-term dot products
        # accumulate ~√21 ulp, and exp(−A) carries the rounding of A times A (an ulp of a
        # Gaussian bump's exponent near A = 5 is 5 ulp of the value); QUADPACK's 50 ulp
        # would cap rtol at 1e-14,
        # plus an absolute floor where values are subnormal doubles (q ≈ 1e-320), whose
        # relative precision is far below 53 bits.
        err = np.abs(kron - gauss)
        if second_rule:
            err = np.maximum(err, np.abs(kron - _split_gauss(g, lo, hi, label)))
        err = err + 16 * EPS * l1 + _SUBNORMAL_FLOOR * (hi - lo)
        cond = np.zeros_like(err)
        if second_rule:
            # Reported, and allowed for in the stopping test: more panels cannot lower it,
            # and the second rule's disagreement sits on it where φ is ill-conditioned.
            cond = 8 * _rounding_noise(x, y, half)
        total_l1 = done_l1 + l1.sum()
        target = max(atol, rtol * total_l1)
        total_err = done_err + err.sum()
        history.append(total_err)
        noise = done_cond + cond.sum()
        if total_err <= target + 4 * noise:
            return done_val + kron.sum(), total_err + noise, total_l1
        # Panels already good enough for their share of the target are retired.  The share
        # follows both the panel's length and its ∫|g|: a share by length alone is smaller
        # than the rounding floor (∝ ∫|g|) where g is large, and those panels were bisected
        # until the panel budget ran out (E|z|^½ at rtol 1e-14 never converged).
        share = 0.5 * target * ((hi - lo) / max(edges[-1] - edges[0], 1e-300)
                                + l1 / max(total_l1, 1e-300))
        good = err <= 0.5 * share + 4 * cond
        done_val += kron[good].sum()
        done_err += err[good].sum()
        done_l1 += l1[good].sum()
        done_cond += cond[good].sum()
        lo, hi = lo[~good], hi[~good]
        if lo.size == 0:
            return done_val, done_err + done_cond, done_l1
        if 2 * lo.size > max_panels:
            break
        # Four bisection rounds that did not halve a small error: the estimate sits on the
        # rounding noise of g itself (exp(x) − 1 at x ~ 1e-4 loses 4 digits), and more
        # panels will not lower it.  Stop now; the caller decides whether it is good enough.
        if rounds >= 5 and total_err > 0.5 * history[-5] and total_err <= 1e-6 * total_l1:
            break
        mid = 0.5 * (lo + hi)
        lo, hi = np.concatenate([lo, mid]), np.concatenate([mid, hi])
    # The panels retired in the last round are in done_*; the rest were still open.
    value = done_val + kron[~good].sum()
    error = done_err + err[~good].sum() + done_cond + cond[~good].sum()
    l1 = l1[~good]
    exc = NotConvergedError(
        f"quadrature of {label} did not reach the tolerance: error estimate {error:.3g} "
        f"for value {value:.6g} after {rounds} rounds",
        best=(value, error))
    exc.l1 = done_l1 + l1.sum()
    raise exc


# Absolute error of one subnormal double operation is half of 2^-1074; a few operations per
# value and the Gaussian weight's own rounding stay below this per unit length of z.
_SUBNORMAL_FLOOR = 64 * 2.0 ** -1074
# The second rule splits every final panel at this fraction (not the midpoint, so that no
# node of it coincides with a Kronrod node of the first rule or of its bisections).
_SPLIT = (math.sqrt(5) - 1) / 2


def _evaluate(g, x, label):
    with np.errstate(all="ignore"):
        y = np.asarray(g(x), dtype=float)
    if not np.all(np.isfinite(y)):
        bad = x[~np.isfinite(y)][0]
        raise NonFiniteError(f"{label} is not finite at z = {bad:.6g} (an overflow: "
                             "lower σw, q or the depth)")
    return y


def _rounding_noise(x, y, half):
    """Per panel: the absolute error the values y(x) carry from rounding, integrated.

    A node's x is off by an ulp of x, which moves y by |x·y'|·ε (an off-centre bump
    exp(−1e6(x − 3)²): x − 3 keeps only the digits of 3 that a double has); and a value
    computed as exp(A) carries |A|·ε relative error, |A| ≈ |log y| (a Gaussian weight at
    z = 12).  Summed as ε·(Σ|x̄·Δy| + ∫|y·log|y||), from the node values.
    """
    with np.errstate(all="ignore"):
        mid = 0.5 * np.abs(x[:, 1:] + x[:, :-1])
        shift = (mid * np.abs(np.diff(y, axis=1))).sum(axis=1)
        ay = np.abs(y)
        expo = half * ((ay * np.abs(np.log(np.where(ay > 0, ay, 1.0)))) @ KRONROD)
        noise = EPS * (shift + expo)
    return np.where(np.isfinite(noise), noise, 0.0)


def _split_gauss(g, lo, hi, label):
    """The second rule: G10 on each panel split unevenly in two (per-panel values).

    Its 20 nodes differ from every node of the K21/G10 pair, so a feature that the first
    rule resolved only by luck (or wrongly) moves the two apart, and a panel where they
    disagree is bisected like one where K21 and G10 disagree.
    """
    cut = lo + _SPLIT * (hi - lo)
    a = np.concatenate([lo, cut])
    b = np.concatenate([cut, hi])
    half = 0.5 * (b - a)
    x = (0.5 * (a + b))[:, None] + half[:, None] * _G10_NODES[None, :]
    parts = half * (_evaluate(g, x, label) @ _G10_WEIGHTS)
    return parts[:lo.size] + parts[lo.size:]


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def std_normal_pdf(z):
    return _INV_SQRT_2PI * np.exp(-0.5 * z * z)


def panel_edges(z_max, breaks, width=2.0):
    """Edges on [−z_max, z_max]: uniform panels of at most ``width`` plus every break inside."""
    n = max(2, int(math.ceil(2 * z_max / width)))
    grid = np.linspace(-z_max, z_max, n + 1)
    inner = [b for b in breaks if -z_max < b < z_max]
    return np.unique(np.concatenate([grid, np.asarray(inner, dtype=float)]))
