"""``RBF(spec, width=…, scale=…, offset=…, sigma_c=…)``: Gaussian RBF units on a Euclidean distance.

Unit i of a width-n layer outputs φ(d_i) with

.. math::

    d_i = \\frac{\\|x - w_i\\|^2 - \\text{offset}}{\\text{scale}},\\qquad
    w_{ij} \\sim N(\\mu_c, \\sigma_c^2)\\ \\text{i.i.d.}

(φ = exp(−x²) by default: the Gaussian RBF unit of the users' question).  ``centers="matched"``
draws the centers from the input layer's own per-coordinate law, moment-matched:
μc = mean of the input units, σc² = their variance.

Mean field (derivation: notes/rbf.md).  Given the input x (per-coordinate second moment q
around μc: Q = ‖x − μc‖²/n), ‖x − w‖² = σc²·χ'²_n(nQ/σc²) exactly (non-central χ²), so

.. math::

    E\\|x-w\\|^2 = n(Q+\\sigma_c^2),\\qquad
    \\mathrm{Var}\\|x-w\\|^2 = 4nQ\\sigma_c^2 + 2n\\sigma_c^4,\\qquad
    \\mathrm{Cov}(\\|x-w\\|^2, \\|x'-w\\|^2) = 4nK\\sigma_c^2 + 2n\\sigma_c^4

with K = (x − μc)·(x' − μc)/n; the mean grows ∝ n and the spread ∝ √n.  The map takes
(d(x), d(x')) bivariate Gaussian (the large-width limit; the dropped skewness is
O(n^{-1/2}), refused above :data:`MAX_SKEW`) and returns q' = E φ(d)², cov' = E φ(d)φ(d'),
mean' = E φ(d).  Q and K are taken as deterministic given the input state: exact after a
``LayerNorm`` (it fixes ‖x‖² and Σx of every input), which is the block this theory is for,
``serial(LayerNorm(γ, β), RBF(...))`` — without it each input's ‖x‖²/n fluctuates by
O(n^{-1/2}), which n/scale = O(√n) turns into an O(1) per-input shift of d that this map does
not track (notes/rbf.md, "The norm mode").

Backward (and forward-tangent) factor, for a tangent v orthogonal to x and to 1 (what a
LayerNorm before the layer passes on):  ∂d_i/∂x = 2(x − w_i)/scale, so
(x − w_i)·v = −σc g_i·v and

.. math::

    \\frac{E\\|J v\\|^2}{\\|v\\|^2} = \\frac{4 n \\sigma_c^2}{\\text{scale}^2}\\,E[\\varphi'(d)^2] .

References
----------
Broomhead & Lowe 1988 (radial basis function networks); Poole et al. 2016, arXiv:1606.05340
(the mean-field q/c maps this extends); Ba et al. 2016, arXiv:1607.06450 (layer norm).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy

from ..activation import activation
from ..errors import VanishcalcError
from ..parse import X
from ..validate import integer, real
from .layer import Layer, _fmt
from .state import MomentState, geometric_mean

#: The standardized skewness of ‖x − w‖² (∝ n^{-1/2}) above which the Gaussian law of d is
#: refused: "width too small for the statistics".
MAX_SKEW = 0.5
#: Smallest width accepted at all.
MIN_WIDTH = 8
#: A layer whose units are all saturated (this share or more) is refused.
ALL_SATURATED = 1.0 - 1e-9


def _is_gauss(act) -> bool:
    return sympy.simplify(act.expr - sympy.exp(-X ** 2)) == 0


@functools.lru_cache(maxsize=64)
def moment_kind(act):
    return "gauss" if _is_gauss(act) else "numeric"


def gauss_moments(m1, v1, m2, v2, cov):
    """Closed forms for φ = exp(−x²), (d1, d2) ~ N((m1, m2), [[v1, cov], [cov, v2]]):
    (E φ(d1), E φ(d1)², E φ(d1)φ(d2), E φ'(d1)²).

    E exp(−dᵀAd) = det(I + 2AΣ)^{-1/2} exp(−μᵀ A (I + 2ΣA)^{-1} μ); φ'(d)² = 4d² e^{−2d²}."""
    e1 = math.exp(-m1 * m1 / (1 + 2 * v1)) / math.sqrt(1 + 2 * v1)
    e11 = math.exp(-2 * m1 * m1 / (1 + 4 * v1)) / math.sqrt(1 + 4 * v1)
    # E[d² e^{−2d²}]: d tilted by e^{−2d²} is N(m/(1+4v), v/(1+4v))
    t = 1 + 4 * v1
    d2 = e11 * (v1 / t + (m1 / t) ** 2)
    S = np.array([[v1, cov], [cov, v2]])
    M = np.eye(2) + 2 * S
    mu = np.array([m1, m2])
    det = float(np.linalg.det(M))
    e12 = math.exp(-float(mu @ np.linalg.solve(M, mu))) / math.sqrt(det)
    return e1, e11, e12, 4 * d2


def numeric_moments_with_error(act, m1, v1, m2, v2, cov):
    """The same four moments for any φ, each with an error estimate: ((E φ(d1), E φ(d1)²,
    E φ(d1)φ(d2), E φ'(d1)²), (their errors)).

    φ shifted by the mean (x ↦ φ(x + m), ``maps.activation.shifted``, cached per mean) turns
    each into a centered Gaussian expectation, computed by the project's kink-aware adaptive
    Gauss–Kronrod rules (``maps.activation.second_moment_with_error``,
    ``gaussian.bivariate``)."""
    from ..gaussian import bivariate as bv
    from .activation import derivative_of, second_moment_with_error, shifted
    a1 = shifted(act, float(m1))
    a2 = a1 if m2 == m1 else shifted(act, float(m2))
    e1, r1 = bv.expect1_product(a1, None, v1, v1) if v1 > 0 else \
        (float(act.numpy(np.array([m1]))[0]), 0.0)
    e11, r11 = second_moment_with_error(a1, v1)
    ed, rd = second_moment_with_error(derivative_of(a1), v1)
    if (m1, v1) == (m2, v2) and cov == v1:            # the same input twice: d1 = d2
        e12, r12 = e11, r11
    elif v1 > 0 and v2 > 0:
        rho = max(-1.0, min(1.0, cov / math.sqrt(v1 * v2)))
        e12, r12 = bv.expect2_float(a1, a2, v1, v2, rho)
    else:
        e2 = bv.expect1_product(a2, None, v2, v2)[0] if v2 > 0 else \
            float(act.numpy(np.array([m2]))[0])
        e12, r12 = e1 * e2, abs(e2) * r1
    return ((float(e1), float(e11), float(e12), float(ed)),
            (float(r1), float(r11), float(r12), float(rd)))


def numeric_moments(act, m1, v1, m2, v2, cov):
    """The four moments of :func:`numeric_moments_with_error`, without their errors."""
    return numeric_moments_with_error(act, m1, v1, m2, v2, cov)[0]


def rbf_iv(spec, width, scale, offset, sigma_c, center_mean, centers):
    act = activation(spec)
    if act.derivative(1).deltas:
        raise VanishcalcError(f"RBF: φ = {act.name} jumps, so E[φ'²] is infinite; use a "
                              "continuous φ (the default is exp(-x**2))")
    width = integer("RBF", "width", width, MIN_WIDTH, why=(
        f"(the number of units = input width n; below {MIN_WIDTH} the distances ‖x − w‖² are "
        "far from their large-width Gaussian law: use a wider layer)"))
    scale = real("RBF", "scale", scale, positive=True, why=(
        "(d = (‖x − w‖² − offset)/scale; the width-independent choice is scale ∝ √width: "
        "use vanishcalc.rbf_scale(...) to get it)"))
    offset = real("RBF", "offset", offset, why="(about width·(q + σc²); see rbf_scale)")
    if centers not in ("gaussian", "matched"):
        raise VanishcalcError(f"RBF: centers = {centers!r} must be 'gaussian' (w_ij ~ "
                              "N(center_mean, sigma_c²)) or 'matched' (the input's own mean and "
                              "variance)")
    sigma_c = real("RBF", "sigma_c", sigma_c, positive=True, hi_bound=1e150,
                   why="(the std of each center coordinate)")
    center_mean = real("RBF", "center_mean", center_mean)
    return act, width, scale, offset, sigma_c, center_mean


class RBF(Layer):
    """Gaussian RBF units on a Euclidean distance: unit i outputs φ((‖x − w_i‖² − offset)/scale).

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        φ (default ``"exp(-x**2)"``).
    width : int
        n, the input width and the number of units (≥ 8; the map also refuses widths whose
        distance law is too skewed, see :data:`MAX_SKEW`).
    scale : float
        > 0; width-independent when ∝ √n (:func:`vanishcalc.rbf_scale`).
    offset : float
        subtracted from ‖x − w‖²; ≈ n(Q + σc²) centers d (Q = ‖x − μc‖²/n).
    sigma_c, center_mean : float
        The centers' law w_ij ~ N(center_mean, sigma_c²) (``centers="gaussian"``).
    centers : "gaussian" or "matched"
        "matched": center_mean and sigma_c² are the input's own mean over units and variance
        (read from the state; in simulation, from the net's batch).

    Raises
    ------
    VanishcalcError
        scale ≤ 0, width < 8, bad numbers; at map time: a width too small for the Gaussian
        law of d, or an offset/scale leaving every unit saturated (the message names
        ``rbf_scale``).

    Notes
    -----
    notes/rbf.md.  The module docstring states the map and what it assumes.

    Examples
    --------
    >>> from vanishcalc.maps import LayerNorm, serial
    >>> from vanishcalc.maps.state import MomentState
    >>> layer = RBF(width=256, scale=16.0, offset=512.0)
    >>> out = serial(LayerNorm(), layer).moment_map(MomentState(1.0, 1.0, 0.5))
    >>> round(out.q, 6), round(out.c, 6)
    (0.2, 0.48795)
    """

    def __init__(self, spec="exp(-x**2)", *, width, scale, offset, sigma_c=1.0, center_mean=0.0,
                 centers="gaussian"):
        (self.act, self.width, self.scale, self.offset, self.sigma_c,
         self.center_mean) = rbf_iv(spec, width, scale, offset, sigma_c, center_mean, centers)
        self.centers = centers

    # -------------------------------------------------------------- the law of d

    def center_law(self, state: MomentState):
        """(μc, σc²) for this input state."""
        if self.centers == "matched":
            if state.mean is None:
                raise VanishcalcError(f"{self!r}: centers='matched' needs the mean of its input "
                                      "over units, unknown after a nonlinearity; put a "
                                      "LayerNorm (or Dense) before it")
            m = state.mean
            v = 0.5 * (state.q1 + state.q2) - m * m
            if not v > 0:
                raise VanishcalcError(f"{self!r}: centers='matched' needs an input with variance "
                                      f"> 0 over units (got {v:g})")
            return m, v
        return self.center_mean, self.sigma_c ** 2

    def d_law(self, state: MomentState):
        """(m1, v1, m2, v2, cov): the bivariate Gaussian law of (d(x), d(x')) across units."""
        mu, s2 = self.center_law(state)
        if mu != 0.0 and state.mean is None:
            raise VanishcalcError(f"{self!r}: centers with mean {mu:g} need the mean of the "
                                  "input over units, unknown after a nonlinearity; put a "
                                  "LayerNorm before it or use center_mean=0")
        m = state.mean or 0.0
        shift = mu * mu - 2.0 * m * mu
        Q1, Q2, K = state.q1 + shift, state.q2 + shift, state.cov + shift
        n, a = self.width, self.scale
        self._check_width(Q1, s2)
        m1 = (n * (Q1 + s2) - self.offset) / a
        m2 = (n * (Q2 + s2) - self.offset) / a
        v1 = n * (4.0 * Q1 * s2 + 2.0 * s2 * s2) / (a * a)
        v2 = n * (4.0 * Q2 * s2 + 2.0 * s2 * s2) / (a * a)
        cov = n * (4.0 * K * s2 + 2.0 * s2 * s2) / (a * a)
        return m1, v1, m2, v2, cov

    def skewness(self, Q, s2):
        """Standardized skewness of ‖x − w‖² = σc² χ'²_n(λ = nQ/σc²): 8(n+3λ)/(2(n+2λ))^{3/2}."""
        n = self.width
        lam = n * Q / s2
        return 8.0 * (n + 3 * lam) / (2.0 * (n + 2 * lam)) ** 1.5

    def _check_width(self, Q, s2):
        sk = self.skewness(Q, s2)
        if sk > MAX_SKEW:
            # skew ∝ n^{-1/2}: the width where it reaches MAX_SKEW
            need = math.ceil(self.width * (sk / MAX_SKEW) ** 2)
            raise VanishcalcError(
                f"{self!r}: width {self.width} is too small for the statistics of the distances: "
                f"‖x − w‖² has skewness {sk:.3g} > {MAX_SKEW} (its Gaussian law, used by the mean "
                f"field, needs a wide layer); use width ≥ {need}")

    def _moments(self, m1, v1, m2, v2, cov):
        if moment_kind(self.act) == "gauss":
            return gauss_moments(m1, v1, m2, v2, cov)
        return numeric_moments(self.act, m1, v1, m2, v2, cov)

    def saturated_fraction(self, state: MomentState) -> float:
        """P(|φ'(d)| < 1e-3·max|φ'|) over units, for the first input (bn_affine's definition)."""
        from ..solve.bn_affine import saturated_fraction
        m1, v1, _, _, _ = self.d_law(state)
        return saturated_fraction(self.act, math.sqrt(v1), m1)

    def _check_alive(self, state, m1, v1):
        from ..solve.bn_affine import saturated_fraction
        if saturated_fraction(self.act, math.sqrt(v1), m1) >= ALL_SATURATED:
            n = self.width
            raise VanishcalcError(
                f"{self!r}: every unit is saturated: d = (‖x − w‖² − offset)/scale has mean "
                f"{m1:.4g} and std {math.sqrt(v1):.4g} across units, so φ'(d) ≈ 0 for all of them "
                f"(‖x − w‖² ≈ {n}·(q + σc²) grows with the width); use "
                "vanishcalc.rbf_scale(spec, width=…, sigma_c=…) for an offset ≈ width·(q + σc²) "
                "and a scale ∝ √width")

    # -------------------------------------------------------------- Layer interface

    def moment_map(self, state: MomentState) -> MomentState:
        m1, v1, m2, v2, cov = self.d_law(state)
        self._check_alive(state, m1, v1)
        e1, e11, e12, _ = self._moments(m1, v1, m2, v2, cov)
        if (m2, v2) == (m1, v1):
            e22, e2 = e11, e1
        else:
            e2, e22, _, _ = self._moments(m2, v2, m1, v1, cov)
        c = e12 / geometric_mean(e11, e22) if e11 > 0 and e22 > 0 else 1.0
        return state.replace(q1=e11, q2=e22, c=max(-1.0, min(1.0, c)), mean=0.5 * (e1 + e2),
                             is_gaussian=False)

    def grad_factor(self, state: MomentState) -> float:
        m1, v1, m2, v2, cov = self.d_law(state)
        _, s2 = self.center_law(state)
        ed = self._moments(m1, v1, m2, v2, cov)[3]
        return 4.0 * self.width * s2 * ed / self.scale ** 2

    def __repr__(self):
        extra = "" if self.act.name == "exp(-x**2)" else f"{self.act.name!r}, "
        law = ("centers='matched'" if self.centers == "matched" else
               f"sigma_c={_fmt(self.sigma_c)}" + (f", center_mean={_fmt(self.center_mean)}"
                                                  if self.center_mean else ""))
        return (f"RBF({extra}width={self.width}, scale={_fmt(self.scale)}, "
                f"offset={_fmt(self.offset)}, {law})")
