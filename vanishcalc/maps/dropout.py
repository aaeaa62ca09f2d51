"""``Dropout(keep)``: inverted dropout x ↦ x·m/keep with m ~ Bernoulli(keep) per unit and input.

Mean-field maps (derivation: notes/dropout.md; Schoenholz et al. 2017, §5).  Every input
draws its own mask, independently of every other input:

.. math::

    q' = q/\\rho,\\qquad \\mathrm{cov}' = \\mathrm{cov}\\;(E[m^a m^b] = \\rho^2 \\text{ for } a \\ne b),
    \\qquad c' = \\rho\\,c \\;(q_1 = q_2),\\qquad m' = m

with ρ = keep.  Backward the same mask multiplies the gradient: E[(m/ρ)²] = 1/ρ, so the
gradient factor is 1/ρ, and ∂q'/∂q = 1/ρ, ∂c'/∂c = √(q1q2)/√(q1'q2') = ρ (at fixed q).

Consequence (Schoenholz et al. 2017, §5): c = 1 is no longer a fixed point (c'(1) = ρ < 1
after the dropout layer), so c* < 1 and χc = ∂c'/∂c at c* stays below 1 on the whole
critical line: ξc = −1/log χc is finite for every ρ < 1.  The output of a dropout layer is
not Gaussian (a mixture with an atom at 0), so an Activation directly after it is refused:
put it after the nonlinearity, before the next Dense (the usual placement).
"""
from __future__ import annotations

from ..errors import VanishcalcError
from ..validate import _as_float
from .layer import Layer, _fmt
from .state import MomentState, geometric_mean


def keep_iv(where, keep):
    """keep ∈ (0, 1] as a float, else a VanishcalcError naming the fix."""
    import math
    k = _as_float(f"{where}: ", "keep", keep)
    if not (math.isfinite(k) and 0.0 < k <= 1.0):
        raise VanishcalcError(
            f"{where}: keep = {keep!r} must lie in (0, 1] (the probability a unit is kept; "
            "keep = 1 − drop rate: a drop rate of 0.1 is keep = 0.9)")
    return k


class Dropout(Layer):
    """Inverted dropout with keep probability ρ: x·m/ρ, m ~ Bernoulli(ρ), a mask per input.

    Parameters
    ----------
    keep : float
        ρ ∈ (0, 1] (1 − the drop rate).

    Examples
    --------
    >>> from vanishcalc.maps.state import MomentState
    >>> out = Dropout(0.8).moment_map(MomentState(1.0, 1.0, 0.5))
    >>> round(out.q, 12), round(out.c, 12)
    (1.25, 0.4)
    """

    def __init__(self, keep):
        self.keep = keep_iv("Dropout", keep)

    def moment_map(self, state: MomentState) -> MomentState:
        k = self.keep
        q1, q2 = state.q1 / k, state.q2 / k
        cov = state.cov            # independent masks: E[m^a m^b]/ρ² = 1
        c = max(-1.0, min(1.0, cov / geometric_mean(q1, q2))) if q1 > 0 and q2 > 0 else 1.0
        return state.replace(q1=q1, q2=q2, c=c, is_gaussian=state.is_gaussian and k == 1.0)

    def grad_factor(self, state: MomentState) -> float:
        return 1.0 / self.keep

    def q_slope(self, state: MomentState) -> float:
        return 1.0 / self.keep

    def c_slope(self, state: MomentState) -> float:
        return self.keep

    def moments_expr(self, q, cov, symbolic=False):
        import sympy
        if symbolic:
            rho = sympy.Symbol("rho", positive=True)
        else:
            rho = sympy.nsimplify(self.keep, rational=True, tolerance=1e-14)
        return q / rho, cov

    def __repr__(self):
        return f"Dropout(keep={_fmt(self.keep)})"


__all__ = ["Dropout", "keep_iv"]
