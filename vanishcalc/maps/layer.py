"""``Layer``: one mean-field layer — a forward moment map and a backward gradient factor.

A layer is one small object (Neural Tangents' stax layering, ``neural_tangents/_src/stax``):

``moment_map(state) -> state``
    the forward mean-field map of :class:`~vanishcalc.maps.state.MomentState`;
``grad_factor(state) -> float``
    E‖∂L/∂(layer input)‖² / E‖∂L/∂(layer output)‖², evaluated at the forward input state
    (the mean-field / gradient-independence assumption of Schoenholz et al. 2017, §4);
``c_slope(state)``, ``q_slope(state)``
    ∂c_out/∂c_in at fixed q and ∂q_out/∂q_in (single input); the defaults are central
    differences of ``moment_map``, layers override them with exact identities;
``moments_expr(q, cov)``
    SymPy (q_out, cov_out) as functions of the input second moment and covariance, or None;
``__repr__``.

:func:`~vanishcalc.maps.combinators.serial` of layers is again a layer; composition rules live
in state flags (``MomentState.is_gaussian``).
"""
from __future__ import annotations

import math

from .state import MomentState


class Layer:
    """Base class of every mean-field layer."""

    #: True for a layer that acts elementwise as the net's nonlinearity (φ, RReLU): then
    #: ``MeanField(layer, sigma_w, sigma_b)`` means the plain net [layer, Dense(σw, σb)].
    elementwise = False

    def moment_map(self, state: MomentState) -> MomentState:
        raise NotImplementedError

    def grad_factor(self, state: MomentState) -> float:
        return 1.0

    def q_slope(self, state: MomentState) -> float:
        """∂q_out/∂q_in for a single input (central difference; override with an identity)."""
        q = state.q1
        h = 1e-5 * q
        up = self.moment_map(state.replace(q1=q + h, q2=q + h)).q1
        dn = self.moment_map(state.replace(q1=q - h, q2=q - h)).q1
        return (up - dn) / (2 * h)

    def c_slope(self, state: MomentState) -> float:
        """∂c_out/∂c_in at fixed q (central difference; override with an identity)."""
        c = state.c
        h = 1e-5
        lo, hi = max(-1.0, c - h), min(1.0, c + h)
        return (self.moment_map(state.replace(c=hi)).c
                - self.moment_map(state.replace(c=lo)).c) / (hi - lo)

    def moments_expr(self, q, cov):
        """(q_out, cov_out) as SymPy expressions of the input (q, cov), or None if unknown."""
        return None

    @property
    def layers(self):
        return (self,)

    def __iter__(self):
        return iter(self.layers)


def _fmt(v) -> str:
    return f"{float(v):g}" if isinstance(v, (int, float)) and math.isfinite(v) else repr(v)
