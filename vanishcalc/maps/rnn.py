"""Mean field of a vanilla RNN over time, h_t = φ(W h_{t−1} + U x_t + b), and recurrent BN/LN.

Pre-activations a_t = W h_{t−1} + U x_t + b with W_ij ~ N(0, σw²/N), U_ij ~ N(0, σu²/D),
b_i ~ N(0, σb²), inputs x_t fresh at every step with E[x²] = ``x2`` per coordinate and
correlation ``x_corr`` between the two sequences tracked.  At infinite width and with
gradient independence (the same mean-field assumptions as the feed-forward theory; W is
reused over time, which the mean field ignores — Chen, Pennington & Schoenholz 2018 justify
it for the forward map):

.. math::

    q_{t+1} = \\sigma_w^2 E[\\varphi(\\sqrt{q_t} z)^2] + \\sigma_u^2 x_2 + \\sigma_b^2,\\qquad
    \\mathrm{cov}_{t+1} = \\sigma_w^2 E[\\varphi(u_1)\\varphi(u_2)] + \\sigma_u^2 \\rho_x x_2 + \\sigma_b^2,

i.e. the feed-forward q-map with σb² → σb² + σu²·x2, and the gradient through one time step
is multiplied by χ_t = σw² E[φ'(√q_t z)²].  So every feed-forward result (q*, χ1, ξ, the
critical line) carries over with that effective bias.  h_0 = 0 gives q_1 = σu² x2 + σb².

Recurrent BatchNorm (Cooijmans et al. 2017, eq. 6) normalizes W h and U x separately:
a = BN(W h; γ_h) + BN(U x; γ_x) + β.  At infinite batch, a ~ N(β, γ_h² + γ_x²) whatever
the state, and one step multiplies E‖δh‖² by γ_h²·E[φ'(a)²]/Var_batch[φ(a)].  Their γ = 0.1
keeps tanh linear: E[tanh'(0.1 z)] ≈ 0.990 against 0.606 at γ = 1.
Recurrent LayerNorm (Ba et al. 2016, eq. 4 in recurrence) normalizes a over units:
a = γ·LN(W h + U x) + β, one step multiplies it by
γ²σw² E[φ'(γz+β)²]/(σw² E[φ(γz+β)²] + σu² x2 + σb²).

Derivations: notes/recurrent.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


from ..activation import activation
from ..errors import VanishcalcError
from ..value import Value
from ..validate import integer, real
from .activation import Nonlinearity, derivative_of, first_moment, second_moment, shifted
from .dense import Dense
from .layer import _fmt
from .meanfield import MeanField


class RecurrentDense(Dense):
    """a = W h + U x + b: the affine half of one RNN step (input x fresh at every step).

    It is a :class:`Dense` layer whose additive terms are the step's drive: the input adds
    σu²·E[x²] to q and σu²·ρx·E[x²] to the covariance, on top of σb².

    .. math:: q' = \\sigma_w^2 q + \\sigma_u^2 x_2 + \\sigma_b^2,\\quad
              \\mathrm{cov}' = \\sigma_w^2 \\mathrm{cov} + \\sigma_u^2 \\rho_x x_2 + \\sigma_b^2
    """

    def __init__(self, sigma_w, sigma_u=0.0, sigma_b=0.0, x2=1.0, x_corr=0.0):
        w = "RecurrentDense"
        super().__init__(sigma_w, sigma_b)
        self.sigma_u = real(w, "sigma_u", sigma_u, nonneg=True)
        self.x2 = real(w, "x2", x2, nonneg=True)
        self.x_corr = real(w, "x_corr", x_corr, lo=-1.0, hi=1.0)
        self.drive = self.sigma_u ** 2 * self.x2 + self.sigma_b ** 2        # q added per step
        self.drive_cov = self.sigma_u ** 2 * self.x2 * self.x_corr + self.sigma_b ** 2
        self.sigma_b2, self.cov_b2 = self.drive, self.drive_cov

    def moments_expr(self, q, cov, symbolic=False):
        return None

    def __repr__(self):
        return (f"RecurrentDense(sigma_w={_fmt(self.sigma_w)}, sigma_u={_fmt(self.sigma_u)}, "
                f"sigma_b={_fmt(self.sigma_b)}, x2={_fmt(self.x2)}, x_corr={_fmt(self.x_corr)})")


class RNNMeanField:
    """Mean field over time of h_t = φ(W h_{t−1} + U x_t + b).

    Parameters
    ----------
    spec : φ
    sigma_w, sigma_u, sigma_b : float
        Recurrent weight, input weight and bias scales (σw², σu² over fan-in).
    x2 : float
        Per-coordinate second moment of the inputs, E[x²].
    x_corr : float
        Correlation of the two input sequences at each step.

    The step is the layer ``serial(Activation(φ), RecurrentDense(...))`` acting on
    pre-activations, so ``.meanfield`` (a :class:`MeanField` of that block) gives q*, c*,
    χ1 (the per-step gradient factor at q*), ξq, ξc; and ``critical_sigma_w()`` solves
    χ1 = 1 for σw.

    Examples
    --------
    >>> rnn = RNNMeanField("tanh", sigma_w=1.0, sigma_u=0.5)
    >>> p = rnn.propagate(3)
    >>> float(p.q[0])       # q_1 = σu² x2 + σb² (h_0 = 0)
    0.25
    """

    def __init__(self, spec, sigma_w, sigma_u=0.0, sigma_b=0.0, x2=1.0, x_corr=0.0):
        self.act = activation(spec)
        self.step = RecurrentDense(sigma_w, sigma_u, sigma_b, x2, x_corr)
        self.meanfield = MeanField([Nonlinearity(self.act), self.step])

    @property
    def sigma_b_effective(self) -> float:
        """√(σb² + σu²·x2): the feed-forward bias scale with the same q-map."""
        return math.sqrt(self.step.drive)

    def propagate(self, steps, q1=None, c1=None):
        """q_t, c_t of the pre-activations a_t and grad_t = E‖δa_t‖²/E‖δa_T‖², t = 1..T.

        Index 0 is a_1 (defaults: h_0 = 0, so q_1 = σu² x2 + σb², c_1 = its input
        correlation); index t is a_{t+1}.  Returns a ``Propagation`` with length steps."""
        steps = integer("RNNMeanField.propagate", "steps", steps, 1)
        s = self.step
        if q1 is None:
            q1 = s.drive
            if q1 <= 0:
                raise VanishcalcError("RNNMeanField.propagate: with h_0 = 0 and σu = σb = 0 the "
                                      "state stays 0; pass q1 > 0")
            c1 = s.drive_cov / s.drive if c1 is None else c1
        c1 = 0.0 if c1 is None else c1
        return self.meanfield.propagate(steps - 1, q0=q1, c0=c1)

    def chi(self) -> Value:
        """Per-step gradient factor at q*: χ = σw² E[φ'(√q* z)²]."""
        return self.meanfield.chi1()

    def critical_sigma_w(self) -> float:
        """σw with χ = 1 at the fixed point (σu, σb, x2 fixed): the feed-forward edge of chaos
        at the effective bias √(σb² + σu² x2) (:func:`vanishcalc.solve.criticality.critical_sigma_w`;
        x_corr does not enter q* or χ)."""
        from ..solve.criticality import critical_sigma_w
        return float(critical_sigma_w(self.act, self.sigma_b_effective).sigma_w)


# ---------------------------------------------------------------- recurrent normalization


def expected_derivative(spec, gamma=1.0, beta=0.0) -> float:
    """E[φ'(γz + β)]: how linear a normalized unit stays (Cooijmans et al. 2017, §4, Fig. 1)."""
    act = activation(spec)
    g = real("expected_derivative", "gamma", gamma, positive=True)
    b = real("expected_derivative", "beta", beta)
    return first_moment(derivative_of(shifted(act, b)), g * g)


@dataclass(frozen=True)
class RecurrentNorm:
    """Per-step statistics of a normalized RNN: pre-activation a ~ N(β, q - β²).

    ``q``: E[a²]; ``mean_derivative``: E[φ'(a)]; ``rate``: per-step growth of E‖δh‖²."""

    q: float
    mean_derivative: float
    rate: float


def recurrent_bn(spec, gamma_h=0.1, gamma_x=0.1, beta=0.0) -> RecurrentNorm:
    """Recurrent BN (Cooijmans et al. 2017, eq. 6), infinite batch: a ~ N(β, γ_h² + γ_x²),
    rate = γ_h² E[φ'(a)²]/Var[φ(a)] per step."""
    act = activation(spec)
    w = "recurrent_bn"
    gh = real(w, "gamma_h", gamma_h, positive=True)
    gx = real(w, "gamma_x", gamma_x, nonneg=True)
    b = real(w, "beta", beta)
    v = gh * gh + gx * gx
    sa = shifted(act, b)
    m1, m2 = first_moment(sa, v), second_moment(sa, v)
    var = m2 - m1 * m1
    if not var > 0:
        raise VanishcalcError(f"{w}: φ(a) is constant; BN of W h divides by zero")
    d = derivative_of(sa)
    return RecurrentNorm(q=v + b * b, mean_derivative=first_moment(d, v),
                         rate=gh * gh * second_moment(d, v) / var)


def recurrent_ln(spec, gamma=1.0, beta=0.0, sigma_w=1.0, sigma_u=0.0, sigma_b=0.0,
                 x2=1.0) -> RecurrentNorm:
    """Recurrent LN (Ba et al. 2016, §3.1 in an RNN): a = γ·LN(W h + U x + b) + β, infinite
    width; rate = γ²σw² E[φ'(a)²]/(σw² E[φ(a)²] + σu² x2 + σb²) per step."""
    act = activation(spec)
    w = "recurrent_ln"
    g = real(w, "gamma", gamma, positive=True)
    b = real(w, "beta", beta)
    sw = real(w, "sigma_w", sigma_w, positive=True)
    su = real(w, "sigma_u", sigma_u, nonneg=True)
    sb = real(w, "sigma_b", sigma_b, nonneg=True)
    xx = real(w, "x2", x2, nonneg=True)
    sa = shifted(act, b)
    d = derivative_of(sa)
    den = sw * sw * second_moment(sa, g * g) + su * su * xx + sb * sb
    if not den > 0:
        raise VanishcalcError(f"{w}: the summed input W h + U x + b is 0; LN divides by zero")
    return RecurrentNorm(q=g * g + b * b, mean_derivative=first_moment(d, g * g),
                         rate=g * g * sw * sw * second_moment(d, g * g) / den)
