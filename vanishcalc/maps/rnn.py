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

import numpy as np

from ..activation import activation
from ..errors import VanishcalcError
from ..value import Value
from ..validate import integer, real
from .activation import (Nonlinearity, cross_moment, derivative_of, first_moment, second_moment,
                         shifted)
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


# ---------------------------------------------------------------- normalized RNN over time

NORMS = ("bn", "ln")


def width_iv(where, width):
    """None (infinite width) or an integer ≥ 4 (LN over N units: 1/‖Py‖², ‖Py‖² ~ χ²_{N−1},
    has a finite mean only for N ≥ 4)."""
    if width is None:
        return None
    return integer(where, "width", width, 4, why=(
        "(None for infinite width): LayerNorm over N units needs N ≥ 4 — at N = 1 the "
        "standard deviation is 0, at N = 2 every unit becomes ±γ, and at N = 3 the expected "
        "squared gradient is infinite"))


class RecurrentNormRNN:
    """Mean field over time of an RNN whose recurrence is normalized (BN or LN).

    .. math::

        \\text{bn:}\\quad a_t = γ_h\\,\\mathrm{BN}(W h_{t-1}) + γ_x\\,\\mathrm{BN}(U x_t) + β
        \\qquad\\text{(Cooijmans et al. 2017, eq. 6)}

        \\text{ln:}\\quad a_t = γ\\,\\mathrm{LN}(W h_{t-1} + U x_t + b) + β
        \\qquad\\text{(Ba et al. 2016, §3.1)}

    and h_t = φ(a_t), h_0 = 0.  With ``spec="x"`` (φ the identity) and β = 0 the ``"bn"`` model
    is the RNN h_t = BN(W h_{t−1}) + BN(U x_t) with no tanh and no bias (BN in place of
    tanh); ``"ln"`` with ``spec="x"`` is h_t = LN(W h_{t−1} + U x_t).  BN of the zero state
    h_0 is taken as 0 (the ε of a real BN), so a_1 = γ_x BN(U x_1) + β.

    Per step (index t holds a_{t+1}; v = γ_x² at the first step, γ_h² + γ_x² after):

    * bn: q = v + β², c = (β² − v/(B−1))/(v + β²) exactly (standardized rows have batch mean
      0, variance 1 and pairwise mean product −1/(B−1)); the gradient through one step is
      multiplied by

      .. math:: λ_t = \\frac{γ_h^2 E[φ'(a)^2]}{E[φ(a)^2] − E[φ(a_1)φ(a_2)]}
                \\frac{B}{B-3}\\frac{B-2}{B-1},\\quad a ∼ N(β, v),\\ \\mathrm{corr}(a_1 − β, a_2 − β) = −\\tfrac{1}{B-1}

      (notes/normalization.md's BN Jacobian with the recurrent share γ_h² of the variance);
      B = ∞: γ_h² E[φ'(a)²]/Var φ(a) (:func:`recurrent_bn`).  For φ = x it is exactly
      γ_h²/(γ_h² + γ_x²) · (B−2)/(B−3): σw, σu and σb cancel.
    * ln: q = γ² + β²; the centered correlation of the summed input y = W h + U x + b is
      ρ = (σw² E[φ(a_1)φ(a_2)] + σu² ρx x2 + σb²)/(σw² E[φ(a)²] + σu² x2 + σb²), so
      c = (γ²ρ + β²)/(γ² + β²); the gradient factor is
      γ²σw² E[φ'(a)²]/(σw² E[φ(a)²] + σu² x2 + σb²) · (N−2)/(N−3) (N = ∞: 1), a ∼ N(β, γ²)
      (:func:`recurrent_ln`).

    Parameters
    ----------
    spec : φ ("x" for no nonlinearity)
    norm : {"bn", "ln"}
    gamma : float, optional
        bn: γ_h (default 0.1, Cooijmans et al.'s init); ln: γ (default 1).
    gamma_x : float, optional
        bn only: γ_x (default: γ_h).
    beta : float
    sigma_w, sigma_u, sigma_b, x2, x_corr : float
        As for :class:`RNNMeanField` (under BN only σu > 0 and x_corr < 1 matter).
    batch : int, optional
        bn: the batch B ≥ 4 (None: infinite).
    width : int, optional
        ln: the width N ≥ 4 (None: infinite).

    Notes
    -----
    notes/recurrent.md ("Normalized RNN: the seed question").  For φ nonlinear the
    finite-batch factor neglects the batch mean of φ'·δa (an O(1/B²) term); exact for φ = x.

    Examples
    --------
    >>> rnn = RecurrentNormRNN("x", "bn", gamma=1.0)        # BN in place of tanh
    >>> round(rnn.step_rate(2), 12)                         # γ_h²/(γ_h² + γ_x²)
    0.5
    """

    def __init__(self, spec, norm, gamma=None, gamma_x=None, beta=0.0, sigma_w=1.0,
                 sigma_u=1.0, sigma_b=0.0, x2=1.0, x_corr=0.0, batch=None, width=None):
        w = "RecurrentNormRNN"
        if norm not in NORMS:
            raise VanishcalcError(f"{w}: norm = {norm!r} is unknown; use 'bn' (BN(W h) + BN(U x), "
                                  "Cooijmans et al.) or 'ln' (LN(W h + U x + b), Ba et al.)")
        self.act = activation(spec)
        self.norm = norm
        self.beta = real(w, "beta", beta)
        self.step = RecurrentDense(sigma_w, sigma_u, sigma_b, x2, x_corr)
        if norm == "bn":
            self.gamma = real(w, "gamma", 0.1 if gamma is None else gamma, positive=True,
                              why="(γ_h of BN(W h))")
            self.gamma_x = real(w, "gamma_x", self.gamma if gamma_x is None else gamma_x,
                                positive=True, why="(γ_x of BN(U x); 0 would leave the state "
                                "constant over the batch, and BN(W h) would divide by 0)")
            if self.step.sigma_u == 0 or self.step.x2 == 0:
                raise VanishcalcError(f"{w}: BN(U x) needs σu > 0 and x2 > 0 (the input term "
                                      "must vary over the batch); pass sigma_u=1.0")
            if self.step.x_corr == 1.0:
                raise VanishcalcError(f"{w}: x_corr = 1 makes every input of the batch identical "
                                      "and BN(U x) divides by 0; pass x_corr < 1")
            from .norm import batch_iv
            self.batch = batch_iv(w, batch)
            if width is not None:
                raise VanishcalcError(f"{w}: width is the LayerNorm finite-width correction; for "
                                      "norm='bn' pass batch= instead")
            self.width = None
        else:
            if gamma_x is not None:
                raise VanishcalcError(f"{w}: norm='ln' normalizes the sum W h + U x + b with one "
                                      "γ; pass gamma=, not gamma_x=")
            self.gamma = real(w, "gamma", 1.0 if gamma is None else gamma, positive=True)
            self.gamma_x = None
            if self.step.drive <= 0:
                raise VanishcalcError(f"{w}: with h_0 = 0 and σu = σb = 0 the summed input is 0 "
                                      "and LN divides by 0; pass sigma_u > 0")
            self.width = width_iv(w, width)
            if batch is not None:
                raise VanishcalcError(f"{w}: LayerNorm has no batch statistics; for norm='ln' "
                                      "pass width= (its finite-width correction) instead")
            self.batch = None
        self._shifted = shifted(self.act, self.beta)
        self._deriv = derivative_of(self._shifted)

    def __repr__(self):
        g = (f"gamma={_fmt(self.gamma)}, gamma_x={_fmt(self.gamma_x)}" if self.norm == "bn"
             else f"gamma={_fmt(self.gamma)}")
        return (f"RecurrentNormRNN({self.act.name!r}, {self.norm!r}, {g}, beta={_fmt(self.beta)}, "
                f"batch={self.batch}, width={self.width})")

    def _variance(self, t):
        """Var a_t (t = 1, 2, ...)."""
        if self.norm == "ln":
            return self.gamma ** 2
        return self.gamma_x ** 2 if t == 1 else self.gamma ** 2 + self.gamma_x ** 2

    def step_rate(self, t) -> float:
        """E‖δa_{t+1}‖²/E‖δa_t‖², the gradient factor of the step from a_t (t ≥ 1)."""
        t = integer("RecurrentNormRNN.step_rate", "t", t, 1)
        v = self._variance(t)
        d2 = second_moment(self._deriv, v)
        m2 = second_moment(self._shifted, v)
        if self.norm == "bn":
            if self.batch is None:
                m1 = first_moment(self._shifted, v)
                var, factor = m2 - m1 * m1, 1.0
            else:
                B = self.batch
                var = m2 - cross_moment(self._shifted, v, v, -1.0 / (B - 1))
                factor = B / (B - 3.0) * (B - 2.0) / (B - 1.0)
            if not var > 0:
                raise VanishcalcError(f"RecurrentNormRNN: φ(a_{t}) is constant over the batch "
                                      f"(φ = {self.act.name}, β = {self.beta}); BN(W h) divides "
                                      "by 0 — choose a φ that varies around β")
            return self.gamma ** 2 * d2 / var * factor
        s = self.step
        den = s.sigma_w ** 2 * m2 + s.drive
        factor = 1.0 if self.width is None else (self.width - 2.0) / (self.width - 3.0)
        return self.gamma ** 2 * s.sigma_w ** 2 * d2 / den * factor

    def _corr(self, t, rho_prev):
        """(q_t, c_t) and the centered correlation ρ_t that LN's next step uses."""
        b2 = self.beta ** 2
        v = self._variance(t)
        if self.norm == "bn":
            chat = 0.0 if self.batch is None else -1.0 / (self.batch - 1)
            return v + b2, (v * chat + b2) / (v + b2), None
        s = self.step
        if t == 1:
            rho = s.drive_cov / s.drive
        else:
            cov = s.sigma_w ** 2 * cross_moment(self._shifted, v, v, rho_prev) + s.drive_cov
            rho = cov / (s.sigma_w ** 2 * second_moment(self._shifted, v) + s.drive)
        return v + b2, (v * rho + b2) / (v + b2), rho

    def propagate(self, steps) -> "Propagation":
        """q_t, c_t of a_1..a_T and grad_t = E‖δa_t‖²/E‖δa_T‖² (index t holds a_{t+1});
        ``chi`` holds the T − 1 step rates and ``log_grad`` the log of grad (finite where
        grad over- or underflows a double: T = 1000 steps at rate 1/2 is 2⁻⁹⁹⁹)."""
        from .meanfield import Propagation
        steps = integer("RecurrentNormRNN.propagate", "steps", steps, 1)
        q = np.empty(steps)
        c = np.empty(steps)
        rho = None
        for t in range(1, steps + 1):
            q[t - 1], c[t - 1], rho = self._corr(t, rho)
        # the rate depends on t only through Var a_t, the same from a_2 on
        rates = np.array([self.step_rate(min(t, 2)) for t in range(1, steps)])
        log_rates = np.log(rates)
        log_grad = np.concatenate([np.cumsum(log_rates[::-1])[::-1], [0.0]])
        with np.errstate(over="ignore", under="ignore"):
            grad = np.exp(log_grad)
        return Propagation(q=q, c=c, grad=grad, chi=rates, log_grad=log_grad)
