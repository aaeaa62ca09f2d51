"""Residual(branch, α), pre-/post-norm blocks: mean-field maps against closed forms and mpmath."""
import math

import mpmath
import numpy as np
import pytest

from vanishcalc.errors import VanishcalcError
from vanishcalc.maps import (Activation, Dense, Layer, LayerNorm, MomentState, Residual,
                             post_norm_block, pre_norm_block, repeat, serial)
from vanishcalc.maps.meanfield import MeanField
from tests.reference.mp_bivariate import expect1


def _k1(c):
    """Arc-cosine kernel of degree 1 (Cho & Saul 2009, eq. 6): E[relu(u)relu(v)]/q."""
    return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)


def test_residual_relu_qmap_and_grad_closed_form_yang_schoenholz():
    """Branch [relu, Dense(σw)]: q_B = σw² q/2, χ_B = σw²/2, so q_l = (1 + α²σw²/2)^l q0
    (exponential growth of a reduced residual net with a homogeneous φ, Yang & Schoenholz 2017)
    and every layer multiplies the gradient by 1 + α²σw²/2."""
    a, sw = 0.4, 1.3
    r = Residual([Activation("relu"), Dense(sw)], a)
    p = MeanField(r).propagate(20, q0=0.7, c0=0.3)
    g = 1 + a * a * sw * sw / 2
    assert np.allclose(p.q, 0.7 * g ** np.arange(21), rtol=1e-13)
    assert np.allclose(p.chi, g, rtol=1e-13)


def test_residual_relu_cmap_arccos_kernel():
    """cov' = cov + α²σw² q k1(c) (independent closed form, Cho & Saul 2009)."""
    a, sw, q, c = 0.7, 1.1, 1.7, 0.35
    r = Residual([Activation("relu"), Dense(sw)], a)
    out = r.moment_map(MomentState(q, q, c))
    qn = q + a * a * sw * sw * q / 2
    assert out.q == pytest.approx(qn, rel=1e-13)
    assert out.c == pytest.approx((c * q + a * a * sw * sw * q * _k1(c)) / qn, rel=1e-10)
    # c-slope: (q + α²σw² q·k1'(c))/q', k1'(c) = (π − arccos c)/(2π)
    slope = (q + a * a * sw * sw * q * (math.pi - math.acos(c)) / (2 * math.pi)) / qn
    assert r.c_slope(MomentState(q, q, c)) == pytest.approx(slope, rel=1e-9)


def test_residual_tanh_qmap_and_grad_vs_mpmath():
    a, sw, sb, q = 0.6, 1.4, 0.2, 0.9
    r = Residual([Activation("tanh"), Dense(sw, sb)], a)
    e_phi2 = float(expect1(lambda x: mpmath.tanh(x) ** 2, q))
    e_dphi2 = float(expect1(lambda x: mpmath.sech(x) ** 4, q))
    out = r.moment_map(MomentState.single(q))
    assert out.q == pytest.approx(q + a * a * (sw * sw * e_phi2 + sb * sb), rel=1e-12)
    assert r.grad_factor(MomentState.single(q)) == pytest.approx(
        1 + a * a * sw * sw * e_dphi2, rel=1e-12)


def test_pre_norm_block_linear_growth_closed_form():
    """Pre-LN: the branch sees γ² whatever q, so q_B is a constant and q_l = q0 + l·α²q_B.
    relu: q_B = σw2²(σw1²γ²/2) with σb = 0; the LN factor γ²/q_l makes the gradient factor
    1 + α² σw2² σw1² /(2 q_l)."""
    a, s1, s2, g = 0.3, 1.2, 0.9, 1.5
    blk = pre_norm_block("relu", a, sigma_w=s1, sigma_w2=s2, gamma=g)
    p = MeanField(blk).propagate(30, q0=2.0, c0=0.4)
    qb = s2 ** 2 * s1 ** 2 * g ** 2 / 2
    assert np.allclose(p.q, 2.0 + a * a * qb * np.arange(31), rtol=1e-12)
    assert np.allclose(p.chi, 1 + a * a * s2 ** 2 * s1 ** 2 * g ** 2 / 2 / p.q[:-1], rtol=1e-12)


def test_post_norm_block_constant_q_and_grad_closed_form():
    """Post-LN: q is γ² after every block; the LN after the sum divides the gradient by
    q_sum = γ²(1 + α²σw2²σw1²/2) for relu, so each block's factor is (1 + α²κ)·1/(1 + α²κ)
    = 1 with κ = σw1²σw2²/2 (at γ = 1, q0 = 1)."""
    a, s1, s2 = 0.5, 1.1, 1.3
    blk = post_norm_block("relu", a, sigma_w=s1, sigma_w2=s2)
    p = MeanField(blk).propagate(10, q0=1.0, c0=0.2)
    assert np.allclose(p.q, 1.0, rtol=1e-14)
    assert np.allclose(p.chi, 1.0, rtol=1e-12)


def test_residual_slopes_match_finite_differences():
    blk = pre_norm_block("tanh", 0.8, sigma_w=1.3, sigma_b=0.1)
    for st in (MomentState(0.8, 0.8, 0.3), MomentState(2.5, 2.5, 0.9)):
        assert blk.c_slope(st) == pytest.approx(Layer.c_slope(blk, st), rel=1e-6)
        assert blk.q_slope(st) == pytest.approx(Layer.q_slope(blk, st), rel=1e-6)


def test_residual_alpha_zero_is_identity():
    r = Residual([Activation("tanh"), Dense(3.0)], 0.0)
    st = MomentState(1.3, 1.3, 0.4)
    out = r.moment_map(st)
    assert (out.q1, out.c) == (1.3, pytest.approx(0.4, abs=1e-15))
    assert r.grad_factor(st) == 1.0 and r.c_slope(st) == pytest.approx(1.0)


def test_residual_composes_in_serial_and_repeat():
    r = Residual([Activation("tanh"), Dense(1.0)], 0.5)
    net = repeat(serial(r, Dense(1.0)), 3)
    assert math.isfinite(MeanField(net).propagate(2).q[-1])


@pytest.mark.parametrize("alpha", [-0.1, math.inf, float("nan"), "0.5", True])
def test_residual_bad_alpha_is_clear_error(alpha):
    with pytest.raises(VanishcalcError, match="alpha"):
        Residual([Dense(1.0)], alpha)


def test_residual_empty_or_denseless_branch_is_clear_error():
    with pytest.raises(VanishcalcError, match="empty"):
        Residual([], 0.5)
    with pytest.raises(VanishcalcError, match="Dense"):
        Residual([Activation("tanh")], 0.5)
    with pytest.raises(VanishcalcError, match="not a layer"):
        Residual("tanh", 0.5)
