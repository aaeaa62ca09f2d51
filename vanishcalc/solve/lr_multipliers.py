"""Per-layer learning-rate multipliers from the mean-field gradient propagation.

Under SGD a dense layer h_l = W_l x_{l−1} + b_l moves by ΔW_l = −η_l Σ_a δ_l^a (x_{l−1}^a)ᵀ.
At initialization, at infinite width, with the examples' gradients uncorrelated:

.. math::

    E\\|∇_{W_l} L\\|_F^2 ∝ g_l\\, q^x_{l-1},\\qquad \\|W_l\\|_F^2 = σ_{w,l}^2 N,\\qquad
    \\frac{\\|ΔW_l\\|}{\\|W_l\\|} ∝ η_l \\frac{\\sqrt{g_l\\, q^x_{l-1}}}{σ_{w,l}}

with g_l the mean squared gradient at the layer's output (the product of the backward
factors of every later layer: σw², E[φ'²], the BN/LN factors) and q^x_{l−1} the second moment of
its input.  ``rule="relative"`` sets η_l ∝ σ_{w,l}/√(g_l q^x_{l−1}), which makes every layer's
relative update the same (what LARS's trust ratio ‖W‖/‖∇W‖ does at init, You et al. 2017);
``rule="absolute"`` sets η_l ∝ 1/√(g_l q^x_{l−1}), the same ‖ΔW_l‖ everywhere (what Adam's
per-coordinate normalization does).  Derivation and the comparison: notes/lr-multipliers.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import VanishcalcError
from ..validate import integer, real

RULES = ("relative", "absolute")


@dataclass(frozen=True)
class LRMultipliers:
    """Learning-rate multipliers of the dense layers of a deep random network, input side first.

    Attributes
    ----------
    multipliers : ndarray
        η_l/η for each Dense layer (the last one is 1): scale the base learning rate of layer l
        by ``multipliers[l]``.
    relative_update : ndarray
        Predicted ‖ΔW_l‖/‖W_l‖ under plain SGD (one learning rate), relative to the last layer:
        the depth-graded spread the multipliers remove (rule "relative").
    grad : ndarray
        g_l: the mean squared gradient at the output of Dense layer l, relative to the network
        output (E‖δ_l‖²/E‖δ_L‖²).
    input_q : ndarray
        q^x_{l−1}: the second moment of each Dense layer's input.
    sigma_w : ndarray
        σw of each Dense layer.
    log_multipliers : ndarray
        Natural log of ``multipliers`` (finite where the multipliers leave float64).
    rule : str
    layers : tuple of int
        Position of each Dense layer in the unrolled network (``repeat(block, depth).layers``).
    """

    multipliers: np.ndarray
    relative_update: np.ndarray
    grad: np.ndarray
    input_q: np.ndarray
    sigma_w: np.ndarray
    log_multipliers: np.ndarray
    rule: str
    layers: tuple

    @property
    def spread(self) -> float:
        """max/min of ``relative_update``: how unequal plain SGD's relative updates are."""
        return float(np.max(self.relative_update) / np.min(self.relative_update))

    def __repr__(self):
        m = self.multipliers
        return (f"LRMultipliers(rule={self.rule!r}, {len(m)} dense layers: first {m[0]:.4g}, "
                f"last {m[-1]:.4g}; plain-SGD spread of ‖ΔW‖/‖W‖ {self.spread:.4g})")


def _lr_iv(net, depth, rule, q0, c0):
    from ..maps.combinators import Repeat, serial
    from ..maps.layer import Layer
    from ..maps.meanfield import MeanField
    w = "lr_multipliers"
    if rule not in RULES:
        raise VanishcalcError(f"{w}: rule = {rule!r} is unknown; use 'relative' (equal "
                              "‖ΔW‖/‖W‖, LARS at init) or 'absolute' (equal ‖ΔW‖, Adam-like)")
    if isinstance(net, MeanField):
        block = net.block
    elif isinstance(net, Layer):
        block = net
    elif isinstance(net, (list, tuple)) and net and all(isinstance(l, Layer) for l in net):
        block = serial(*net)
    else:
        raise VanishcalcError(f"{w}: net = {net!r} is not a network; pass a MeanField (plain net), "
                              "a layer such as serial(Activation('tanh'), Dense(1.0)), or a list "
                              "of layers")
    if depth is None:
        if not isinstance(block, Repeat):
            raise VanishcalcError(f"{w}: depth is required (the number of times the block "
                                  "repeats), unless net is repeat(block, depth)")
        layers = list(block.layers)
    else:
        depth = integer(w, "depth", depth, 1, "(the number of blocks)")
        layers = list(block.layers) * depth
    q0 = real(w, "q0", q0, positive=True, hi_bound=1e150, why="(the input second moment)")
    c0 = real(w, "c0", c0, lo=-1.0, hi=1.0, why="(the correlation of two inputs)")
    return layers, rule, q0, c0


def lr_multipliers(net, depth=None, rule="relative", *, q0=1.0, c0=0.0) -> LRMultipliers:
    """Per-layer learning-rate multipliers that equalize SGD's updates across depth at init.

    .. math::

        η_l ∝ \\frac{σ_{w,l}}{\\sqrt{g_l\\, q^x_{l-1}}}\\ \\text{(relative)},\\qquad
        η_l ∝ \\frac{1}{\\sqrt{g_l\\, q^x_{l-1}}}\\ \\text{(absolute)},\\qquad
        g_l = \\prod_{k > l} λ_k

    where λ_k is the backward factor of layer k (``grad_factor``: σw² for Dense, E[φ'(h)²] for
    an Activation, the BN/LN factors of notes/normalization.md) along the mean-field trajectory.

    Parameters
    ----------
    net : MeanField, layer or list of layers
        The repeated block (``MeanField("tanh", 1.2)`` is the plain net
        [Activation(φ), Dense(σw, σb)]), or ``repeat(block, depth)``.
    depth : int, optional
        Number of blocks (omit for a ``repeat``).
    rule : {"relative", "absolute"}
        Equalize ‖ΔW_l‖/‖W_l‖ (LARS/LAMB's trust ratio at init) or ‖ΔW_l‖ (Adam-like).
    q0, c0 : float
        Second moment and correlation at the input of the first block (c0 enters only through
        BatchNorm's batch variance).

    Returns
    -------
    LRMultipliers

    Raises
    ------
    VanishcalcError
        an unknown rule, a net without a Dense layer, depth < 1, or multipliers beyond float64
        (the message says by how much the first and last layers' gradients differ).

    Notes
    -----
    notes/lr-multipliers.md: derivation, assumptions (infinite width, gradients of different
    examples uncorrelated — a regression loss on targets independent of the net at init),
    and the relation to LARS (You et al. 2017, arXiv:1708.03888, eq. 6), LAMB (You et al.
    2019, arXiv:1904.00962, Alg. 2) and Adam (Kingma & Ba 2014, arXiv:1412.6980).

    Examples
    --------
    >>> from vanishcalc import MeanField
    >>> m = lr_multipliers(MeanField("tanh", sigma_w=1.0), depth=3)
    >>> len(m.multipliers), float(m.multipliers[-1])
    (3, 1.0)
    """
    from ..maps.dense import Dense
    from ..maps.state import MomentState
    layers, rule, q0, c0 = _lr_iv(net, depth, rule, q0, c0)
    state = MomentState(q0, q0, c0)
    states, factors = [], []
    for k, layer in enumerate(layers):
        states.append(state)
        factors.append(layer.grad_factor(state))
        state = layer.moment_map(state).check_finite(f"lr_multipliers, layer {k + 1}")
    dense = [k for k, l in enumerate(layers) if isinstance(l, Dense)]
    if not dense:
        raise VanishcalcError("lr_multipliers: the network has no Dense layer, so nothing has a "
                              "learning rate; add Dense(σw) to the block")
    with np.errstate(divide="ignore"):
        log_f = np.log(np.asarray(factors, dtype=float))
    # log g at the output of layer k: Σ_{j>k} log λ_j
    after = np.concatenate([np.cumsum(log_f[::-1])[::-1][1:], [0.0]])
    log_g = after[dense]
    input_q = np.array([states[k].q1 for k in dense])
    sigma_w = np.array([layers[k].sigma_w for k in dense])
    with np.errstate(divide="ignore"):
        log_rel = 0.5 * (log_g + np.log(input_q)) - np.log(sigma_w)   # ‖ΔW‖/‖W‖ at one η
    log_abs = log_rel + np.log(sigma_w)                                # ‖ΔW‖ at one η
    log_update = log_rel if rule == "relative" else log_abs
    log_m = log_update[-1] - log_update
    if not np.all(np.isfinite(log_m)):
        raise VanishcalcError("lr_multipliers: some layer gets no gradient at all (a factor is 0: "
                              "φ' = 0 on the whole input law, or a dead input q = 0); no "
                              "learning rate can move it — change the init")
    if np.max(np.abs(log_m)) > 700:
        raise VanishcalcError(f"lr_multipliers: the multipliers span e^{np.ptp(log_m):.4g}, beyond "
                              "float64: the gradient vanishes or explodes far too fast for any "
                              "step size to fix; use a critical init (vanishcalc.critical_sigma_w) "
                              "or fewer layers")
    log_rel_norm = log_rel - log_rel[-1]
    return LRMultipliers(multipliers=np.exp(log_m), relative_update=np.exp(log_rel_norm),
                         grad=np.exp(log_g), input_q=input_q, sigma_w=sigma_w,
                         log_multipliers=log_m, rule=rule, layers=tuple(dense))


__all__ = ["lr_multipliers", "LRMultipliers", "RULES"]
