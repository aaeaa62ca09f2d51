"""What the torch, Keras and JAX walkers share: φ names, composition, the per-layer report."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import sympy

from ..activation import activation
from ..errors import VanishcalcError, VanishcalcWarning
from ..parse import X


@dataclass
class LayerInit:
    """One weighted layer as the walker set it.

    ``phi`` is the nonlinearity *feeding* the layer (its input is φ(h), h the previous
    pre-activation; "linear" for the first layer, whose input is the data, assumed
    standardized).  ``std`` is the weights' std, ``sigma_w`` = std·√fan_in, ``sigma_b`` the
    bias std (0: zeros), ``method`` how σw was chosen ("gain", "critical", "critical-input":
    the first layer scaled so its pre-activations start at the fixed point q*)."""

    name: str
    kind: str
    phi: str
    fan_in: int
    fan_out: int
    sigma_w: float
    std: float
    sigma_b: float
    method: str
    act: object = field(default=None, repr=False)     # the Activation the gain/criticality used


@dataclass
class NormInit:
    """A BatchNorm/LayerNorm whose affine (γ, β) the walker set (or left: method "left")."""

    name: str
    kind: str
    phi: str
    gamma: float
    beta: float
    method: str
    after: str = ""                                    # the weighted layer it normalizes
    act: object = field(default=None, repr=False)     # the φ it feeds


@dataclass
class InitReport:
    """What a walker did: ``layers`` (LayerInit, input side first), ``norms`` (NormInit),
    ``passed`` (names of parameter-free modules it passed through, e.g. Flatten, Dropout),
    ``skipped`` (names of modules it could not place; empty unless on_unknown="warn")."""

    layers: list = field(default_factory=list)
    norms: list = field(default_factory=list)
    passed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def maps_layers(self):
        """The mean-field chain [Dense, (BatchNorm|LayerNorm), Nonlinearity, Dense, ...] this
        initialization corresponds to (for lr_multipliers, MeanField checks)."""
        from ..maps import Dense, Nonlinearity
        from ..maps.norm import BatchNorm, LayerNorm
        if any(layer.kind == "RNN" for layer in self.layers):
            raise VanishcalcError("maps_layers: the report has an nn.RNN; its mean field is "
                                  "vanishcalc.RNNMeanField, not a feed-forward chain")
        chain = []
        norm_after = {n.after: n for n in self.norms}
        for i, layer in enumerate(self.layers):
            chain.append(Dense(layer.sigma_w, layer.sigma_b))
            if i + 1 == len(self.layers):
                break
            norm = norm_after.get(layer.name)
            if norm is not None:
                cls = BatchNorm if "Batch" in norm.kind else LayerNorm
                chain += [cls(norm.gamma, norm.beta), Nonlinearity(norm.act)]
            else:
                chain.append(Nonlinearity(self.layers[i + 1].act))
        return chain

    def __str__(self):
        rows = [f"{'layer':<20} {'kind':<10} {'φ (input)':<22} {'fan_in':>7} {'σw':>10} "
                f"{'std':>11} {'σb':>8}  method"]
        for r in self.layers:
            rows.append(f"{r.name:<20} {r.kind:<10} {r.phi[:22]:<22} {r.fan_in:>7} "
                        f"{r.sigma_w:>10.6g} {r.std:>11.6g} {r.sigma_b:>8.4g}  {r.method}")
        for n in self.norms:
            rows.append(f"{n.name:<20} {n.kind:<10} {n.phi[:22]:<22} {'':>7} γ={n.gamma:<8.5g} "
                        f"β={n.beta:<9.5g} {'':>8}  {n.method}")
        if self.passed:
            rows.append("passed through: " + ", ".join(self.passed))
        if self.skipped:
            rows.append("NOT placed: " + ", ".join(self.skipped))
        return "\n".join(rows)

    __repr__ = __str__


def compose(outer, inner):
    """The activation x ↦ outer(inner(x)) (two nonlinearities with no weights between)."""
    a, b = activation(outer), activation(inner)
    if a.name == "linear":
        return b
    if b.name == "linear":
        return a
    return activation(a.expr.subs(X, b.expr))


def affine_inside(spec, gamma, beta):
    """x ↦ φ(γx + β): the unit a BatchNorm/LayerNorm with affine (γ, β) feeds φ with."""
    if gamma == 1 and beta == 0:
        return activation(spec)
    return activation(activation(spec).expr.subs(X, sympy.Float(gamma, 17) * X + sympy.Float(beta, 17)))


def unplaced(where, names, on_unknown):
    """Error (default) or warning listing every module the walker could not place."""
    if not names:
        return
    msg = (f"{where}: cannot place {len(names)} module(s): {', '.join(names)}. Give their φ in "
           "spec={name: 'expr'} (activations), initialize them yourself and pass "
           "on_unknown='warn', or remove them")
    if on_unknown == "warn":
        warnings.warn(msg, VanishcalcWarning, stacklevel=3)
    elif on_unknown == "error":
        raise VanishcalcError(msg)
    else:
        raise VanishcalcError(f"{where}: on_unknown = {on_unknown!r}; use 'error' or 'warn'")


def layer_sigma(phi, method, sigma_b, convention, next_phi=None):
    """(σw, σb, method) for a weighted layer fed by φ.  ``next_phi`` marks the first layer
    (fed by the data, second moment 1) under method "critical": it gets σw² = q* − σb², q* the
    fixed point of the φ that follows, so the net starts at its fixed point."""
    from ..solve.criticality import critical_sigma_w
    from ..solve.gain import gain
    if method == "gain":
        if sigma_b:
            raise VanishcalcError("sigma_b > 0 needs method='critical' (the gain keeps q fixed only "
                                  "without a bias)")
        return float(gain(phi, convention=convention)), 0.0, "gain"
    if method != "critical":
        raise VanishcalcError(f"method = {method!r} is unknown; use 'gain' or 'critical'")
    sb = float(sigma_b or 0.0)
    if next_phi is not None:
        point = critical_sigma_w(next_phi, sb)
        if point.q_star is None:          # every q is a fixed point (homogeneous φ, σb = 0)
            return 1.0, sb, "critical-input"
        return math.sqrt(max(float(point.q_star) - sb * sb, 0.0)), sb, "critical-input"
    return float(critical_sigma_w(phi, sb).sigma_w), sb, "critical"
