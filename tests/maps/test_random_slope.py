"""RReLU and PReLU against torch's documented gain formula, mpmath quadratures over the slope
and the Gaussian, and Monte Carlo draws with torch's per-element slopes.

torch.nn.init.calculate_gain('leaky_relu', a) is documented as √(2/(1 + a²)) (written here,
torch is not installed).  torch.nn.RReLU: training mode draws a ~ U(lower, upper) for every
element (so two batch rows never share a slope); eval mode uses (lower + upper)/2.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from vanishcalc import MeanField, VanishcalcError, gain
from vanishcalc.maps import Activation, Dense, MomentState
from vanishcalc.maps.random_slope import RReLU, prelu

LOWER, UPPER = 1 / 8, 1 / 3


def torch_leaky_relu_gain(a):
    return math.sqrt(2.0 / (1 + a ** 2))


def _mp_train_moment(fn, lower=LOWER, upper=UPPER):
    """E_a E_z[fn(a, z)], a ~ U(lower, upper), z ~ N(0, 1): mpmath quadrature in z at each
    node of a 4-point Gauss–Legendre rule in a (exact: fn is a polynomial of degree ≤ 2 in a)."""
    nodes, weights = np.polynomial.legendre.leggauss(4)
    with mpmath.workdps(25):
        pdf = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)
        total = mpmath.mpf(0)
        for t, w in zip(nodes, weights):
            a = mpmath.mpf(lower) + (mpmath.mpf(upper) - lower) * (1 + mpmath.mpf(t)) / 2
            total += mpmath.mpf(w) / 2 * mpmath.quad(lambda z: fn(a, z) * pdf(z),
                                                     [-mpmath.inf, 0, mpmath.inf])
        return float(total)


def _phi(a, z):
    return z if z > 0 else a * z


def test_prelu_gain_vs_torch_formula():
    g = gain(prelu())
    assert g.exact is not None
    assert float(g) == pytest.approx(torch_leaky_relu_gain(0.25), rel=1e-15)
    assert float(gain(prelu(0.1))) == pytest.approx(torch_leaky_relu_gain(0.1), rel=1e-15)


def test_rrelu_eval_gain_is_leaky_relu_at_mean_slope_vs_torch_formula():
    r = RReLU(mode="eval")
    mean = (LOWER + UPPER) / 2
    assert float(r.gain()) == pytest.approx(torch_leaky_relu_gain(mean), rel=1e-15)
    assert float(r.gain("backward")) == pytest.approx(torch_leaky_relu_gain(mean), rel=1e-15)
    assert float(gain(r.eval_activation)) == pytest.approx(torch_leaky_relu_gain(mean), rel=1e-15)


def test_rrelu_train_gains_vs_mpmath():
    r = RReLU()
    m2 = _mp_train_moment(lambda a, z: _phi(a, z) ** 2)
    m1 = _mp_train_moment(_phi)
    d2 = _mp_train_moment(lambda a, z: (1 if z > 0 else a) ** 2)
    for conv, moment in (("second_moment", m2), ("std", m2 - m1 ** 2), ("backward", d2)):
        v = r.gain(conv)
        assert v.exact is not None
        assert float(v) == pytest.approx(1 / math.sqrt(moment), rel=1e-14), conv
    # the noise costs gain: E[a²] > ā², so the training gain is below eval's
    assert float(r.gain()) < float(RReLU(mode="eval").gain())


def _mc_pair(rng, lower, upper, q, c, shared, n=2_000_000):
    z1 = rng.standard_normal(n)
    z2 = c * z1 + math.sqrt(1 - c * c) * rng.standard_normal(n)
    u1, u2 = math.sqrt(q) * z1, math.sqrt(q) * z2
    a1 = rng.uniform(lower, upper, n)
    a2 = a1 if shared else rng.uniform(lower, upper, n)
    f1 = np.where(u1 > 0, u1, a1 * u1)
    f2 = np.where(u2 > 0, u2, a2 * u2)
    d1 = np.where(u1 > 0, 1.0, a1)
    d2 = np.where(u2 > 0, 1.0, a2)
    return f1, f2, d1, d2


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("c", [-0.6, 0.3, 0.9, 1.0])
def test_rrelu_train_q_and_c_map_vs_monte_carlo(rng, shared, c):
    q = 1.7
    r = RReLU(shared_slope=shared)
    f1, f2, d1, d2 = _mc_pair(rng, LOWER, UPPER, q, c, shared)
    out = r.moment_map(MomentState(q, q, c))
    n = f1.size
    for ours, sample in ((out.q1, f1 * f1), (out.q2, f2 * f2),
                         (out.c * math.sqrt(out.q1 * out.q2), f1 * f2)):
        se = sample.std() / math.sqrt(n)
        assert abs(ours - sample.mean()) < 5 * se, (ours, sample.mean(), se)
    # backward: E[φ'²] and the c-slope's E[φ'_{a1} φ'_{a2}]
    g = d1 * d1
    assert abs(r.grad_factor(MomentState(q, q, c)) - g.mean()) < 5 * g.std() / math.sqrt(n)
    cross = d1 * d2
    ours_cross = r.c_slope(MomentState(q, q, c)) * r.grad_factor(MomentState(q, q, c))
    assert abs(ours_cross - cross.mean()) < 5 * cross.std() / math.sqrt(n)


def test_rrelu_train_decorrelates_one_input_closed_form():
    # c = 1 (two copies of one input, two independent slopes): c' = (1 + ā²)/(1 + E[a²])
    r = RReLU()
    abar, a2 = (LOWER + UPPER) / 2, (LOWER ** 2 + LOWER * UPPER + UPPER ** 2) / 3
    out = r.moment_map(MomentState.single(2.0))
    assert out.c == pytest.approx((1 + abar ** 2) / (1 + a2), rel=1e-14)
    assert out.c < 1
    shared = RReLU(shared_slope=True).moment_map(MomentState.single(2.0))
    assert shared.c == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("c", [-0.5, 0.0, 0.7])
def test_rrelu_eval_maps_match_leaky_relu_layer(c):
    # eval mode is the deterministic leaky ReLU at ā; the Activation layer's closed kernel
    # (arc-cosine, Cho & Saul) is the reference
    r = RReLU(mode="eval")
    leaky = Activation(f"leaky_relu({(LOWER + UPPER) / 2!r})")
    s = MomentState(1.3, 1.3, c)
    a, b = r.moment_map(s), leaky.moment_map(s)
    assert a.q1 == pytest.approx(b.q1, rel=1e-13) and a.c == pytest.approx(b.c, rel=1e-12, abs=1e-14)
    assert r.c_slope(s) == pytest.approx(leaky.c_slope(s), rel=1e-12)
    assert r.grad_factor(s) == pytest.approx(leaky.grad_factor(s), rel=1e-13)


def test_rrelu_c_slope_vs_central_difference():
    r = RReLU()
    s = MomentState(1.0, 1.0, 0.4)
    h = 1e-6
    fd = (r.moment_map(s.replace(c=0.4 + h)).c - r.moment_map(s.replace(c=0.4 - h)).c) / (2 * h)
    assert r.c_slope(s) == pytest.approx(fd, rel=1e-8)


def test_rrelu_meanfield_at_its_gain_keeps_q_and_chi1():
    r = RReLU()
    mf = MeanField([r, Dense(float(r.gain()))])
    assert float(mf.chi1()) == pytest.approx(1.0, rel=1e-14)
    assert float(mf.q_map(2.5)) == pytest.approx(2.5, rel=1e-14)
    cstar = float(mf.c_star())
    assert cstar < 1 and float(mf.c_map(cstar, q=1.0)) == pytest.approx(cstar, abs=1e-13)


def test_rrelu_bad_input():
    with pytest.raises(VanishcalcError, match="lower ≤ upper"):
        RReLU(0.5, 0.25)
    with pytest.raises(VanishcalcError, match="mode"):
        RReLU(mode="training")
    with pytest.raises(VanishcalcError, match="training mode only"):
        RReLU(mode="eval", shared_slope=True)
    with pytest.raises(VanishcalcError, match="finite"):
        RReLU(float("nan"), 0.3)
    with pytest.raises(VanishcalcError, match="centered"):
        RReLU().moment_map(MomentState(1.0, 1.0, 0.5, mean=0.3))
    with pytest.raises(VanishcalcError, match="Gaussian"):
        RReLU().moment_map(MomentState(1.0, 1.0, 0.5, is_gaussian=False))
    with pytest.raises(VanishcalcError, match="convention"):
        RReLU().gain("fan_in")


def test_rrelu_is_a_spec_for_gain_and_meanfield():
    """gain(RReLU()) and MeanField(RReLU(), σw, σb) work like a φ spec (closed forms as reference)."""
    import vanishcalc
    assert vanishcalc.RReLU is RReLU        # the public name users take
    # training mode: E[a²] = (l² + lu + u²)/3 = 97/1728 → gain √(2/(1 + 97/1728))
    assert float(gain(RReLU())) == pytest.approx(math.sqrt(2 / (1 + 97 / 1728)), rel=1e-15)
    # eval mode: leaky ReLU at ā = 11/48; q* = σb²/(1 − σw²(1 + ā²)/2), χ1 = σw²(1 + ā²)/2
    a, sw, sb = 11 / 48, 1.3, 0.1
    chi1 = sw * sw * (1 + a * a) / 2
    mf = MeanField(RReLU(mode="eval"), sw, sb)
    assert float(mf.chi1()) == pytest.approx(chi1, rel=1e-12)
    assert float(mf.q_star()) == pytest.approx(sb * sb / (1 - chi1), rel=1e-12)
    # training mode: the slope's second moment enters q (χ1 = σw²(1 + E[a²])/2)
    mf = MeanField(RReLU(), sw, sb)
    assert float(mf.chi1()) == pytest.approx(sw * sw * (1 + 97 / 1728) / 2, rel=1e-12)
