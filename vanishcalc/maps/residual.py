"""``Residual(branch, α)``: h' = h + α·branch(h); ``pre_norm_block`` / ``post_norm_block``.

Mean-field maps at infinite width (derivation: notes/residual.md; Yang & Schoenholz 2017).

**The cross term.**  The skip h and the branch output B(h) are correlated only through the
branch's dependence on h.  When the branch holds a random ``Dense`` layer, one unit of its
output is asymptotically independent of the same unit of its input (the weight row is
independent of h, and h_i enters (Wx)_i with weight O(1/√N)), so

.. math::

    E[h^a_i\\,B(h^b)_i] = m_h\\,m_B \\quad(a, b \\in \\{1, 2\\}),

which is 0 when either mean is 0 — always when the branch ends with a Dense layer
(m_B = 0) or the skip is centered (m_h = 0).  Then

.. math::

    q' = q + \\alpha^2 q_B,\\qquad \\mathrm{cov}' = \\mathrm{cov} + \\alpha^2 \\mathrm{cov}_B,
    \\qquad m' = m_h + \\alpha m_B,

and in general 2α·m_h·m_B is added to both.  Backward, δh = δh' + α J_Bᵀ δh'; under
gradient independence J_B contains a zero-mean weight matrix independent of δh', so the
cross term vanishes and

.. math::

    \\frac{E\\|\\delta h\\|^2}{E\\|\\delta h'\\|^2} = 1 + \\alpha^2 \\chi_B ,

with χ_B the branch's own factor at the block input.  The c-slope at fixed q is
(√(q1q2) + α²√(q_B1 q_B2)·∂c_B/∂c)/√(q1'q2').

A branch without a random Dense layer is refused: a deterministic branch (e.g. only φ) is
correlated with the skip unit by unit, and the maps above do not hold.

References
----------
G. Yang, S. Schoenholz, *Mean field residual networks: on the edge of chaos*, NeurIPS 2017,
arXiv:1712.08969 (reduced / full residual nets, Thms on polynomial vs exponential growth).
"""
from __future__ import annotations

import math

from ..errors import VanishcalcError
from ..validate import real
from .combinators import Serial, serial
from .dense import Dense
from .layer import Layer, _fmt
from .state import MomentState, geometric_mean


def _alpha_iv(where, alpha):
    return real(where, "alpha", alpha, nonneg=True, hi_bound=1e150,
                why="(the branch scale α ≥ 0; when the branch ends with a random Dense "
                    "layer the sign of α is absorbed by its symmetric weights — pass |α|)")


def _branch_iv(where, branch):
    if isinstance(branch, Layer):
        block = branch
    elif isinstance(branch, (list, tuple)):
        if not branch:
            raise VanishcalcError(f"{where}: the branch is empty; pass its layers, e.g. "
                                  "[LayerNorm(), Dense(1.0), Activation('tanh'), Dense(1.0)] "
                                  "(an empty branch is just the identity: drop the Residual)")
        block = serial(*branch)
    else:
        raise VanishcalcError(f"{where}: branch = {branch!r} is not a layer or a list of layers")
    if not _has_dense(block):
        raise VanishcalcError(
            f"{where}: the branch {block!r} has no random Dense layer; the residual maps need "
            "one (it decorrelates the branch output from the skip). Add Dense(σw, σb) to it")
    return block


def _has_dense(layer) -> bool:
    for l in layer.layers:
        if isinstance(l, Dense):
            return True
        if isinstance(l, Residual) and _has_dense(l.branch):
            return True
    return False


class Residual(Layer):
    """h' = h + α·branch(h), a skip connection around a block of layers.

    Parameters
    ----------
    branch : Layer or list of layers
        The residual branch; it must contain a random ``Dense`` layer.
    alpha : float
        Branch scale α ≥ 0 (SkipInit/ReZero start at α = 0; Fixup scales the branch by
        L^{−1/(2m−2)}).

    Raises
    ------
    VanishcalcError
        α < 0 or not finite, an empty branch, a branch without a Dense layer.

    Notes
    -----
    See the module docstring and notes/residual.md.

    Examples
    --------
    >>> from vanishcalc.maps import Activation, Dense, Residual
    >>> r = Residual([Activation("relu"), Dense(2 ** 0.5)], alpha=0.5)
    >>> from vanishcalc.maps.state import MomentState
    >>> round(r.moment_map(MomentState.single(1.0)).q, 12)     # 1 + α²·(σw²/2)·1
    1.25
    >>> round(r.grad_factor(MomentState.single(1.0)), 12)       # 1 + α²·χ_B
    1.25
    """

    def __init__(self, branch, alpha=1.0):
        self.branch = _branch_iv("Residual", branch)
        self.alpha = _alpha_iv("Residual", alpha)

    @property
    def batch_coupled(self):
        return any(getattr(l, "batch_coupled", False) for l in self.branch.layers)

    def _cross(self, state, out_b):
        """E[h·B(h)] per unit = m_h·m_B (0 when either is 0); refuses an untracked mean."""
        m_h = state.mean if state.mean is not None else None
        m_b = out_b.mean
        if m_h == 0.0 or m_b == 0.0:
            return 0.0
        if m_h is None or m_b is None:
            raise VanishcalcError(
                f"{self!r}: the skip and the branch output may both have a nonzero mean "
                "(their product is the cross term E[h·B(h)], and the mean after a nonlinearity "
                "is not tracked); end the branch with a Dense layer")
        return m_h * m_b

    def moment_map(self, state: MomentState) -> MomentState:
        out_b = self.branch.moment_map(state)
        a2 = self.alpha ** 2
        x = 2.0 * self.alpha * self._cross(state, out_b)
        q1 = state.q1 + a2 * out_b.q1 + x
        q2 = state.q2 + a2 * out_b.q2 + x
        cov = state.cov + a2 * out_b.cov + x
        c = max(-1.0, min(1.0, cov / geometric_mean(q1, q2))) if q1 > 0 and q2 > 0 else 1.0
        mean = (None if state.mean is None or out_b.mean is None
                else state.mean + self.alpha * out_b.mean)
        # a Gaussian skip plus an independent Gaussian branch output is Gaussian
        gauss = bool(state.is_gaussian and (out_b.is_gaussian or self.alpha == 0.0))
        return state.replace(q1=q1, q2=q2, c=c, mean=mean, is_gaussian=gauss)

    def grad_factor(self, state: MomentState) -> float:
        if self.alpha == 0.0:
            return 1.0
        return 1.0 + self.alpha ** 2 * self.branch.grad_factor(state)

    def q_slope(self, state: MomentState) -> float:
        if self.alpha == 0.0:
            return 1.0
        if self._cross(state, self.branch.moment_map(state)) != 0.0:
            return super().q_slope(state)      # the mean term moves with q: differentiate
        return 1.0 + self.alpha ** 2 * self.branch.q_slope(state)

    def c_slope(self, state: MomentState) -> float:
        out = self.moment_map(state)
        if out.q1 <= 0 or out.q2 <= 0:
            return 0.0
        if self.alpha == 0.0:
            return geometric_mean(state.q1, state.q2) / geometric_mean(out.q1, out.q2)
        out_b = self.branch.moment_map(state)
        s_b = self.branch.c_slope(state)
        num = (geometric_mean(state.q1, state.q2)
               + self.alpha ** 2 * geometric_mean(out_b.q1, out_b.q2) * s_b)
        return num / geometric_mean(out.q1, out.q2)

    def moments_expr(self, q, cov, symbolic=False):
        if self.alpha != 0.0:
            return None     # the branch's closed form would need the mean bookkeeping too
        return q, cov

    def __repr__(self):
        inner = ", ".join(map(repr, self.branch.layers))
        return f"Residual([{inner}], alpha={_fmt(self.alpha)})"


def pre_norm_block(phi, alpha, sigma_w=1.0, sigma_b=0.0, sigma_w2=None, gamma=1.0, beta=0.0):
    """h' = h + α·Dense₂(φ(Dense₁(LN(h)))) — the pre-LN residual block (transformer MLP style).

    ``sigma_w2`` is the second Dense's σw (default ``sigma_w``)."""
    from .activation import Activation
    from .norm import LayerNorm
    sw2 = sigma_w if sigma_w2 is None else sigma_w2
    return Residual([LayerNorm(gamma, beta), Dense(sigma_w, sigma_b), Activation(phi),
                     Dense(sw2, sigma_b)], alpha)


def post_norm_block(phi, alpha, sigma_w=1.0, sigma_b=0.0, sigma_w2=None, gamma=1.0, beta=0.0):
    """h' = LN(h + α·Dense₂(φ(Dense₁(h)))) — the post-LN residual block (original transformer)."""
    from .activation import Activation
    from .norm import LayerNorm
    sw2 = sigma_w if sigma_w2 is None else sigma_w2
    return Serial([Residual([Dense(sigma_w, sigma_b), Activation(phi), Dense(sw2, sigma_b)],
                            alpha), LayerNorm(gamma, beta)])


__all__ = ["Residual", "post_norm_block", "pre_norm_block"]
