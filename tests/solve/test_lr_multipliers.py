"""Per-layer learning-rate multipliers (vanishcalc/solve/lr_multipliers.py).

References: closed forms (a linear net and relu at σw = √2 need no multipliers; relu + BN
multiplies the squared gradient by π/(π−1) per block, Yang et al. 2019), a naive numpy
Gauss–Hermite mean field, and plain-numpy SGD on explicit weights (notes/lr-multipliers.md).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from vanishcalc import MeanField, lr_multipliers
from vanishcalc.errors import VanishcalcError
from vanishcalc.maps import Activation, Dense
from vanishcalc.maps.norm import BatchNorm


def test_lr_multipliers_linear_and_critical_relu_are_one():
    for net in (MeanField("x", sigma_w=0.7), MeanField("relu", sigma_w=math.sqrt(2))):
        for rule in ("relative", "absolute"):
            m = lr_multipliers(net, 12, rule=rule, q0=2.0)
            np.testing.assert_allclose(m.multipliers, 1.0, rtol=1e-9)
            assert m.spread == pytest.approx(1.0, rel=1e-9)


def test_lr_multipliers_plain_tanh_vs_naive_gauss_hermite():
    # q_l and χ_l by a 200-node Gauss–Hermite rule in numpy; relative update ∝ √(g_l q^x_{l−1})
    sw, sb, L, q0 = 1.5, 0.1, 15, 1.0
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / w.sum()
    q, xq, chi = q0, [], []
    for _ in range(L):
        xq.append(np.sum(w * np.tanh(math.sqrt(q) * z) ** 2))
        chi.append(sw ** 2 * np.sum(w * (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2))
        q = sw ** 2 * xq[-1] + sb ** 2
    # gradient at the output of Dense l (l = 0..L−1): the χ of the later blocks
    g = np.array([np.prod(chi[l + 1:]) for l in range(L)])
    rel = np.sqrt(g * np.array(xq))
    m = lr_multipliers(MeanField("tanh", sigma_w=sw, sigma_b=sb), L, q0=q0)
    np.testing.assert_allclose(m.relative_update, rel / rel[-1], rtol=1e-9)
    np.testing.assert_allclose(m.multipliers, rel[-1] / rel, rtol=1e-9)
    np.testing.assert_allclose(m.grad, g, rtol=1e-9)


def test_lr_multipliers_relu_bn_pi_over_pi_minus_one_per_block():
    m = lr_multipliers([BatchNorm(1.0, 0.0), Activation("relu"), Dense(1.0)], 10)
    ratio = m.relative_update[1:-1] / m.relative_update[2:]
    np.testing.assert_allclose(ratio, math.sqrt(math.pi / (math.pi - 1)), rtol=1e-9)


def test_lr_multipliers_absolute_rule_scales_with_sigma_w():
    # different σw per layer: 'absolute' equalizes ‖ΔW‖, 'relative' ‖ΔW‖/‖W‖ (∝ σw)
    blk = [Activation("tanh"), Dense(1.2), Activation("tanh"), Dense(0.8)]
    rel = lr_multipliers(blk, 3, rule="relative")
    ab = lr_multipliers(blk, 3, rule="absolute")
    np.testing.assert_allclose(rel.multipliers / ab.multipliers,
                               rel.sigma_w / rel.sigma_w[-1], rtol=1e-12)


def _sgd_relative_updates(phi, dphi, sigma_w, depth, width, batch, mult, lr, steps, rng):
    """‖W_l − W_l(0)‖/‖W_l(0)‖ after ``steps`` SGD steps on ½‖h_L − y‖²/B (explicit weights)."""
    Ws = [rng.standard_normal((width, width)) * sigma_w / math.sqrt(width) for _ in range(depth)]
    W0 = [W.copy() for W in Ws]
    h0 = rng.standard_normal((width, batch))
    hL = h0
    for W in Ws:
        hL = W @ phi(hL)
    # targets: the initial output minus N(0, 1) noise, so the initial error is independent of the
    # weights (the mean field's assumption; a target the net's own output enters would add
    # WᵀW terms at the readout)
    y = hL - rng.standard_normal((width, batch))
    for _ in range(steps):
        hs = [h0]
        for W in Ws:
            hs.append(W @ phi(hs[-1]))
        delta = (hs[-1] - y) / batch
        grads = [None] * depth
        for l in range(depth - 1, -1, -1):
            grads[l] = delta @ phi(hs[l]).T
            delta = dphi(hs[l]) * (Ws[l].T @ delta)
        for l in range(depth):
            Ws[l] -= lr * mult[l] * grads[l]
    return np.array([np.linalg.norm(Ws[l] - W0[l]) / np.linalg.norm(W0[l]) for l in range(depth)])


@pytest.mark.parametrize("spec, phi, dphi, sigma_w, depth", [
    ("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2, 1.5, 40),
    ("exp(-x**2)", lambda x: np.exp(-x * x), lambda x: -2 * x * np.exp(-x * x), 2.0, 20),
])
def test_lr_multipliers_equalize_sgd_relative_updates(spec, phi, dphi, sigma_w, depth):
    # width 64, 8 nets, 3 SGD steps (lr small: the linear regime).  Plain SGD: the first layer's
    # relative update is ~8–10× the last one's (theory 12–13; width 64 lowers it); with the
    # multipliers the spread is ≤ 1.4 at every seed tried (0–3).
    m = lr_multipliers(MeanField(spec, sigma_w=sigma_w), depth)
    assert m.spread > 10
    rng = np.random.default_rng(20261130)
    spreads = {}
    for label, mult in (("plain", np.ones(depth)), ("multipliers", m.multipliers)):
        rel = np.array([_sgd_relative_updates(phi, dphi, sigma_w, depth, 64, 16, mult, 1e-5, 3,
                                              rng) for _ in range(8)])
        r = np.sqrt(np.mean(rel ** 2, axis=0))
        spreads[label] = r.max() / r.min()
        if label == "plain":       # depth-graded: the input side moves most
            assert r[0] > r[depth // 2] > r[-1]
    assert spreads["plain"] > 5, spreads
    assert spreads["multipliers"] < 1.6, spreads
    assert spreads["plain"] / spreads["multipliers"] > 4, spreads


def test_lr_multipliers_ordered_tanh_needs_none():
    # tanh at σw = 0.9: the gradient shrinks toward the input by χ = 0.81 per layer, but so does
    # the signal forward (q → 0), and the two cancel in ‖∇W_l‖ ∝ √(g_l q_{l−1})
    m = lr_multipliers(MeanField("tanh", sigma_w=0.9), 30)
    assert m.spread < 1.1


@pytest.mark.parametrize("args, kwargs, word", [
    ((MeanField("tanh", sigma_w=1.0), 5), dict(rule="lars"), "rule"),
    ((MeanField("tanh", sigma_w=1.0), 0), {}, "depth"),
    ((MeanField("tanh", sigma_w=1.0),), {}, "depth"),
    (([Activation("tanh"), BatchNorm(1.0)], 4), {}, "no Dense"),
    (("tanh", 4), {}, "not a network"),
    ((MeanField("tanh", sigma_w=1.0), 4), dict(q0=0.0), "q0"),
    ((MeanField("exp(-x**2)", sigma_w=1.0), 2000), {}, "float64"),
])
def test_lr_multipliers_bad_input_names_fix(args, kwargs, word):
    with pytest.raises(VanishcalcError, match=word):
        lr_multipliers(*args, **kwargs)
