"""Residual α for a depth, q growth laws, dropout ξc(keep): closed forms, scipy, mpmath."""
import math

import mpmath
import numpy as np
import pytest
from scipy.optimize import brentq

from vanishcalc.errors import VanishcalcError
from vanishcalc.solve.residual import dropout_xi_c, residual_alpha, residual_growth
from tests.reference.mp_bivariate import expect1


@pytest.mark.parametrize("depth,target,s1,s2", [(50, 2.0, 1.0, 1.3), (400, 1.5, 1.2, 0.8)])
def test_residual_alpha_relu_no_norm_closed_form(depth, target, s1, s2):
    """r = (1 + α²σw₁²σw₂²/2)^L, so α* = √((T^{1/L} − 1)·2/(σw₁²σw₂²))."""
    a = residual_alpha("relu", depth, target=target, sigma_w=s1, sigma_w2=s2)
    exact = math.sqrt((target ** (1 / depth) - 1) * 2 / (s1 * s1 * s2 * s2))
    assert abs(float(a.alpha) - exact) <= a.alpha.error + 1e-12 * exact
    assert a.binding and a.ratio == pytest.approx(target, rel=1e-10)


def test_residual_alpha_relu_pre_ln_vs_scipy_on_closed_form():
    """Pre-LN relu: q_l = q0 + l·α²κ, factor 1 + α²κ/q_l, κ = σw₁²σw₂²γ²/2 (LN output γ²)."""
    L, T, s1, s2, q0 = 60, 2.0, 1.1, 1.4, 1.0
    kappa = s1 * s1 * s2 * s2 / 2

    def log_r(a):
        ql = q0 + np.arange(L) * a * a * kappa
        return np.log1p(a * a * kappa / ql).sum() - math.log(T)
    exact = brentq(log_r, 1e-6, 10.0, xtol=1e-15)
    a = residual_alpha("relu", L, target=T, placement="pre", sigma_w=s1, sigma_w2=s2, q0=q0)
    assert float(a.alpha) == pytest.approx(exact, rel=1e-10)


def test_residual_alpha_post_ln_relu_never_binds():
    """Post-LN relu: each block's factor (1 + α²κ)·1/(1 + α²κ) = 1 exactly."""
    a = residual_alpha("relu", 30, placement="post", alpha_max=5.0)
    assert not a.binding and float(a.alpha) == 5.0 and a.ratio == pytest.approx(1.0, abs=1e-12)


def test_residual_growth_laws_yang_schoenholz():
    g = residual_growth("relu", 0.5, depth=40, sigma_w=1.2, sigma_w2=0.9)
    assert g.law == "geometric" and g.rate == pytest.approx(1 + 0.25 * 1.44 * 0.81 / 2, rel=1e-12)
    g = residual_growth("tanh", 0.5, placement="post", depth=40)
    assert g.law == "constant" and np.allclose(g.q, 1.0)
    # pre-LN: increments α²(σw₂² E[tanh²(√(σw₁²γ² + σb²) z)] + σb²), mpmath
    g = residual_growth("tanh", 0.7, placement="pre", depth=40, sigma_w=1.3, sigma_b=0.2)
    inc = 0.49 * (1.69 * float(expect1(lambda x: mpmath.tanh(x) ** 2, 1.69 + 0.04)) + 0.04)
    assert g.law == "linear" and np.allclose(np.diff(g.q), inc, rtol=1e-11)


def test_residual_growth_gauss_polynomial_two_thirds():
    """exp(−x²), σb = 0: q_B = σw₂²/√(4σw₁²q + 1) ~ q^{−1/2}, so dq/dl ∝ q^{−1/2}: q ~ l^{2/3}."""
    g = residual_growth("exp(-x**2)", 0.5, depth=1000)
    assert g.law == "polynomial" and g.exponent == pytest.approx(2 / 3, abs=0.01)


def test_dropout_xi_c_relu_closed_form_and_monotone():
    """[relu, Dropout(ρ), Dense(σw, σb)]: χc = σw²(π − arccos c*)/(2π) with c* from the
    arc-cosine kernel (solved here with scipy)."""
    sw, sb = 1.2, 0.5
    d = dropout_xi_c("relu", [0.95, 0.8], sigma_w=sw, sigma_b=sb)
    for rho, xi in zip((0.95, 0.8), d.xi_c):
        qs = sb * sb / (1 - sw * sw / (2 * rho))

        def k1(c):
            return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)
        cs = brentq(lambda c: (sw * sw * qs * k1(c) + sb * sb) / qs - c, 0.0, 1 - 1e-12,
                    xtol=1e-15)
        chi = sw * sw * (math.pi - math.acos(cs)) / (2 * math.pi)
        assert float(xi) == pytest.approx(-1 / math.log(chi), rel=1e-8)
    assert float(d.xi_c[0]) > float(d.xi_c[1])


def test_solver_bad_input_is_clear_error():
    with pytest.raises(VanishcalcError, match="target"):
        residual_alpha("tanh", 10, target=1.0)
    with pytest.raises(VanishcalcError, match="placement"):
        residual_growth("tanh", 0.5, placement="middle")
    with pytest.raises(VanishcalcError, match="keep"):
        dropout_xi_c("tanh", [0.5, 0.0])
    with pytest.raises(VanishcalcError, match="alpha"):
        residual_growth("tanh", -0.5)
