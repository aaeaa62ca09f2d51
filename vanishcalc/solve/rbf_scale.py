"""``rbf_scale``: the scale and offset of an RBF layer for a target gradient rate or saturation.

The block is ``serial(LayerNorm(γ, β), RBF(φ, width=n, scale, offset, σc))`` (the LayerNorm
fixes each input's norm, which the RBF mean field needs: notes/rbf.md).  After it,
Q = ‖x − μc‖²/n = γ² + (β − μc)² exactly, and across units d ~ N(μd, sd²) with

.. math::

    \\mu_d = \\frac{n(Q+\\sigma_c^2) - \\text{offset}}{\\text{scale}},\\qquad
    s_d^2 = \\frac{n(4Q\\sigma_c^2 + 2\\sigma_c^4)}{\\text{scale}^2},

so (μd, sd) is the width-independent parameterization and

.. math::

    \\text{scale} = \\frac{\\sqrt{2n\\sigma_c^2(2Q+\\sigma_c^2)}}{s_d},\\qquad
    \\text{offset} = n(Q+\\sigma_c^2) - \\mu_d\\,\\text{scale}.

The per-block rate of the squared gradient norm (LayerNorm's γ²/Var φ(d) times the RBF's
4nσc²E[φ'(d)²]/scale², notes/rbf.md) is

.. math::

    \\lambda(\\mu_d, s_d) = \\frac{2\\gamma^2\\sigma_c^2}{\\sigma_c^2(2Q+\\sigma_c^2)}\\,
      \\frac{s_d^2\\,E[\\varphi'(d)^2]}{\\mathrm{Var}\\,\\varphi(d)}
      = \\frac{2\\gamma^2 s_d^2 E[\\varphi'(d)^2]}{(2Q+\\sigma_c^2)\\,\\mathrm{Var}\\,\\varphi(d)} .

``rbf_scale`` fixes μd (default: where |φ'| is largest, so the units sit on φ's steepest
point) and solves sd for the target rate (or the target saturated fraction), then returns
the width-n scale and offset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..activation import activation
from ..errors import VanishcalcError
from ..maps.combinators import serial
from ..maps.norm import LayerNorm
from ..maps.rbf import RBF, gauss_moments, moment_kind, numeric_moments_with_error, rbf_iv
from ..validate import real
from ..value import Value

SD_RANGE = (1e-2, 1e2)         # s_d scanned (log grid), then refined by Brent


@dataclass(frozen=True)
class RBFScale:
    """The solved RBF layer: ``scale``, ``offset`` at ``width``; the law of d across units
    (``d_mean``, ``d_std``); the block rate there (a Value: closed form for exp(−x²), else
    adaptive Gauss–Kronrod, with the error estimate propagated from the moments') and the
    saturated fraction; ``layer`` (the RBF) and ``block`` (``serial(LayerNorm(γ, β), layer)``,
    the network's repeated block)."""

    scale: float
    offset: float
    width: int
    d_mean: float
    d_std: float
    rate: Value
    saturated_fraction: float
    layer: RBF
    block: object

    def __repr__(self):
        return (f"RBFScale(scale={self.scale:.6g}, offset={self.offset:.6g}, width={self.width}, "
                f"d ~ N({self.d_mean:.4g}, {self.d_std:.4g}²), rate={float(self.rate):.6g}, "
                f"saturated={self.saturated_fraction:.3g})")


def _one_input_moments(act, mu, sd):
    """((E φ(d), E φ(d)², E φ'(d)²), their errors) for d ~ N(mu, sd²)."""
    v = sd * sd
    if moment_kind(act) == "gauss":
        e1, e11, _, ed = gauss_moments(mu, v, mu, v, v)
        eps = 16 * np.finfo(float).eps
        return (e1, e11, ed), (eps * e1, eps * e11, eps * ed)
    (e1, e11, _, ed), (r1, r11, _, rd) = numeric_moments_with_error(act, mu, v, mu, v, v)
    return (e1, e11, ed), (r1, r11, rd)


def block_rate_with_error(act, mu, sd, Q, sigma_c2, ln_gamma):
    """(λ(μd, sd) of the module docstring, its error estimate from the moments' errors)."""
    (e1, e11, ed), (r1, r11, rd) = _one_input_moments(act, mu, sd)
    var = e11 - e1 * e1
    if not var > 0:
        return math.inf, math.inf
    rate = 2.0 * ln_gamma ** 2 * sd * sd * ed / ((2.0 * Q + sigma_c2) * var)
    # first order in each moment's error, plus rounding of the variance's cancellation
    rel = rd / ed + (r11 + 2 * abs(e1) * r1 + 4 * np.finfo(float).eps * e11) / var if ed > 0 \
        else math.inf
    return rate, abs(rate) * rel + 64 * np.finfo(float).eps * abs(rate)


def block_rate(act, mu, sd, Q, sigma_c2, ln_gamma):
    """λ(μd, sd) of the module docstring."""
    return block_rate_with_error(act, mu, sd, Q, sigma_c2, ln_gamma)[0]


def _rate_value(act, mu, sd, Q, s2, g) -> Value:
    rate, err = block_rate_with_error(act, mu, sd, Q, s2, g)
    method = ("rbf_scale:closed-form" if moment_kind(act) == "gauss" else
              "rbf_scale:gauss-kronrod")
    return Value(rate, error=err, error_kind="estimate", method=method)


def steepest_point(act) -> float:
    """argmax |φ'(x)| over |x| ≤ 8 (grid of step 1e-3; the smallest |x| on ties)."""
    x = np.linspace(-8.0, 8.0, 16001)
    with np.errstate(all="ignore"):
        d = np.abs(np.asarray(act.derivative(1).numpy(x), dtype=float) * np.ones_like(x))
    d = np.where(np.isfinite(d), d, -1.0)
    best = np.flatnonzero(d >= d.max() * (1 - 1e-12))
    return float(x[best[np.argmin(np.abs(x[best]))]])


def _solve(fn, target, what, act, mu):
    grid = np.geomspace(*SD_RANGE, 81)
    vals = np.array([fn(s) for s in grid])
    ok = np.isfinite(vals)
    diff = np.where(ok, vals - target, np.nan)
    cross = np.flatnonzero((diff[:-1] * diff[1:] <= 0) & ok[:-1] & ok[1:])
    if not cross.size:
        lo, hi = np.nanmin(vals), np.nanmax(vals)
        raise VanishcalcError(
            f"rbf_scale: no spread s_d in [{SD_RANGE[0]}, {SD_RANGE[1]}] of d gives {what} = "
            f"{target:g} for φ = {act.name} at d_mean = {mu:g} (reached {lo:.4g} … {hi:.4g}); "
            "choose a target in that range or another d_mean")
    i = int(cross[0])
    return brentq(lambda s: fn(s) - target, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-13)


def rbf_scale(spec="exp(-x**2)", *, width, sigma_c=1.0, rate=None, saturation=None,
              d_mean=None, ln_gamma=1.0, ln_beta=0.0, center_mean=0.0) -> RBFScale:
    """Scale and offset of ``RBF(spec, width=…)`` for a target block gradient rate or saturation.

    .. math::

        \\text{scale} = \\frac{\\sqrt{2n\\sigma_c^2(2Q+\\sigma_c^2)}}{s_d},\\quad
        \\text{offset} = n(Q+\\sigma_c^2) - \\mu_d\\,\\text{scale},\\quad Q = \\gamma^2 + (\\beta-\\mu_c)^2

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ (default exp(−x²)).
    width : int
        n (the scale grows as √n, the offset as n).
    sigma_c, center_mean : float
        The centers' law w_ij ~ N(center_mean, σc²).
    rate : float, optional
        Target per-block growth λ of the squared gradient norm of
        [LayerNorm(γ, β), RBF] (default 1 when ``saturation`` is not given).
    saturation : float, optional
        Instead: the target share of units with |φ'(d)| < 1e-3·max|φ'| (in (0, 1)).
    d_mean : float, optional
        μd, the centre of d across units (default: where |φ'| is largest).
    ln_gamma, ln_beta : float
        The LayerNorm affine before the RBF (the input of the RBF has q = γ² + β², mean β).

    Returns
    -------
    RBFScale

    Raises
    ------
    VanishcalcError
        both rate and saturation; a target no s_d ∈ [0.01, 100] reaches (the message gives
        the range reached); bad numbers (width < 8, σc ≤ 0, …).

    Notes
    -----
    notes/rbf.md ("Solver").

    Examples
    --------
    >>> r = rbf_scale(width=256)
    >>> round(float(r.rate), 10), round(r.d_mean, 3), round(r.d_std, 4)
    (1.0, -0.707, 0.6378)
    >>> r4 = rbf_scale(width=1024)                      # scale ∝ √n; offset − n(Q+σc²) ∝ √n
    >>> round(r4.scale / r.scale, 10), round((r4.offset - 2048) / (r.offset - 512), 10)
    (2.0, 2.0)
    """
    if rate is not None and saturation is not None:
        raise VanishcalcError("rbf_scale: give rate= or saturation=, not both")
    act = activation(spec)
    rbf_iv(act, width, 1.0, 0.0, sigma_c, center_mean, "gaussian")      # width, σc, φ
    g = real("rbf_scale", "ln_gamma", ln_gamma, positive=True, hi_bound=1e100)
    b = real("rbf_scale", "ln_beta", ln_beta, hi_bound=1e100)
    mu_c = real("rbf_scale", "center_mean", center_mean, hi_bound=1e100)
    s2 = float(sigma_c) ** 2
    Q = g * g + (b - mu_c) ** 2
    mu = steepest_point(act) if d_mean is None else real("rbf_scale", "d_mean", d_mean)
    if saturation is not None:
        target = real("rbf_scale", "saturation", saturation, lo=0.0, hi=1.0)
        if not 0.0 < target < 1.0:
            raise VanishcalcError(f"rbf_scale: saturation = {saturation!r} must lie in (0, 1)")
        from .bn_affine import saturated_fraction
        sd = _solve(lambda s: saturated_fraction(act, s, mu), target, "a saturated fraction",
                    act, mu)
    else:
        target = 1.0 if rate is None else real("rbf_scale", "rate", rate, positive=True,
                                                why="(the per-block squared-gradient growth)")
        sd = _solve(lambda s: block_rate(act, mu, s, Q, s2, g), target, "a block rate", act, mu)
    n = int(width)
    scale = math.sqrt(2.0 * n * s2 * (2.0 * Q + s2)) / sd
    offset = n * (Q + s2) - mu * scale
    layer = RBF(act, width=n, scale=scale, offset=offset, sigma_c=sigma_c, center_mean=mu_c)
    from .bn_affine import saturated_fraction
    return RBFScale(scale=scale, offset=offset, width=n, d_mean=mu, d_std=sd,
                    rate=_rate_value(act, mu, sd, Q, s2, g),
                    saturated_fraction=saturated_fraction(act, sd, mu), layer=layer,
                    block=serial(LayerNorm(g, b), layer))
