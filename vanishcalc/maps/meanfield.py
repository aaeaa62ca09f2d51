"""``MeanField``: fixed points, slopes, depth scales and trajectories of a deep random network.

The plain network h_{l+1} = W_l φ(h_l) + b_l is ``repeat(serial(Activation(φ), Dense(σw, σb)), L)``
with h_0 the input pre-activation; ``MeanField(φ, σw, σb)`` builds its block.  A block of
other layers (e.g. ``[Dense(σw, σb), BatchNorm(γ, β), Activation("tanh")]``) is accepted too:
every quantity below is computed from the block's ``moment_map``, ``grad_factor``,
``q_slope`` and ``c_slope``, so new layers plug in without new code here.

Formulas (notation of shared/README.md; derivations in notes/mean-field.md):

* q-map q' = σw² E[φ(√q z)²] + σb² (Poole et al. 2016, eq. 3), fixed point q*;
* c-map c' = (σw² E[φ(u1)φ(u2)] + σb²)/q* at q* (Poole et al. 2016, eq. 5), fixed point c*;
* χ1 = σw² E[φ'(√q* z)²] (Poole et al. 2016, eq. 8; Schoenholz et al. 2017, eq. 5);
* χc = σw² E[φ'(u1)φ'(u2)] at c* (Schoenholz et al. 2017, eq. 9), ξc = −1/log χc;
* ξq = −1/log|∂q'/∂q| at q*, ∂q'/∂q = χ1 + σw² E[φ''φ] = σw²·E[(z² − 1)φ(√q* z)²]/(2q*)
  (Schoenholz et al. 2017, eq. 6; the right-hand form has no Dirac masses at kinks);
* E‖∂L/∂h_l‖² / E‖∂L/∂h_L‖² = Π_{k=l}^{L−1} σw² E[φ'(√q_k z)²] along the actual q_k
  (Schoenholz et al. 2017, §4, eq. 13 without assuming q_k = q*).
"""
from __future__ import annotations

import functools
import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..errors import DivergenceError, NotConvergedError, VanishcalcError, VanishcalcWarning
from ..value import Value
from ..validate import integer, real
from .activation import Nonlinearity
from .combinators import serial
from .dense import Dense
from .layer import Layer
from .state import MomentState

Q_MAX = 1e12      # a second moment above Q_MAX·max(1, q0) is reported as divergence
Q_MIN = 1e-14     # relative to q0: below it q has collapsed to the fixed point 0
CRITICAL_TOL = 1e-9
C_MAP_ERROR = 1e-13  # absolute error of the certified 2-D c-map (nested Gauss–Kronrod, rtol 1e-13)
MEHLER_TERMS = 60  # Hermite terms of the series that predicts the chaotic c* (then checked)
CHI_C_TERMS = 200  # most Hermite terms of the χc series: kinked φ (a_n² ~ n^-3/2) at c* ≈ 0.76


@dataclass(frozen=True)
class Propagation:
    """Per-layer mean-field trajectory (index 0 = input pre-activation, index l after l blocks).

    ``q``, ``c``: second moment and correlation; ``grad``: expected squared gradient norm
    at layer l relative to the last layer (``grad[-1] == 1``); ``chi``: the per-block
    backward factors (length depth); ``log_grad``: the natural log of ``grad``, finite
    where ``grad`` itself over- or underflows a double (beyond e^±709: a gradient product
    over thousands of layers); ``grad`` is then ±inf or 0 and ``propagate`` warns.
    ``first_subnormal_layer``: the first layer whose q fell below the smallest normal double
    (2.2e-308; q then has fewer than 16 significant digits, and 0 means it underflowed),
    None if none did."""

    q: np.ndarray
    c: np.ndarray
    grad: np.ndarray
    chi: np.ndarray
    log_grad: np.ndarray | None = None
    first_subnormal_layer: int | None = None


def _meanfield_iv(spec, sigma_w, sigma_b):
    if isinstance(spec, Layer) and spec.elementwise and sigma_w is not None:
        # an elementwise layer (RReLU) plays φ's part; it is not an Activation, so the net
        # takes the general block path (the φ fast paths need an Activation)
        return serial(spec, Dense(sigma_w, sigma_b)), None, None
    if isinstance(spec, Layer) or isinstance(spec, (list, tuple)):
        if sigma_w is not None:
            raise VanishcalcError("MeanField: pass sigma_w/sigma_b inside the layers (Dense(σw, σb)) "
                                  "when spec is a block of layers, not as arguments")
        block = spec if isinstance(spec, Layer) else serial(*spec)
        return block, None, None
    if sigma_w is None:
        raise VanishcalcError("MeanField: sigma_w is required for a nonlinearity spec, e.g. "
                              "MeanField('tanh', sigma_w=1.5, sigma_b=0.1)")
    dense = Dense(sigma_w, sigma_b)      # validates σw > 0, σb ≥ 0, finite
    return serial(Nonlinearity(spec), dense), dense.sigma_w, dense.sigma_b


class MeanField:
    """Mean-field theory of a deep random network with nonlinearity φ (or a block of layers).

    Parameters
    ----------
    spec : str, sympy.Expr, Activation, Layer or list of layers
        φ (zoo name or expression in x), or the repeated block itself.
    sigma_w : float
        Weight scale σw: W_ij ~ N(0, σw²/fan_in).  Required for a φ spec.
    sigma_b : float
        Bias scale σb: b_i ~ N(0, σb²).

    Raises
    ------
    VanishcalcError (ValueError)
        σw ≤ 0, σb < 0, non-finite values, or a block that is not made of layers.

    Notes
    -----
    See notes/mean-field.md.

    References
    ----------
    Poole et al. 2016, arXiv:1606.05340, eqs. 3, 5, 8.
    Schoenholz et al. 2017, arXiv:1611.01232, eqs. 4–9, 13.

    Examples
    --------
    >>> mf = MeanField("relu", sigma_w=2 ** 0.5)
    >>> float(mf.chi1())
    1.0000000000000002
    >>> mf.q_map_expr()
    q
    """

    def __init__(self, spec, sigma_w=None, sigma_b=0.0):
        self.block, self.sigma_w, self.sigma_b = _meanfield_iv(spec, sigma_w, sigma_b)
        self.phi = next((l.act for l in self.block.layers if isinstance(l, Nonlinearity)), None)
        self._q_star = {}
        self._c_star = {}
        self._chi_c = None

    def __repr__(self):
        if self.sigma_w is not None:
            return (f"MeanField({self.phi.name!r}, sigma_w={self.sigma_w:g}, "
                    f"sigma_b={self.sigma_b:g})")
        return f"MeanField({self.block!r})"

    # ---------------------------------------------------------------- maps

    def _Q(self, q: float) -> float:
        out = self.block.moment_map(MomentState.single(q)).q1
        if not math.isfinite(out):
            raise DivergenceError(f"{self!r}: the q-map overflowed at q = {q:g}; "
                                  f"{self._divergence_advice()}")
        return out

    def _divergence_advice(self) -> str:
        """What to change when q grows without bound: it depends on the net."""
        from .residual import Residual
        if self.sigma_w is not None:
            return "lower sigma_w (for unbounded φ the q-map slope must be < 1)"
        layers = getattr(self.block, "layers", None) or [self.block]
        if any(isinstance(l, Residual) for l in layers):
            return ("a residual net without normalization after the sum has no fixed point: "
                    "q grows with depth (geometrically without a norm, linearly with "
                    "pre-norm); use post-norm blocks "
                    "(vanishcalc.maps.post_norm_block) for a fixed q, or see "
                    "vanishcalc.solve.residual.residual_growth for the growth law")
        return ("lower the σw of the block's Dense layers (for unbounded φ the q-map slope "
                "must be < 1)")

    def q_map(self, q) -> Value:
        """q_{l+1} = σw² E[φ(√q_l z)²] + σb² (Poole et al. 2016, eq. 3)."""
        q = real("MeanField.q_map", "q", q, nonneg=True)
        out = self._Q(q)
        return Value(out, error=4e-16 * max(abs(out), 1e-300), error_kind="estimate",
                     method="meanfield:q-map")

    def c_map(self, c, q=None) -> Value:
        """c_{l+1} for two inputs with second moment q (default q*) and correlation c."""
        c = real("MeanField.c_map", "c", c, lo=-1.0, hi=1.0)
        q = float(self.q_star()) if q is None else real("MeanField.c_map", "q", q,
                                                              positive=True)
        out = self.block.moment_map(MomentState(q, q, c)).c
        return Value(out, error=1e-14, error_kind="estimate", method="meanfield:c-map")

    # ---------------------------------------------------------------- fixed points

    def q_star(self, q0=1.0) -> Value:
        """The fixed point q* of the q-map reached from q0.

        Found by bracketing the root of r(q) = Q(q) − q from q0 in the direction Q moves q
        (doubling or halving), then Brent's method; for a monotone Q this is the limit of
        the iteration q0, Q(q0), ….  ``method`` is ``"meanfield:q*"`` or
        ``"meanfield:q*-collapsed"`` when q → 0 (then q* = 0 exactly).

        Raises
        ------
        DivergenceError
            when q grows without bound from q0 (e.g. relu with σw > √2, or σw = √2, σb > 0).
        """
        q0 = real("MeanField.q_star", "q0", q0, positive=True)
        if q0 not in self._q_star:
            self._q_star[q0] = self._solve_q(q0)
        return self._q_star[q0]

    def _solve_q(self, q0):
        r0 = self._Q(q0) - q0
        if abs(r0) <= 1e-15 * q0:
            return Value(q0, error=4e-16 * q0, error_kind="estimate", method="meanfield:q*")
        a = q0
        step = 2.0 if r0 > 0 else 0.5
        while True:
            b = a * step
            try:
                rb = self._Q(b) - b
            except DivergenceError:
                rb = math.inf
            if r0 > 0 and (b > Q_MAX * max(1.0, q0) or rb == math.inf):
                raise DivergenceError(
                    f"{self!r}: q grows without bound from q0 = {q0:g} (q-map above the diagonal "
                    f"up to q = {b:.3g}); {self._divergence_advice()}")
            if r0 < 0 and b < Q_MIN * q0:
                if self._Q(0.0) == 0.0:
                    return Value(0.0, exact=0, error=0.0, method="meanfield:q*-collapsed")
                raise NotConvergedError(f"{self!r}: q* below {b:.3g} not resolved")
            if (rb > 0) != (r0 > 0) or rb == 0:
                break
            a = b
        lo, hi = (a, b) if a < b else (b, a)
        root, res = brentq(lambda q: self._Q(q) - q, lo, hi, xtol=1e-300, rtol=8.9e-16,
                           maxiter=200, full_output=True)
        residual = max(abs(self._Q(root) - root), 8e-16 * root)
        # q* − root ≈ r(root)/(1 − Q'(q*)): the residual alone under-reports the error of a
        # weakly attracting fixed point (x·exp(−x²/2), σw = 1, σb = 0.05: Q' = 0.84, the
        # residual 2.4e-17 against a true error of 4.3e-17); where 1 − Q' is below
        # √(residual/q*) the quadratic term dominates and √(residual·q*) is the scale
        h = 1e-4 * root
        try:
            slope = (self._Q(root + h) - self._Q(max(root - h, 0.0))) / (root + h - max(root - h, 0.0))
        except DivergenceError:
            slope = math.inf
        gap = abs(1.0 - slope) if math.isfinite(slope) else 0.0
        floor = math.sqrt(residual / root) if root > 0 else 1.0
        err = 2.0 * residual / max(gap, floor)
        return Value(root, error=err, error_kind="estimate", method="meanfield:q*")

    def c_star(self, c0=0.5) -> Value:
        """The fixed point c* of the c-map at q*, reached from c0 (bracketing + Brent)."""
        c0 = real("MeanField.c_star", "c0", c0, lo=-1.0, hi=1.0)
        if c0 not in self._c_star:
            self._c_star[c0] = self._solve_c(c0)
        return self._c_star[c0]

    def _solve_c(self, c0):
        q = float(self.q_star())
        if q == 0.0 or c0 == 1.0:
            return Value(1.0, exact=1, error=0.0, method="meanfield:c*")

        def r(c):
            return self.block.moment_map(MomentState(q, q, c)).c - c
        chaotic_plain = (self.sigma_w is not None and self.phi is not None
                         and float(self.chi1()) > 1.0 + CRITICAL_TOL)
        if chaotic_plain:
            # the series tells the direction from c0: r(c0) need not be integrated
            bracketed = self._mehler_bracket(q, c0, None, r)
            if bracketed is not None:
                return bracketed
        r0 = r(c0)
        if abs(r0) <= 1e-15:
            return Value(c0, error=1e-15, error_kind="estimate", method="meanfield:c*")
        if r0 > 0 and r(1.0) < -1e-12:
            # c increases towards a fixed point below 1 (a batch-coupled block such as
            # BatchNorm never maps c to 1, and its χ1 needs c* itself: no χ1 here).
            lo, hi = c0, 1.0
        elif r0 > 0:
            # c increases; c = 1 is a fixed point, stable iff χ1 ≤ 1.
            chi1 = float(self.chi1())
            if chi1 <= 1.0 + CRITICAL_TOL:
                return Value(1.0, exact=1, error=0.0, method="meanfield:c*-ordered")
            bracketed = None if chaotic_plain else self._mehler_bracket(q, c0, r0, r)
            if bracketed is not None:
                return bracketed
            hi = 1.0 - min(1e-3, 0.5 * (1 - c0))
            above = c0                       # the last c where r is above its own error
            while (rh := r(hi)) >= -C_MAP_ERROR:
                if rh <= C_MAP_ERROR or 1.0 - hi < 1e-12:
                    # The c-map is within its error of the diagonal (relu6 at its gain: χ1 =
                    # 1 + 2e-9, c* within 1e-14 of 1): c* lies in (above, 1], nothing finer.
                    return Value(1.0, error=1.0 - above, error_kind="estimate",
                                 method="meanfield:c*-near-1")
                above = hi
                hi = 1.0 - (1.0 - hi) / 10
            lo = c0
        else:
            # c decreases; scan down for the first point where r ≥ 0 (c = −1 itself is a
            # fixed point of odd φ at σb = 0, but not the one the iteration reaches).
            bracketed = None if chaotic_plain else self._mehler_bracket(q, c0, r0, r)
            if bracketed is not None:
                return bracketed
            hi, lo = c0, None
            for cand in np.linspace(c0, -1.0, 12)[1:-1]:
                if r(cand) >= 0:
                    lo = cand
                    break
                hi = cand
            if lo is None:
                if r(-1.0) < 0:
                    raise NotConvergedError(f"{self!r}: c-map below the diagonal on [-1, {c0}]")
                lo = -1.0
                if r(-1.0 + 1e-12) < 0:
                    return Value(-1.0, exact=-1, error=0.0, method="meanfield:c*")
        root = brentq(r, lo, hi, xtol=1e-15, rtol=8.9e-16, maxiter=200)
        # The residual over the slope |χc − 1| of r: a residual alone overstates the
        # precision where r is flat (χc near 1).  χc at the root is cached for chi_c.
        flat = abs(self._chi_c_at(q, root) - 1.0)
        err = (abs(r(root)) + C_MAP_ERROR) / max(flat, 1e-300)
        return Value(root, error=min(max(err, 1e-15), hi - lo), error_kind="estimate",
                     method="meanfield:c*")

    def _mehler_bracket(self, q, c0, r0, r):
        # r0: r(c0) when already integrated, else None
        """c* of a chaotic plain net from its Mehler series, certified by the exact c-map.

        The series C(c) = (σw² Σ a_n² cⁿ + σb²)/(σw² Σ a_n² + σb²) (Hermite coefficients of
        φ(√q z), one vectorized 1-D quadrature) locates the first fixed point above c0 to
        ~1e-14; two evaluations of the certified 2-D c-map ``r`` at c ± δ, of opposite
        signs, then bracket the true c* (δ covers the series' truncation, bounded by the
        Hermite mass it misses, E[φ²] − Σ a_n² with E[φ²] = (q* − σb²)/σw² at the fixed
        point).  Returns None (the caller bisects as before) for blocks, or when
        the two signs do not come out opposite: the check decides, never the series."""
        if self.sigma_w is None or self.phi is None:
            return None
        from ..gaussian.bivariate import _z_max
        from ..solve.criticality import mehler_coeffs
        sw2, sb2 = self.sigma_w ** 2, self.sigma_b ** 2
        try:
            with np.errstate(all="ignore"):
                a2 = mehler_coeffs(self.phi, np.array([q]), _z_max(self.phi, q), MEHLER_TERMS)[0]
        except (VanishcalcError, ArithmeticError, ValueError):
            return None
        if not np.all(np.isfinite(a2)):
            return None
        coeffs = sw2 * a2
        coeffs[0] += sb2
        # Normalized by q' = σw² E[φ²] + σb² = q* (the fixed point), not by the truncated
        # sum: the slowly decaying Hermite tail of tanh at q* = 4 misses 1e-5 of E[φ²].
        norm = q

        def series(c):
            return np.polynomial.polynomial.polyval(c, coeffs) / norm - c
        # The stable fixed point the iteration reaches from c0: the first sign change of
        # r = C(c) − c above c0 (r(c0) > 0) or below it (r(c0) < 0); r > 0 below it, < 0 above.
        if r0 is None:               # direction from the series; too close to c0 to tell: bisect
            r0 = float(series(c0))
            if abs(r0) < 1e-9:
                return None
        up = r0 > 0
        cs = np.linspace(c0, 1.0 - 1e-6 if up else -1.0 + 1e-6, 2001)
        vals = series(cs)
        cross = (np.nonzero((vals[:-1] > 0) & (vals[1:] <= 0))[0] if up else
                 np.nonzero((vals[:-1] < 0) & (vals[1:] >= 0))[0])
        if (vals[0] > 0) != up or not cross.size:
            return None
        i = int(cross[0])
        c_hat = brentq(series, min(cs[i], cs[i + 1]), max(cs[i], cs[i + 1]), xtol=1e-16,
                       rtol=8.9e-16)
        slope = abs(np.polynomial.polynomial.polyval(
            c_hat, np.polynomial.polynomial.polyder(coeffs)) / norm - 1.0)
        missed = max((q - sb2) / sw2 - a2.sum(), 0.0) * sw2 / norm * abs(c_hat) ** (MEHLER_TERMS + 1)
        delta = max(1e-11, 4.0 * (missed + 1e-14) / max(slope, 1e-3))
        lo, hi = c_hat - delta, c_hat + delta
        if not (c0 < lo < hi < 1.0 if up else -1.0 < lo < hi < c0):
            return None
        r_lo, r_hi = r(lo), r(hi)
        if not (r_lo > 1e-13 and r_hi < -1e-13):
            return None
        root = lo + r_lo * (hi - lo) / (r_lo - r_hi)    # one secant step inside the bracket
        # The bracket holds c*; the secant root inside it is far closer: off by the chord's
        # curvature error (hi − lo)²·|r''|/8 over the slope, plus the c-map's own error
        # (≤ 1e-14: 2-D quadrature at rtol 1e-14 of a quantity ≤ 1) over the slope.  The
        # same error-over-slope estimate the bisection path gives (|r(root)| there).
        secant = (r_lo - r_hi) / (hi - lo)
        curv = abs(np.polynomial.polynomial.polyval(
            root, np.polynomial.polynomial.polyder(coeffs, 2)) / norm)
        chord = (hi - lo) ** 2 * (curv + 1.0) / 2
        err = (2e-14 + chord) / secant
        if chord > 2e-14:
            # A wide bracket (c* near 1, where the series converges slowly: tanh(x) + 0.1x at
            # σw = 1.8, σb = 1 has c* = 0.92, δ = 3e-7) leaves the secant root ~1e-10 off, and
            # χc at it would be 1e-10 off: finish with Brent on the exact c-map inside.
            root = brentq(r, lo, hi, xtol=1e-15, rtol=8.9e-16, maxiter=200)
            err = (abs(r(root)) + 2e-14) / secant     # residual and c-map error over the slope
        return Value(root, error=min(max(err, 1e-15), max(root - lo, hi - root)),
                     error_kind="estimate", method="meanfield:c*-mehler-bracket")

    # ---------------------------------------------------------------- slopes and depth scales

    def chi1(self) -> Value:
        """χ1 = σw² E[φ'(√q* z)²]: the per-layer growth of the squared gradient norm at q*."""
        q = float(self.q_star())
        v = self.block.grad_factor(self._single(q))
        return Value(v, error=1e-14 * abs(v), error_kind="estimate", method="meanfield:chi1")

    def _single(self, q):
        """The fixed-point state at second moment q.  Without batch coupling one input
        (c = 1) suffices.  BatchNorm standardizes over a batch of distinct inputs, so its
        factor depends on their correlation: use the fixed point c* (for [Dense, BN, relu]
        c* = 1/π, from relu's mean, which gives Yang et al.'s π/(π−1))."""
        coupled = any(getattr(l, "batch_coupled", False) for l in self.block.layers)
        return MomentState(q, q, float(self.c_star())) if coupled else MomentState.single(q)

    def chi_c(self) -> Value:
        """χc = σw² E[φ'(u1)φ'(u2)] at (q*, c*): the slope of the c-map at its fixed point.

        The error includes c*'s: for a plain net the c-map is a power series in c with
        non-negative coefficients (Mehler), so on [0, 1] χc rises with c and so does its
        slope; χc(c ± e) then lies within e·(χ1 − χc)/(1 − |c| − e) of χc(c), and for
        c* = 1 − e.. 1 between χc(1 − e) and χ1."""
        if self._chi_c is None:
            self._chi_c = self._solve_chi_c()
        return self._chi_c

    def _solve_chi_c(self):
        q = float(self.q_star())
        cv = self.c_star()
        c, e = float(cv), cv.error
        plain = self.sigma_w is not None
        if c == 1.0:
            chi1 = self.chi1()
            if e == 0.0 or not plain:
                return chi1
            low = self._chi_c_at(q, max(1.0 - e, 0.0))
            return Value(float(chi1), error=chi1.error + max(float(chi1) - low, 0.0),
                         error_kind="estimate", method="meanfield:chi_c-near-1")
        v = self._chi_c_series(q, c) if plain and self.phi is not None else None
        method = "meanfield:chi_c-mehler"
        if v is None:
            v, method = self._chi_c_at(q, c), "meanfield:chi_c"
        err = 1e-13 * abs(v)
        if plain and e > 0.0:
            room = 1.0 - abs(c) - e
            err += (e * max(float(self.chi1()) - v, 0.0) / room if room > 0 else
                    max(float(self.chi1()) - v, abs(v)))
        return Value(v, error=err, error_kind="estimate", method=method)

    def _chi_c_series(self, q, c):
        qv = self.q_star()
        return mehler_chi_c(self.phi, self.sigma_w ** 2, self.sigma_b ** 2, q, qv.error, c)

    def _chi_c_at(self, q, c):
        if self.sigma_w is not None:
            # Plain net: the serial product of the two layers' slopes, without the forward
            # state at c* that the product would build — φ's output correlation there is a
            # 2-D integral of φ·φ (as costly as χc's own of φ'·φ'), and the Dense slope only
            # reads its input's second moments, the same at every c.
            act_layer, dense = self.block.layers
            return (act_layer.c_slope(MomentState(q, q, c))
                    * dense.c_slope(act_layer.moment_map(MomentState.single(q))))
        return self.block.c_slope(MomentState(q, q, c))

    def q_slope(self) -> Value:
        """∂q'/∂q at q* = χ1 + σw² E[φ''φ] (Schoenholz et al. 2017, eq. 6)."""
        q = float(self.q_star())
        v = self.block.q_slope(self._single(q))
        return Value(v, error=1e-12 * max(abs(v), 1.0), error_kind="estimate",
                     method="meanfield:q-slope")

    def xi_q(self) -> Value:
        """ξq = −1/log|∂q'/∂q| at q*: depth scale of q's approach to q*."""
        return _depth_scale(self.q_slope(), "xi_q", self)

    def xi_c(self) -> Value:
        """ξc = −1/log χc: depth scale of correlation propagation; ∞ at criticality."""
        return _depth_scale(self.chi_c(), "xi_c", self)

    def phase(self) -> str:
        """"ordered" (χ1 < 1), "chaotic" (χ1 > 1) or "critical" (|χ1 − 1| ≤ 1e-9)."""
        chi1 = float(self.chi1())
        if abs(chi1 - 1.0) <= CRITICAL_TOL:
            return "critical"
        return "ordered" if chi1 < 1.0 else "chaotic"

    # ---------------------------------------------------------------- trajectories

    def propagate(self, depth, q0=1.0, c0=0.5) -> Propagation:
        """q_l, c_l and the gradient norms for l = 0..depth, from input moments (q0, c0).

        ``grad[l]`` = Π_{k=l}^{depth−1} (block backward factor at q_k), e.g.
        σw² E[φ'(√q_k z)²] for the plain network, along the actual trajectory."""
        depth = integer("MeanField.propagate", "depth", depth, 0)
        q0 = real("MeanField.propagate", "q0", q0, positive=True)
        c0 = real("MeanField.propagate", "c0", c0, lo=-1.0, hi=1.0)
        state = MomentState(q0, q0, c0)
        qs, cs, chis = [q0], [c0], []
        for layer in range(depth):
            chis.append(self.block.grad_factor(state))
            state = self.block.moment_map(state).check_finite(f"{self!r}, layer {layer + 1}")
            qs.append(state.q1)
            cs.append(state.c)
        chi = np.asarray(chis, dtype=float)
        # The product of depth factors leaves the double range long before any factor does
        # (χ = 1.1 over 8,000 layers is e^762): sum logs, exponentiate once, and say so.
        log_grad = np.zeros(depth + 1)
        with np.errstate(divide="ignore"):      # a factor 0 (a dead layer) gives log −inf
            if depth:
                log_grad[:-1] = np.cumsum(np.log(chi[::-1]))[::-1]
        with np.errstate(over="ignore", under="ignore"):
            grad = np.exp(log_grad)
        q = np.asarray(qs)
        bad = np.nonzero((grad == 0) & np.isfinite(log_grad) | np.isinf(grad))[0]
        if bad.size:
            l = int(bad[-1])
            warnings.warn(f"{self!r}: the gradient norm ratio at layer {l} is e^{log_grad[l]:.6g}, "
                          f"outside the double range, so grad[{l}] is {grad[l]:g}; use "
                          "Propagation.log_grad (its natural log, finite)", VanishcalcWarning,
                          stacklevel=2)
        sub = np.nonzero(q < sys.float_info.min)[0]
        first_sub = int(sub[0]) if sub.size else None
        if first_sub is not None:
            warnings.warn(f"{self!r}: q fell below the smallest normal double (2.2e-308) at layer "
                          f"{first_sub} (q = {q[first_sub]:g}): from there q carries fewer than 16 "
                          "digits, and q = 0 means it underflowed (the signal has vanished)",
                          VanishcalcWarning, stacklevel=2)
        return Propagation(q=q, c=np.asarray(cs), grad=grad, chi=chi, log_grad=log_grad,
                           first_subnormal_layer=first_sub)

    # ---------------------------------------------------------------- symbolic forms

    def q_map_expr(self, symbolic=False):
        """The q-map as a SymPy expression in ``q`` (None if no closed form is known).

        ``symbolic=True`` keeps σw and σb as symbols: relu gives σw²q/2 + σb²."""
        import sympy
        q = sympy.Symbol("q", positive=True)
        res = self.block.moments_expr(q, q, symbolic=symbolic)
        return None if res is None else sympy.simplify(res[0])

    def c_map_expr(self, symbolic=False):
        """The c-map as a SymPy expression in ``c`` and ``q`` (q = both inputs' second moment;
        at q = q* the denominator is q*).  None if no closed form is known."""
        import sympy
        q = sympy.Symbol("q", positive=True)
        c = sympy.Symbol("c", real=True)
        res = self.block.moments_expr(q, c * q, symbolic=symbolic)
        return None if res is None else res[1] / sympy.simplify(res[0])

    # ---- Jacobian-norm propagation, symbolically (issue 16; notes/isometry.md §5)

    def _sigma_w2_expr(self, symbolic):
        import sympy
        from .dense import _short_rational
        if symbolic:
            return sympy.Symbol("sigma_w", positive=True) ** 2
        return _short_rational(self.sigma_w ** 2)

    def _derivative_or_none(self):
        from .activation import derivative_of
        if self.sigma_w is None or self.phi is None:
            return None       # a block of layers: its backward factor has no one-φ form here
        try:
            return derivative_of(self.phi)
        except VanishcalcError:
            return None       # φ jumps: E[φ'²] is infinite

    def _d_power_mean_expr(self, power, q):
        """E[φ'(√q z)^power] as a SymPy expression in q, or None."""
        import sympy
        from ..gaussian import bivariate as _bv
        from ..gaussian import symbolic as _sym
        d = self._derivative_or_none()
        if d is None:
            return None
        if power == 2:
            k = _bv.kernel(d, d, q, q, sympy.Integer(1))
            if k is not None:
                return k
        try:
            return _sym.closed_form(d.power(power, f"{d.name}^{power}"), q,
                                    timeout=2.0)
        except (TypeError, ValueError, ArithmeticError, NotImplementedError, RecursionError):
            return None

    def chi1_expr(self, symbolic=False):
        """χ1(q) = σw² E[φ'(√q z)²] as a SymPy expression in ``q`` (None if no closed form).

        The per-layer growth of E‖δh‖² at second moment q (Schoenholz et al. 2017, eq. 5);
        at q = q* it is χ1.  relu: σw²/2; erf: 4σw²/(π√(1 + 4q)).  ``symbolic=True`` keeps σw
        as a symbol.  None for blocks of layers and φ without a closed form (tanh)."""
        import sympy
        q = sympy.Symbol("q", positive=True)
        e = self._d_power_mean_expr(2, q)
        return None if e is None else sympy.simplify(self._sigma_w2_expr(symbolic) * e)

    def chi_c_expr(self, symbolic=False):
        """σw² E[φ'(u1)φ'(u2)], (u1, u2) with variances q and correlation c, as a SymPy
        expression in ``q`` and ``c`` (None if no closed form): the c-map's slope at
        q = q* (Schoenholz et al. 2017, eq. 9), χc at c = c*.  relu: σw²(π − arccos c)/(2π)."""
        import sympy
        from ..gaussian import bivariate as _bv
        d = self._derivative_or_none()
        if d is None:
            return None
        q = sympy.Symbol("q", positive=True)
        c = sympy.Symbol("c", real=True)
        k = _bv.kernel(d, d, q, q, c)
        return None if k is None else sympy.simplify(self._sigma_w2_expr(symbolic) * k)

    def mu_expr(self, k, symbolic=False):
        """μ_k(q) = E[(σw² φ'(√q z)²)^k] as a SymPy expression in ``q`` (None if no closed
        form): the moments of D² that set JJᵀ's spectrum (Pennington et al. 2017, eq. 15).
        relu: σw^{2k}/2; erf: (4σw²/π)^k/√(1 + 4kq)."""
        import sympy
        k = integer("MeanField.mu_expr", "k", k, 1)
        q = sympy.Symbol("q", positive=True)
        e = self._d_power_mean_expr(2 * k, q)
        return None if e is None else sympy.simplify(self._sigma_w2_expr(symbolic) ** k * e)

    def chi1_product_expr(self, depth, q0=None, symbolic=False):
        """Π_{l=0}^{L−1} χ1(q_l) along the q trajectory from q_0 = ``q0`` (a symbol ``q0``
        when None): E‖δh_0‖²/E‖δh_L‖², the squared-gradient ratio over L layers, as a
        SymPy expression (None if no closed form).

        When χ1(q) does not depend on q (relu family) this is χ1^L for any ``depth``,
        including a SymPy symbol; otherwise ``depth`` must be an integer ≤ 32 and the
        q-map must have a closed form (erf: nested arcsines)."""
        import sympy
        chi = self.chi1_expr(symbolic)
        if chi is None:
            return None
        q = sympy.Symbol("q", positive=True)
        if q not in chi.free_symbols:
            return chi ** depth
        depth = integer("MeanField.chi1_product_expr", "depth", depth, 0,
                        why="(a symbolic depth needs a q-independent χ1)")
        if depth > 32:
            return None       # the nested expression grows with every layer
        qmap = self.q_map_expr(symbolic)
        if qmap is None:
            return None
        ql = sympy.Symbol("q0", positive=True) if q0 is None else sympy.nsimplify(q0)
        out = sympy.Integer(1)
        for _ in range(depth):
            out = out * chi.subs(q, ql)
            ql = qmap.subs(q, ql)
        return out


def _depth_scale(slope, name, where):
    """−1/log|slope|, ∞ when |slope| ≥ 1 − CRITICAL_TOL; the slope's error (at least 1e-12)
    carried through the increasing map a ↦ −1/log a over the interval it spans."""
    a, e = abs(float(slope)), max(slope.error, 1e-12)
    if a >= 1.0 - CRITICAL_TOL and (a - slope.error >= 1.0 - CRITICAL_TOL or slope.error <= 1e-12):
        return Value(math.inf, error=0.0, method=f"meanfield:{name}-critical")
    if a + e >= 1.0 - CRITICAL_TOL and slope.error > 1e-12:
        raise NotConvergedError(
            f"{where!r}: {name} not certified: the slope {a:.12g} ± {slope.error:.1e} may lie "
            f"within {CRITICAL_TOL:g} of 1, where the depth scale is infinite (it is at least "
            f"{-1.0 / math.log(max(a - slope.error, 1e-300)):.6g} layers)")
    if a == 0.0:
        return Value(0.0, error=0.0, method=f"meanfield:{name}")
    xi = -1.0 / math.log(a)
    hi = -1.0 / math.log(min(a + e, 1.0 - CRITICAL_TOL))
    lo = -1.0 / math.log(a - e) if a > e else 0.0
    return Value(xi, error=max(hi - xi, xi - lo), error_kind="estimate",
                 method=f"meanfield:{name}")


@functools.lru_cache(maxsize=4096)
def mehler_chi_c(act, sw2, sb2, q, q_error, c):
    """χc = σw² Σ n a_n² c^(n−1) / q* of a plain net (Mehler: the slope of the series c map at
    c), or None unless its error bound is within 1e-13·χc — then it saves the 2-D integral
    of φ'·φ'.  ``q_error``: q*'s error.

    Bound: each a_n's quadrature estimate (half-width panels), plus the part of a_n beyond
    |z| = zmax by Cauchy–Schwarz, √(∫φ² dΦ)·√(∫h_n² dΦ) over |z| > zmax (the tail plan's
    estimate of the first, ×10); then the terms n > N, at most the Hermite mass they hold,
    E[φ²] − Σ a_n² with E[φ²] = (q* − σb²)/σw², times max_{n>N} n|c|^(n−1), N ≤ CHI_C_TERMS
    (notes/mean-field.md §4)."""
    from ..gaussian.bivariate import _square, _z_max
    from ..gaussian.tails import plan
    from ..solve.criticality import mehler_amplitudes
    ac = abs(c)
    if ac >= 0.9:               # 201·0.9^200 = 1e-7 of the missing mass: the 2-D integral
        return None
    # Terms until |c|^n < e^-40 (the left-out ones then weigh < 1e-17 of the missing mass)
    terms = 30 if ac == 0 else min(CHI_C_TERMS, max(30, math.ceil(-40 / math.log(ac))))
    try:
        zmax = _z_max(act, q)
        with np.errstate(all="ignore"):
            a, err, inside = mehler_amplitudes(act, q, zmax, terms)
        cut = plan(_square(act), 2.0 ** math.ceil(math.log2(q))).tail_error
    except (VanishcalcError, ArithmeticError, ValueError):
        return None
    err = err + math.sqrt(10 * cut) * np.sqrt(np.abs(1.0 - inside) + 1e-15)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(err))):
        return None
    n = np.arange(a.size)
    sq_err = 2 * np.abs(a) * err + err * err             # bound on |a_n² error|
    value = float(np.sum(n[1:] * a[1:] ** 2 * c ** (n[1:] - 1)))
    bound = float(np.sum(n[1:] * sq_err[1:] * ac ** (n[1:] - 1)))
    mass = (q + 2 * q_error - sb2) / sw2 - float(np.sum(a * a)) + float(np.sum(sq_err))
    top = a.size                                          # first term left out
    if ac > 0:
        top = max(top, math.ceil(1.0 / math.log(1.0 / ac)))   # n|c|^(n−1) falls from here
    bound += max(mass, 0.0) * top * ac ** (top - 1)
    v = sw2 * value / q
    # /q* for /Q(q*) of the layer product: equal at the fixed point, to q*'s error
    e = sw2 * bound / q + abs(v) * (q_error / q + 4e-16)
    return v if e <= 1e-13 * abs(v) else None
