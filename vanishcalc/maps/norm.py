"""``BatchNorm(γ, β, batch)`` and ``LayerNorm(γ, β)``: standardize, then the affine γ·ĥ + β.

Mean-field maps at infinite width (derivations in notes/normalization.md).

**BatchNorm** standardizes every unit over the batch.  ``MomentState`` carries one
correlation ``c``; for BatchNorm it is read as the common pairwise correlation of an
exchangeable batch (every pair of inputs has second moment q and covariance c·q).  Then the
batch mean of a unit carries the shared part (variance c·q) and the batch variance of a unit
is q − cov = q(1 − c).  Standardizing removes both, so the output does not depend on the
input state at all:

.. math::

    \\hat h \\sim \\text{unit variance},\\quad \\hat c = -\\frac{1}{B-1}\\;(0 \\text{ at } B=\\infty),
    \\qquad q' = \\gamma^2 + \\beta^2,\\quad \\mathrm{cov}' = \\gamma^2\\hat c + \\beta^2,
    \\quad \\text{mean}' = \\beta .

(The B × B batch Gram matrix of ĥ is B/(B−1)·(I − 11ᵀ/B) exactly: the BSB1 fixed point of
Yang et al. 2019, §3.)  Backward, the Jacobian of one unit's standardization is
(√B/‖Ph‖)(P − uuᵀ) with P = I − 11ᵀ/B and u = Ph/‖Ph‖; with Ph ~ N(0, q(1−c)P),
‖Ph‖² ~ q(1−c)·χ²_{B−1} and E[1/χ²_k] = 1/(k−2), so under gradient independence

.. math::

    \\frac{E\\|\\delta h\\|^2}{E\\|\\delta \\hat x\\|^2}
      = \\frac{\\gamma^2}{q(1-c)}\\cdot\\frac{B}{B-3}\\cdot\\frac{B-2}{B-1}
      \\;\\xrightarrow{B\\to\\infty}\\; \\frac{\\gamma^2}{q(1-c)} .

The finite-batch factor is exact for a linear network (it gives Yang et al.'s (B−2)/(B−3)
per layer); for a nonlinear φ at finite B, ĥ is uniform on a sphere rather than Gaussian and
the map is an approximation (``bn_gradient_rate(batch=B)`` simulates instead).  B < 4 is
refused: B = 1 divides by a zero standard deviation, B = 2 maps every unit to ±1 (the output
no longer depends on the input), and at B = 3 E[1/χ²_2] = ∞ (the expected squared gradient
is infinite).

**LayerNorm** standardizes every input over the units.  At infinite width the per-input
mean over units is ``state.mean`` (0 after a Dense layer) and the per-input variance is
q − mean², so the correlation of two inputs is preserved (centered) instead of being reset:

.. math::

    q' = \\gamma^2 + \\beta^2,\\qquad
    \\mathrm{cov}' = \\gamma^2\\,\\frac{\\mathrm{cov}-m^2}{\\sqrt{(q_1-m^2)(q_2-m^2)}} + \\beta^2,
    \\qquad \\text{grad factor } \\frac{\\gamma^2}{q-m^2}

(the 2 of N directions the projection removes are negligible at infinite width).

References
----------
Ioffe & Szegedy 2015, arXiv:1502.03167, Alg. 1.
Yang et al. 2019, arXiv:1902.08129, §3 (BSB1 fixed point) and Thm 3.10 (gradient explosion).
Ba et al. 2016, arXiv:1607.06450, eqs. 3–4 (layer normalization).
"""
from __future__ import annotations

import math

from ..errors import VanishcalcError
from ..validate import integer, real
from .layer import Layer, _fmt
from .state import MomentState, geometric_mean


def _affine_iv(where, gamma, beta):
    return (real(where, "gamma", gamma, positive=True,
                 why="(the scale of the standardized units; γ ≤ 0 only flips or kills the signal)"),
            real(where, "beta", beta))


def batch_iv(where, batch):
    """None (infinite batch) or an integer ≥ 4; the message says why B < 4 is degenerate."""
    if batch is None or (isinstance(batch, float) and batch == math.inf):
        return None
    if isinstance(batch, float) and batch.is_integer():
        batch = int(batch)
    return integer(where, "batch", batch, 4, why=(
        "(None for an infinite batch): smaller batches are degenerate for batch standardization: "
        "B = 1 divides by a zero standard deviation, B = 2 maps every unit to ±1 whatever its "
        "input, and at B = 3 the expected squared gradient is infinite (1/‖Ph‖² with ‖Ph‖² ~ χ² "
        "on 2 degrees of freedom has infinite mean)"))


class BatchNorm(Layer):
    """Batch normalization ĥ = (h − mean_batch)/std_batch, output γ·ĥ + β.

    Parameters
    ----------
    gamma, beta : float
        The affine γ > 0 and β (Ioffe & Szegedy 2015, Alg. 1).
    batch : int or None
        Batch size B ≥ 4; None for the infinite-batch limit.

    Notes
    -----
    See the module docstring and notes/normalization.md.

    Examples
    --------
    >>> from vanishcalc.maps import Dense, Activation
    >>> from vanishcalc.maps.meanfield import MeanField
    >>> mf = MeanField([Activation("relu"), Dense(1.0), BatchNorm(1.0, 0.0)])
    >>> [round(float(x), 12) for x in mf.propagate(3).chi[1:]]   # π/(π − 1) per block after the first
    [1.466942206924, 1.466942206924]
    """

    batch_coupled = True   # its statistics mix the inputs of a batch (MeanField needs c < 1)

    def __init__(self, gamma=1.0, beta=0.0, batch=None):
        self.gamma, self.beta = _affine_iv("BatchNorm", gamma, beta)
        self.batch = batch_iv("BatchNorm", batch)

    @property
    def c_hat(self) -> float:
        """Pairwise correlation of the standardized units: −1/(B − 1), 0 at infinite batch."""
        return 0.0 if self.batch is None else -1.0 / (self.batch - 1)

    def moment_map(self, state: MomentState) -> MomentState:
        g2, b = self.gamma ** 2, self.beta
        q = g2 + b * b
        cov = g2 * self.c_hat + b * b
        return state.replace(q1=q, q2=q, c=max(-1.0, min(1.0, cov / q)), mean=b, is_gaussian=True)

    def batch_variance(self, state: MomentState) -> float:
        """Variance of one unit over an exchangeable batch: q − cov = q(1 − c)."""
        v = 0.5 * (state.q1 + state.q2) - state.cov
        if not v > 0:
            raise VanishcalcError(
                f"{self!r}: the batch variance of its input is {v:g} (all inputs of the batch "
                "coincide, c = 1): standardization divides by zero; start from c0 < 1")
        return v

    def grad_factor(self, state: MomentState) -> float:
        f = self.gamma ** 2 / self.batch_variance(state)
        if self.batch is not None:
            B = self.batch
            f *= B * (B - 2) / ((B - 3) * (B - 1))
        return f

    def q_slope(self, state: MomentState) -> float:
        return 0.0

    def c_slope(self, state: MomentState) -> float:
        return 0.0

    def __repr__(self):
        extra = "" if self.batch is None else f", batch={self.batch}"
        return f"BatchNorm(gamma={_fmt(self.gamma)}, beta={_fmt(self.beta)}{extra})"


class LayerNorm(Layer):
    """Layer normalization over units ĥ = (h − mean_units)/std_units, output γ·ĥ + β.

    Parameters
    ----------
    gamma, beta : float
        The affine γ > 0 and β (Ba et al. 2016, eq. 4).

    Examples
    --------
    >>> from vanishcalc.maps import Dense, Activation
    >>> from vanishcalc.maps.meanfield import MeanField
    >>> mf = MeanField([Activation("relu"), Dense(1.0), LayerNorm(1.0, 0.0)])
    >>> [round(float(x), 12) for x in mf.propagate(2).chi]   # E[relu'²]/E[relu²] = 1
    [1.0, 1.0]
    """

    def __init__(self, gamma=1.0, beta=0.0):
        self.gamma, self.beta = _affine_iv("LayerNorm", gamma, beta)

    def _centered(self, state: MomentState):
        m = state.mean or 0.0
        v1, v2 = state.q1 - m * m, state.q2 - m * m
        if not (v1 > 0 and v2 > 0):
            raise VanishcalcError(f"{self!r}: its input has zero variance over the units "
                                  "(standardization divides by zero)")
        return m, v1, v2

    def moment_map(self, state: MomentState) -> MomentState:
        m, v1, v2 = self._centered(state)
        c_hat = max(-1.0, min(1.0, (state.cov - m * m) / geometric_mean(v1, v2)))
        g2, b = self.gamma ** 2, self.beta
        q = g2 + b * b
        return state.replace(q1=q, q2=q, c=max(-1.0, min(1.0, (g2 * c_hat + b * b) / q)),
                             mean=b, is_gaussian=True)

    def grad_factor(self, state: MomentState) -> float:
        _, v1, _ = self._centered(state)
        return self.gamma ** 2 / v1

    def q_slope(self, state: MomentState) -> float:
        return 0.0

    def __repr__(self):
        return f"LayerNorm(gamma={_fmt(self.gamma)}, beta={_fmt(self.beta)})"
