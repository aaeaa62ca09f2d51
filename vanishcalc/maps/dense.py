"""``Dense(σw, σb)``: h = W·x + b with W_ij ~ N(0, σw²/fan_in), b_i ~ N(0, σb²).

.. math::

    q' = \\sigma_w^2 q + \\sigma_b^2,\\qquad
    \\mathrm{cov}' = \\sigma_w^2\\,\\mathrm{cov} + \\sigma_b^2

(Poole et al. 2016, eqs. 3 and 5, the affine half.)  The output is Gaussian with mean 0 for
any input (a random affine map of a wide layer), so ``is_gaussian`` becomes True.  Going
backward, δx = Wᵀδh multiplies the expected squared gradient norm by σw² (equal widths).
"""
from __future__ import annotations

import math

from ..validate import real
from .layer import Layer, _fmt
from .state import MomentState, geometric_mean


def _dense_iv(where, sigma_w, sigma_b):
    # 1e150 bounds σ² below the largest double (1e300**2 raised OverflowError).
    return (real(where, "sigma_w", sigma_w, positive=True, hi_bound=1e150,
                 why="(the weight std times √fan_in)"),
            real(where, "sigma_b", sigma_b, nonneg=True, hi_bound=1e150, why="(the bias std)"))


def _short_rational(v):
    import sympy
    if v == 0:
        return sympy.Integer(0)
    return sympy.nsimplify(v, rational=True, tolerance=1e-14 * abs(v))


class Dense(Layer):
    """A random dense layer with weight variance σw²/fan_in and bias variance σb²."""

    def __init__(self, sigma_w, sigma_b=0.0):
        self.sigma_w, self.sigma_b = _dense_iv(type(self).__name__, sigma_w, sigma_b)
        self.sigma_w2 = self.sigma_w ** 2
        self.sigma_b2 = self.sigma_b ** 2
        self.cov_b2 = self.sigma_b2    # the bias is shared by both inputs: it adds to cov too

    def moment_map(self, state: MomentState) -> MomentState:
        q1 = self.sigma_w2 * state.q1 + self.sigma_b2
        q2 = self.sigma_w2 * state.q2 + self.sigma_b2
        cov = self.sigma_w2 * state.cov + self.cov_b2
        c = max(-1.0, min(1.0, cov / geometric_mean(q1, q2))) if q1 > 0 and q2 > 0 else 1.0
        return state.replace(q1=q1, q2=q2, c=c, mean=0.0, is_gaussian=True)

    def grad_factor(self, state: MomentState) -> float:
        return self.sigma_w2

    def q_slope(self, state: MomentState) -> float:
        return self.sigma_w2

    def c_slope(self, state: MomentState) -> float:
        out = self.moment_map(state)
        if out.q1 <= 0 or out.q2 <= 0:
            return 0.0
        # ratios of square roots: q1·q2 underflows below q ~ 1e-154 (see MomentState.cov)
        return self.sigma_w2 * geometric_mean(state.q1 / out.q1, state.q2 / out.q2)

    def moments_expr(self, q, cov, symbolic=False):
        import sympy
        if symbolic:
            sw2 = sympy.Symbol("sigma_w", positive=True) ** 2
            sb2 = sympy.Symbol("sigma_b", nonnegative=True) ** 2
        else:
            # the shortest rational within 1e-14 (σw = 2**0.5 gives σw² = 2, not 2.0000000000000004)
            sw2, sb2 = _short_rational(self.sigma_w2), _short_rational(self.sigma_b2)
        return sw2 * q + sb2, sw2 * cov + sb2

    def __repr__(self):
        return f"Dense(sigma_w={_fmt(self.sigma_w)}, sigma_b={_fmt(self.sigma_b)})"
