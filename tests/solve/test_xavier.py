"""``xavier`` against Glorot & Bengio 2010 (eq. 16: U(±√(6/(fan_in + fan_out)))), the ×4 rule
for the logistic sigmoid (Bengio 2012, "Practical recommendations", arXiv:1206.5533; the deeplearning.net
MLP tutorial) and He et al. 2015's √2 for relu — the radius table the seed (a blog after
Géron 2017, Table 11-1) recalls — against mpmath for smooth φ at q = 1, and against a naive
numpy layer for the forward/backward factors.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from vanishcalc import VanishcalcError
from vanishcalc.solve.xavier import xavier

FANS = [(784, 300), (100, 100), (50, 10)]


@pytest.mark.parametrize("fan_in, fan_out", FANS)
def test_xavier_seed_table_glorot_bengio_he(fan_in, fan_out):
    r0 = math.sqrt(6.0 / (fan_in + fan_out))     # Glorot & Bengio 2010, eq. 16
    s0 = math.sqrt(2.0 / (fan_in + fan_out))
    rows = {  # activation, keyword arguments, the table's factor
        "tanh": ({"q": 0}, 1.0),
        "sigmoid": ({"q": 0, "convention": "std"}, 4.0),   # 1/σ'(0)
        "relu": ({}, math.sqrt(2.0)),                      # He et al. 2015 (any q)
    }
    for name, (kw, factor) in rows.items():
        x = xavier(name, fan_in, fan_out, **kw)
        assert x.uniform_limit.exact is not None and x.std.exact is not None, name
        assert float(x.uniform_limit) == pytest.approx(factor * r0, rel=1e-15), name
        assert float(x.std) == pytest.approx(factor * s0, rel=1e-15), name
    # relu's entry holds in the linear regime too (a homogeneous φ: every q is the same)
    assert float(xavier("relu", fan_in, fan_out, q=0).std) == pytest.approx(math.sqrt(2) * s0, rel=1e-15)


def _mp_mean(fn):
    with mpmath.workdps(30):
        return mpmath.quad(lambda z: fn(z) * mpmath.exp(-z * z / 2), [-mpmath.inf, mpmath.inf]) \
            / mpmath.sqrt(2 * mpmath.pi)


def test_xavier_tanh_at_unit_variance_vs_mpmath():
    fan_in, fan_out = 512, 128
    x = xavier("tanh", fan_in, fan_out)
    m_f = _mp_mean(lambda z: mpmath.tanh(z) ** 2)
    m_b = _mp_mean(lambda z: mpmath.sech(z) ** 4)
    g_f, g_b = 1 / mpmath.sqrt(m_f), 1 / mpmath.sqrt(m_b)
    s = mpmath.sqrt(2 / (fan_in / g_f ** 2 + fan_out / g_b ** 2))
    for ours, ref in ((x.forward_gain, g_f), (x.backward_gain, g_b), (x.std, s),
                      (x.uniform_limit, mpmath.sqrt(3) * s), (x.forward_std, g_f / math.sqrt(fan_in)),
                      (x.backward_std, g_b / math.sqrt(fan_out))):
        assert abs(float(ours) - ref) <= ours.error, (ours, ref)
        assert ours.error <= 1e-13 * float(ours)
    assert x.forward_factor == pytest.approx(fan_in * float(s) ** 2 / float(g_f) ** 2, rel=1e-13)


def test_xavier_sigmoid_std_convention_vs_mpmath():
    x = xavier("sigmoid", 300, 300, convention="std")
    sig = lambda z: 1 / (1 + mpmath.exp(-z))
    mean = _mp_mean(sig)
    var = _mp_mean(lambda z: sig(z) ** 2) - mean ** 2
    d2 = _mp_mean(lambda z: (sig(z) * (1 - sig(z))) ** 2)
    assert abs(float(x.forward_gain) - 1 / mpmath.sqrt(var)) <= x.forward_gain.error
    assert abs(float(x.backward_gain) - 1 / mpmath.sqrt(d2)) <= x.backward_gain.error


def test_xavier_conditions_hold_together_only_when_fans_balance():
    x = xavier("relu", 256, 256)
    assert x.forward_factor == pytest.approx(1.0, rel=1e-15)
    assert x.backward_factor == pytest.approx(1.0, rel=1e-15)
    y = xavier("relu", 512, 128)     # compromise: q grows 1.6× forward, gradients shrink 0.4×
    assert y.forward_factor == pytest.approx(2 * 512 / (512 + 128), rel=1e-14)
    assert y.backward_factor == pytest.approx(2 * 128 / (512 + 128), rel=1e-14)


def test_xavier_uniform_layer_factors_vs_numpy(rng):
    """A naive layer with W ~ U(−r, r): E[h'²]/q and E[δh²]/E[δh'²] against the factors."""
    fan_in, fan_out, batch, q = 400, 200, 400, 1.0
    x = xavier("tanh", fan_in, fan_out, q=q)
    r = float(x.uniform_limit)
    fwd, bwd = [], []
    for _ in range(10):
        w = rng.uniform(-r, r, size=(fan_out, fan_in))
        h = math.sqrt(q) * rng.standard_normal((batch, fan_in))
        fwd.append(np.mean((np.tanh(h) @ w.T) ** 2) / q)
        delta_out = rng.standard_normal((batch, fan_out))
        bwd.append(np.mean(((delta_out @ w) * (1 - np.tanh(h) ** 2)) ** 2))
    assert np.mean(fwd) == pytest.approx(x.forward_factor, rel=0.02)
    assert np.mean(bwd) == pytest.approx(x.backward_factor, rel=0.02)


def test_xavier_bad_input():
    with pytest.raises(VanishcalcError, match="convention='std'"):
        xavier("sigmoid", 10, 10, q=0)               # φ(0) = 1/2: second moment → 0 gain
    with pytest.raises(VanishcalcError, match="φ'\\(0\\) = 0"):
        xavier("gaussian", 10, 10, q=0)
    with pytest.raises(VanishcalcError, match="jumps at 0"):
        xavier("Heaviside(x)", 10, 10, q=0)
    with pytest.raises(VanishcalcError, match="fan_in"):
        xavier("tanh", 0, 10)
    with pytest.raises(VanishcalcError, match="fan_out"):
        xavier("tanh", 10, 2.5)
    with pytest.raises(VanishcalcError, match="q"):
        xavier("tanh", 10, 10, q=-1.0)
    with pytest.raises(VanishcalcError, match="convention"):
        xavier("tanh", 10, 10, convention="backward")
