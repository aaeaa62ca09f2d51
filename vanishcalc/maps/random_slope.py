"""Random and learned negative slopes: ``RReLU`` (torch.nn.RReLU) and ``prelu`` (torch.nn.PReLU).

RReLU (Xu et al. 2015, arXiv:1505.00853) is φ_a(x) = x for x ≥ 0 and a·x for x < 0 with a
slope a ~ U(lower, upper) (torch defaults 1/8, 1/3) drawn **per element and per forward
pass** in training mode; in eval mode a is the mean slope ā = (lower + upper)/2.  In torch
two inputs of a batch are different elements, so they do **not** share a unit's slope: their
slopes a₁, a₂ are independent of each other and of the pre-activations.  With
φ_a(u) = relu(u) − a·relu(−u) and, for a centered Gaussian pair (variances q₁, q₂,
correlation c, k₁ = E[relu(u₁)relu(u₂)] = √(q₁q₂)(√(1−c²) + (π − arccos c)c)/(2π),
Cho & Saul 2009):

.. math::

    E[\\varphi_a(u)^2] = q\\,\\frac{1 + E[a^2]}{2},\\qquad
    E[\\varphi_{a_1}(u_1)\\varphi_{a_2}(u_2)] = (1 - \\bar a)^2 k_1 + \\bar a\\, c\\sqrt{q_1 q_2}

(the slopes enter linearly and independently, so the cross moment is the leaky-ReLU kernel at
ā, while the second moment carries E[a²] = (l² + lu + u²)/3 > ā²).  So the c-map of training
mode maps c = 1 to (1 + ā²)/(1 + E[a²]) < 1: the slope noise decorrelates even two copies of
one input.  ``shared_slope=True`` models one slope per unit shared by both inputs (not torch):
then the (1 − ā)² becomes 1 − 2ā + E[a²].  Gradients use the slope of the forward pass:
E[φ'_a(u)²] = (1 + E[a²])/2 and E[φ'_{a₁}φ'_{a₂}] = (1 − ā)²k₀ + ā with
k₀ = (π − arccos c)/(2π).  Derivation: notes/random-slopes.md.

PReLU's slope is learned; at initialization it is a leaky ReLU with slope ``init`` (torch
default 0.25): :func:`prelu` returns that Activation, usable wherever a φ is.
"""
from __future__ import annotations

import math

import sympy

from ..activation import Activation, _activation_from_expr
from ..errors import VanishcalcError
from ..gaussian.bivariate import _arccos_k1
from ..validate import real
from ..value import Value
from .. import zoo
from .dense import _short_rational
from .layer import Layer, _fmt
from .state import MomentState, geometric_mean

__all__ = ["RReLU", "prelu"]

MODES = ("train", "eval")
GAIN_CONVENTIONS = ("second_moment", "std", "backward")


def _exact(where, name, value):
    """A real number as an exact SymPy number (0.125 → 1/8; 1/3 as a float → 1/3)."""
    if isinstance(value, sympy.Basic) and value.is_number and value.is_real:
        return sympy.nsimplify(value)
    v = real(where, name, value)
    try:
        return _short_rational(v)
    except (TypeError, ValueError, OverflowError):
        # nsimplify's tolerance underflows for subnormal-scale v (1e-300): keep v exactly
        return sympy.Rational(v)


def _leaky(slope) -> sympy.Expr:
    return zoo.ZOO["leaky_relu"].expr(slope)


def prelu(init=0.25) -> Activation:
    """PReLU at initialization: the leaky ReLU max(x, a·x) with a = ``init`` (torch default 0.25).

    Its gain is torch's ``calculate_gain('leaky_relu', init)`` = √(2/(1 + init²)).

    >>> from vanishcalc import gain
    >>> gain(prelu())
    4*sqrt(34)/17 ≈ 1.3719886811400708 (exact)
    """
    a = _exact("prelu", "init", init)
    return _activation_from_expr(_leaky(a), f"prelu({sympy.sstr(a)})")


class RReLU(Layer):
    """The randomized leaky ReLU layer x = φ_a(h), a ~ U(lower, upper) per element.

    Parameters
    ----------
    lower, upper : float
        The slope's range (torch.nn.RReLU defaults 1/8 and 1/3); lower ≤ upper.
    mode : {"train", "eval"}
        "train": a fresh independent slope per element (torch's training mode);
        "eval": the fixed mean slope (lower + upper)/2 (torch's eval mode).
    shared_slope : bool
        Training mode only: both inputs of a pair share the unit's slope (not torch; one
        slope per unit, as in a per-channel noise).  Default False (torch).

    Raises
    ------
    VanishcalcError
        lower > upper, non-finite values, an unknown mode; in ``moment_map``, a non-Gaussian
        or non-centered input.

    Examples
    --------
    >>> r = RReLU()                      # torch defaults: a ~ U(1/8, 1/3), E[a²] = 97/1728
    >>> r.gain()
    24*sqrt(438)/365 ≈ 1.3761172297943902 (exact)
    >>> RReLU(mode="eval").gain()        # calculate_gain('leaky_relu', 11/48)
    48*sqrt(194)/485 ≈ 1.378479664546057 (exact)
    """

    elementwise = True     # MeanField(RReLU(), σw, σb) is the plain net [RReLU, Dense(σw, σb)]

    def __init__(self, lower=sympy.Rational(1, 8), upper=sympy.Rational(1, 3), mode="train",
                 shared_slope=False):
        self.lower = _exact("RReLU", "lower", lower)
        self.upper = _exact("RReLU", "upper", upper)
        if self.lower > self.upper:
            raise VanishcalcError(f"RReLU: lower = {self.lower} > upper = {self.upper}; the slope "
                                  "is drawn from U(lower, upper), so lower ≤ upper")
        if mode not in MODES:
            raise VanishcalcError(f"RReLU: mode must be 'train' or 'eval', got {mode!r}")
        if not isinstance(shared_slope, bool):
            raise VanishcalcError(f"RReLU: shared_slope must be True or False, got {shared_slope!r}")
        if shared_slope and mode == "eval":
            raise VanishcalcError("RReLU: shared_slope applies to training mode only (eval mode "
                                  "has one fixed slope)")
        self.mode, self.shared_slope = mode, shared_slope
        l, u = self.lower, self.upper
        self.mean_slope = (l + u) / 2
        # E[a²] of U(l, u) = (l² + lu + u²)/3; eval mode has the fixed slope ā
        self.mean_square_slope = (l * l + l * u + u * u) / 3 if mode == "train" else self.mean_slope ** 2
        # the coefficient of k₁ (or k₀) in the cross moments: E[(1 − a₁)(1 − a₂)]
        self.pair_coeff = (1 - 2 * self.mean_slope + self.mean_square_slope) if shared_slope \
            else (1 - self.mean_slope) ** 2
        self._abar = float(self.mean_slope)
        self._diag = float((1 + self.mean_square_slope) / 2)
        self._pair = float(self.pair_coeff)

    # ---- the deterministic φ of eval mode (a spec usable everywhere)

    @property
    def eval_activation(self) -> Activation:
        """The leaky ReLU at the mean slope: torch's RReLU in eval mode, as an Activation."""
        return _activation_from_expr(_leaky(self.mean_slope),
                                     f"rrelu_eval({sympy.sstr(self.lower)}, {sympy.sstr(self.upper)})")

    # ---- gains

    def gain(self, convention="second_moment") -> Value:
        """The init gain (weight std = gain/√fan_in) in this mode, exact.

        second_moment: √(2/(1 + E[a²])); backward: the same (the backward pass multiplies by
        the forward slope); std: 1/√((1 + E[a²])/2 − (1 − ā)²/(2π)) (E[φ_a(z)] = (1 − ā)/√(2π)).
        In eval mode E[a²] = ā², torch's calculate_gain('leaky_relu', ā)."""
        if convention not in GAIN_CONVENTIONS:
            raise VanishcalcError(f"RReLU.gain: convention must be one of "
                                  f"{', '.join(GAIN_CONVENTIONS)}; got {convention!r}")
        m2 = (1 + self.mean_square_slope) / 2
        if convention == "std":
            m2 = m2 - (1 - self.mean_slope) ** 2 / (2 * sympy.pi)
        if m2 == 0:
            raise VanishcalcError(f"RReLU.gain: the {convention} moment is 0 (φ is constant); no gain")
        return Value.from_exact(sympy.sqrt(1 / m2), method=f"exact:rrelu-{self.mode}")

    def __vanishcalc_gain__(self, convention, q):
        # vanishcalc.gain(RReLU(), ...): φ_a is positively homogeneous, so q drops out
        return self.gain(convention)

    # ---- mean-field layer

    def _centered(self, state: MomentState, where):
        if not state.is_gaussian:
            raise VanishcalcError(f"{self!r}.{where}: needs Gaussian pre-activations; put a Dense "
                                  "layer before it")
        if state.mean not in (0.0, None) and state.mean != 0:
            raise VanishcalcError(f"{self!r}.{where}: needs centered pre-activations (mean 0), got "
                                  f"mean {state.mean:g}; the closed kernels here assume a Dense "
                                  "layer (or BatchNorm with β = 0) before RReLU")
        return state.q1, state.q2, state.c

    def moment_map(self, state: MomentState) -> MomentState:
        q1, q2, c = self._centered(state, "moment_map")
        e1, e2 = self._diag * q1, self._diag * q2
        r = geometric_mean(q1, q2)
        cov = self._pair * r * _k1(c) + self._abar * c * r
        cc = cov / geometric_mean(e1, e2) if e1 > 0 and e2 > 0 else 1.0
        return state.replace(q1=e1, q2=e2, c=max(-1.0, min(1.0, cc)), mean=None, is_gaussian=False)

    def grad_factor(self, state: MomentState) -> float:
        self._centered(state, "grad_factor")
        return self._diag

    def q_slope(self, state: MomentState) -> float:
        self._centered(state, "q_slope")
        return self._diag

    def c_slope(self, state: MomentState) -> float:
        q1, q2, c = self._centered(state, "c_slope")
        # ∂c'/∂c = √(q1 q2)/√(q1' q2') · E[φ'φ'] (Price's theorem for each draw of the slopes)
        return (self._pair * _k0(c) + self._abar) / self._diag

    def moments_expr(self, q, cov, symbolic=False):
        c = cov / q
        k1 = q * _arccos_k1(c)
        return (q * (1 + self.mean_square_slope) / 2,
                self.pair_coeff * k1 + self.mean_slope * c * q)

    def __repr__(self):
        extra = ", shared_slope=True" if self.shared_slope else ""
        return (f"RReLU(lower={_fmt(float(self.lower))}, upper={_fmt(float(self.upper))}, "
                f"mode={self.mode!r}{extra})")


def _k1(c):
    """E[relu(z₁)relu(z₂)] for unit variances and correlation c (Cho & Saul 2009, n = 1)."""
    c = max(-1.0, min(1.0, c))
    return (math.sqrt(max(0.0, 1.0 - c * c)) + (math.pi - math.acos(c)) * c) / (2 * math.pi)


def _k0(c):
    """P(z₁ > 0, z₂ > 0) = (π − arccos c)/(2π) (Cho & Saul 2009, n = 0)."""
    c = max(-1.0, min(1.0, c))
    return (math.pi - math.acos(c)) / (2 * math.pi)
