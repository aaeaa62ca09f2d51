"""Residual nets and dropout: the branch scale α for a depth, q's growth law, ξc(keep).

Layered: one block per placement (``residual_block``) → its per-layer moments along the
single-input trajectory (``_trajectory``) → solvers ``residual_alpha`` (the largest α whose
first-to-last gradient ratio stays within a target), ``residual_growth`` (how q grows with
depth: constant / linear / polynomial / geometric) and ``dropout_xi_c`` (the correlation depth
scale as a function of the keep rate).  Derivations: notes/residual.md, notes/dropout.md.

Blocks (σw₁ = ``sigma_w``, σw₂ = ``sigma_w2`` or σw₁, σb on both Dense layers):

* ``"none"``: h' = h + α·Dense₂(φ(Dense₁(h)))  (Yang & Schoenholz 2017's full residual net);
* ``"pre"``:  h' = h + α·Dense₂(φ(Dense₁(LN(h))));
* ``"post"``: h' = LN(h + α·Dense₂(φ(Dense₁(h)))).

References
----------
G. Yang, S. Schoenholz, arXiv:1712.08969 (2017).  S. De, S. Smith, arXiv:2002.10444 (2020,
SkipInit).  T. Bachlechner et al., arXiv:2003.04887 (2020, ReZero).  H. Zhang, Y. Dauphin,
T. Ma, arXiv:1901.09321 (2019, Fixup).  S. Schoenholz et al., arXiv:1611.01232 (2017), §5.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..errors import DivergenceError, NotConvergedError, VanishcalcError
from ..validate import integer, real
from ..value import Value

PLACEMENTS = ("none", "pre", "post")
ALPHA_GRID = 48          # log-spaced α scanned before Brent refines the first crossing
ALPHA_MIN = 1e-6
TIME_BUDGET_S = 60.0     # residual_alpha's search: ~100 trajectories of `depth` blocks


def _placement_iv(where, placement):
    if placement not in PLACEMENTS:
        raise VanishcalcError(f"{where}: placement = {placement!r} is unknown; use 'none' (no "
                              "norm), 'pre' (LayerNorm first in the branch) or 'post' "
                              "(LayerNorm after the sum)")
    return placement


def residual_block(phi, alpha, placement="none", sigma_w=1.0, sigma_b=0.0, sigma_w2=None):
    """The residual block of one placement as a mean-field layer (module docstring)."""
    from ..maps import Activation, Dense, Residual, post_norm_block, pre_norm_block
    placement = _placement_iv("residual_block", placement)
    if placement == "pre":
        return pre_norm_block(phi, alpha, sigma_w, sigma_b, sigma_w2)
    if placement == "post":
        return post_norm_block(phi, alpha, sigma_w, sigma_b, sigma_w2)
    sw2 = sigma_w if sigma_w2 is None else sigma_w2
    return Residual([Dense(sigma_w, sigma_b), Activation(phi), Dense(sw2, sigma_b)], alpha)


def _trajectory(block, depth, q0):
    """q_0..q_L and log of the per-block gradient factors along the single-input path."""
    from ..maps.state import MomentState
    s = MomentState.single(q0)
    qs, logs = [q0], []
    for l in range(depth):
        g = block.grad_factor(s)
        s = block.moment_map(s)
        if not (math.isfinite(s.q1) and s.q1 < 1e300 and g > 0 and math.isfinite(g)):
            raise DivergenceError(f"{block!r}: q or the gradient left float64 at layer {l + 1}; "
                                  "lower alpha or the depth")
        qs.append(s.q1)
        logs.append(math.log(g))
    return np.asarray(qs), np.asarray(logs)


@dataclass(frozen=True)
class ResidualAlpha:
    """The largest α with max(r, 1/r) ≤ ``target`` for every α' ≤ α, r = E‖δh_0‖²/E‖δh_L‖².

    ``binding`` is False when the bound never binds on [0, ``alpha_max``] (then ``alpha`` is
    ``alpha_max``: e.g. post-LN relu, whose ratio is exactly 1); ``ratio`` is r at ``alpha``."""

    alpha: Value
    ratio: float
    depth: int
    target: float
    placement: str
    binding: bool
    note: str


def residual_alpha(phi, depth, *, target=2.0, placement="none", sigma_w=1.0, sigma_b=0.0,
                   sigma_w2=None, q0=1.0, alpha_max=10.0) -> ResidualAlpha:
    """The branch scale α for which the gradient ratio between the first and the last of
    ``depth`` residual blocks stays within ``target``.

    .. math::

        r(\\alpha) = \\prod_{l=0}^{L-1} \\bigl(1 + \\alpha^2 \\chi_B(q_l)\\bigr)\\quad
        (\\text{no norm}), \\qquad \\alpha^* = \\min\\{\\alpha : \\max(r, 1/r) = T\\}

    (post-LN multiplies each factor by the LayerNorm's γ²/q_sum).  For relu without norm
    χ_B = σw₁²σw₂²/2 is constant, r = (1 + α²χ_B)^L and α* = √((T^{1/L} − 1)/χ_B) ≈
    √(log T/(L χ_B)): the α ∝ L^{−1/2} of SkipInit/Fixup (Fixup's L^{−1/(2m−2)} with m = 2).

    Parameters
    ----------
    phi : str, sympy.Expr or Activation
        φ in the branch.
    depth : int
        L ≥ 1 blocks.
    target : float
        T > 1, the allowed max(r, 1/r).
    placement : {"none", "pre", "post"}
        Where the LayerNorm sits (module docstring).
    sigma_w, sigma_b, sigma_w2, q0 : float
        The branch's Dense scales and the input second moment.
    alpha_max : float
        The largest α searched.

    Returns
    -------
    ResidualAlpha

    Raises
    ------
    VanishcalcError
        bad arguments (target ≤ 1, depth < 1, unknown placement).

    Notes
    -----
    The crossing is the first one on a log grid of α (48 points on [1e-6, alpha_max]) refined
    by Brent; a crossing and return between two grid points is not seen.  See
    notes/residual.md.

    Examples
    --------
    >>> a = residual_alpha("relu", 100, target=2.0, sigma_w=2 ** 0.5)
    >>> round(float(a.alpha), 10) == round(((2 ** 0.01 - 1) / 2) ** 0.5, 10)
    True
    """
    where = "residual_alpha"
    depth = integer(where, "depth", depth, 1)
    target = real(where, "target", target, why="(the allowed gradient ratio, > 1)")
    if not target > 1.0:
        raise VanishcalcError(f"{where}: target = {target!r} must be > 1 (a ratio of gradient "
                              "norms max(r, 1/r); 2 allows a factor of two)")
    placement = _placement_iv(where, placement)
    q0 = real(where, "q0", q0, positive=True, hi_bound=1e150)
    alpha_max = real(where, "alpha_max", alpha_max, positive=True)
    log_t = math.log(target)
    residual_block(phi, 0.0, placement, sigma_w, sigma_b, sigma_w2)   # validates φ and the σ's

    start = time.monotonic()

    def excess(a):
        if time.monotonic() - start > TIME_BUDGET_S:
            raise NotConvergedError(
                f"{where}: the search for α did not finish within {TIME_BUDGET_S:g} s at depth "
                f"{depth} (each trial α propagates all {depth} blocks); for a constant χ_B "
                "(relu without norm) use α = √((T^(1/L) − 1)/χ_B), or a smaller depth")
        try:
            _, logs = _trajectory(residual_block(phi, a, placement, sigma_w, sigma_b, sigma_w2),
                                  depth, q0)
        except DivergenceError:
            return math.inf
        return abs(float(logs.sum())) - log_t

    grid = np.geomspace(min(ALPHA_MIN, alpha_max), alpha_max, ALPHA_GRID)
    prev = 0.0
    if excess(0.0) >= 0:      # α = 0: the identity; only the post-LN's LN can move r there
        return ResidualAlpha(Value(0.0, exact=0, error=0.0, method="residual-alpha"),
                             math.exp(excess(0.0) + log_t), depth, target, placement, True,
                             "even α = 0 exceeds the target (the norm alone)")
    for a in grid:
        e = excess(float(a))
        if e >= 0:
            root = brentq(excess, prev, float(a), xtol=1e-14, rtol=1e-12) if math.isfinite(e) \
                else _bisect_inf(excess, prev, float(a))
            r = math.exp(excess(root) + log_t)
            _, logs = _trajectory(residual_block(phi, root, placement, sigma_w, sigma_b,
                                                 sigma_w2), depth, q0)
            ratio = math.exp(float(logs.sum()))
            return ResidualAlpha(Value(root, error=_alpha_error(excess, root, depth, log_t),
                                       error_kind="estimate", method="residual-alpha:brent"),
                                 ratio, depth, target, placement, True,
                                 f"max(r, 1/r) = {max(r, 1 / r):.6g} at α")
        prev = float(a)
    _, logs = _trajectory(residual_block(phi, alpha_max, placement, sigma_w, sigma_b, sigma_w2),
                          depth, q0)
    return ResidualAlpha(Value(alpha_max, error=0.0, method="residual-alpha:not-binding"),
                         math.exp(float(logs.sum())), depth, target, placement, False,
                         f"the ratio stays within {target:g} for every α ≤ alpha_max = "
                         f"{alpha_max:g}; the bound does not limit α here")


def _alpha_error(excess, root, depth, log_t):
    """Error of the root α of |log r(α)| = log T: Brent's tolerance plus the noise of log r
    (each block's factor 1 + α²χ_B is rounded to a double before its log, ~ε per block, and
    the quadratures' relative error) over the slope of |log r| at α.  As T → 1 the noise is
    what limits α (T = 1 + 1e-10, L = 3: 2e-12 against the 1e-14 Brent alone claimed)."""
    noise = 8.0 * depth * np.finfo(float).eps + 1e-12 * log_t
    h = 1e-3 * root
    slope = abs(excess(root + h) - excess(root - h)) / (2.0 * h)
    brent = max(1e-12 * root, 1e-14)
    slope_lo = slope - noise / h
    if not slope_lo > 0:       # the noise hides the crossing: only α ∈ [0, 2α] is certain
        return max(root, brent)
    return brent + 2.0 * noise / slope_lo


def _bisect_inf(f, lo, hi):
    """First crossing when f is +inf (diverged) at hi: bisect to the finite side, then Brent."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        v = f(mid)
        if v >= 0:
            if math.isfinite(v):
                return brentq(f, lo, mid, xtol=1e-14, rtol=1e-12)
            hi = mid
        else:
            lo = mid
    return lo


@dataclass(frozen=True)
class ResidualGrowth:
    """How q grows with depth in a residual net.

    ``law``: ``"constant"`` (post-LN), ``"linear"`` (pre-LN exactly; bounded φ with
    φ(±∞) ≠ 0 asymptotically), ``"polynomial"`` (q ~ l^p, p = ``exponent``; e.g. exp(−x²) at
    σb = 0: p = 2/3) or ``"geometric"`` (q_{l+1}/q_l → ``rate`` > 1; relu).  ``exponent`` is
    the local exponent p = 1 + log(Δ_L/Δ_{L/2})/log 2 of the increments Δ_l = q_{l+1} − q_l
    (Δ ~ l^{p−1}); ``q`` the trajectory q_0..q_L.  "linear" means |p − 1| < 0.05: tanh's
    q_B = σw₂²E[tanh²] + σb² approaches its limit like q^{−1/2}, so its local p is 1.036 at
    L = 1000 and tends to 1 only slowly."""

    law: str
    exponent: float
    rate: float
    q: np.ndarray
    placement: str


def residual_growth(phi, alpha, *, placement="none", depth=1000, sigma_w=1.0, sigma_b=0.0,
                    sigma_w2=None, q0=1.0) -> ResidualGrowth:
    """The growth law of q_l over ``depth`` residual blocks (Yang & Schoenholz 2017).

    .. math::

        q_{l+1} = q_l + \\alpha^2 q_B(q_l)\\ (\\text{none}),\\quad
        q_{l+1} = q_l + \\alpha^2 q_B(\\gamma^2)\\ (\\text{pre}),\\quad
        q_{l+1} = \\gamma^2 + \\beta^2\\ (\\text{post})

    so pre-LN grows exactly linearly, q_l = q_0 + l·α²q_B(γ²); without a norm, q_B(q) ~ q
    (relu: geometric, rate 1 + α²σw₁²σw₂²/2), q_B → σw₂²φ(∞)² + σb² (tanh: linear), or
    q_B ~ q^{−1/2} (exp(−x²), σb = 0: q ~ l^{2/3}).

    Examples
    --------
    >>> residual_growth("relu", 0.5, depth=50, sigma_w=1.0).law
    'geometric'
    >>> residual_growth("tanh", 0.5, placement="pre", depth=50).law
    'linear'
    """
    where = "residual_growth"
    depth = integer(where, "depth", depth, 4, "(the law is read from the last half of the path)")
    placement = _placement_iv(where, placement)
    q0 = real(where, "q0", q0, positive=True, hi_bound=1e150)
    q, _ = _trajectory(residual_block(phi, alpha, placement, sigma_w, sigma_b, sigma_w2), depth,
                       q0)
    tail = q[depth // 2:]
    spread = (tail.max() - tail.min()) / max(abs(tail).max(), 1e-300)
    d = np.diff(q)
    rate = float(q[-1] / q[-2])
    if spread < 1e-10:
        return ResidualGrowth("constant", 0.0, 1.0, q, placement)
    d_end, d_mid = d[-1], d[(depth - 1) // 2]
    exponent = 1.0 + math.log(d_end / d_mid) / math.log((depth - 1) / ((depth - 1) // 2)) \
        if d_end > 0 and d_mid > 0 else math.nan
    r_mid = q[depth // 2 + 1] / q[depth // 2]
    if rate > 1 + 1e-6 and abs(rate - r_mid) < 1e-3 * (rate - 1):
        return ResidualGrowth("geometric", exponent, rate, q, placement)
    law = "linear" if abs(exponent - 1.0) < 0.05 else "polynomial"
    return ResidualGrowth(law, exponent, rate, q, placement)


@dataclass(frozen=True)
class DropoutDepth:
    """ξc (and c*, χc) of [Activation(φ), Dropout(keep), Dense(σw, σb)] for each keep."""

    keep: np.ndarray
    xi_c: tuple
    c_star: tuple
    chi_c: tuple
    sigma_w: float
    sigma_b: float


def dropout_xi_c(phi, keep, sigma_w=None, sigma_b=0.0) -> DropoutDepth:
    """The correlation depth scale ξc = −1/log χc as a function of the keep rate ρ.

    With dropout after the nonlinearity (Schoenholz et al. 2017, §5),
    q' = σw² E[φ²]/ρ + σb², c' = (σw² E[φ(u1)φ(u2)] + σb²)/q', so c = 1 is not a fixed point
    for ρ < 1, c* < 1 and χc < 1: ξc is finite.  At ρ = 1 on the critical line (default σw:
    ``critical_sigma_w(φ, σb)``) ξc = ∞.

    Examples
    --------
    >>> d = dropout_xi_c("tanh", [1.0, 0.9], sigma_b=0.3)
    >>> float(d.xi_c[0]), 0 < float(d.xi_c[1]) < 100
    (inf, True)
    """
    from ..maps import Activation, Dense, Dropout
    from ..maps.dropout import keep_iv
    from ..maps.meanfield import MeanField
    keeps = np.atleast_1d(np.asarray(keep, dtype=object))
    if keeps.size == 0:
        raise VanishcalcError("dropout_xi_c: keep is empty; pass a rate in (0, 1] or a list")
    keeps = np.array([keep_iv("dropout_xi_c", k) for k in keeps])
    if sigma_w is None:
        from .criticality import critical_sigma_w
        sigma_w = float(critical_sigma_w(phi, sigma_b).sigma_w)
    xi, cs, chis = [], [], []
    for k in keeps:
        mf = MeanField([Activation(phi), Dropout(float(k)), Dense(sigma_w, sigma_b)])
        xi.append(mf.xi_c())
        cs.append(mf.c_star())
        chis.append(mf.chi_c())
    return DropoutDepth(keeps, tuple(xi), tuple(cs), tuple(chis), float(sigma_w), float(sigma_b))


__all__ = ["DropoutDepth", "ResidualAlpha", "ResidualGrowth", "dropout_xi_c", "residual_alpha",
           "residual_block", "residual_growth"]
