"""χ1(q), χc(q, c), μ_k(q) and the depth-L gradient product as SymPy expressions (issue 16),
against the closed forms of the issue and numbers from mpmath / the numeric MeanField."""
from __future__ import annotations


import mpmath
import pytest
import sympy

from vanishcalc.maps.meanfield import MeanField

q, c = sympy.Symbol("q", positive=True), sympy.Symbol("c", real=True)
sw = sympy.Symbol("sigma_w", positive=True)


def test_chi1_expr_relu_and_erf_closed_forms():
    assert MeanField("relu", 1.3, 0.0).chi1_expr(symbolic=True) == sw ** 2 / 2
    erf = MeanField("erf", 1.3, 0.2).chi1_expr(symbolic=True)
    assert sympy.simplify(erf - 4 * sw ** 2 / (sympy.pi * sympy.sqrt(1 + 4 * q))) == 0
    assert MeanField("tanh", 1.3, 0.2).chi1_expr() is None


def test_chi1_expr_at_q_star_is_chi1_erf():
    mf = MeanField("erf", 1.4, 0.3)
    qs = float(mf.q_star())
    assert float(mf.chi1_expr().subs(q, qs)) == pytest.approx(float(mf.chi1()), rel=1e-13)


def test_chi_c_expr_relu_and_erf_vs_mpmath():
    relu = MeanField("relu", 1.3).chi_c_expr(symbolic=True)
    assert sympy.simplify(relu - sw ** 2 * (sympy.pi - sympy.acos(c)) / (2 * sympy.pi)) == 0
    # erf' = 2e^{−x²}/√π: σw² E[φ'(u1)φ'(u2)], u2 = √q(c z1 + s z2).  The z2 integral of a
    # Gaussian is done by hand, E_z2[e^{−q(a + s z2)²}] = e^{−q a²/(1 + 2qs²)}/√(1 + 2qs²);
    # the z1 integral by mpmath
    mf = MeanField("erf", 1.5, 0.1)
    qv, cv = 0.7, 0.3
    mpmath.mp.dps = 30
    s2 = 1 - cv * cv
    inner = lambda z1: (mpmath.exp(-qv * (cv * z1) ** 2 / (1 + 2 * qv * s2))
                        / mpmath.sqrt(1 + 2 * qv * s2))
    ref = 1.5 ** 2 * 4 / mpmath.pi * mpmath.quad(
        lambda z1: mpmath.exp(-qv * z1 * z1) * inner(z1) * mpmath.npdf(z1),
        [-mpmath.inf, mpmath.inf])
    assert float(mf.chi_c_expr().subs({q: qv, c: cv})) == pytest.approx(float(ref), rel=1e-10)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_mu_expr_erf_closed_form_and_mpmath(k):
    mf = MeanField("erf", 1.2, 0.1)
    e = mf.mu_expr(k, symbolic=True)
    assert sympy.simplify(e - (4 * sw ** 2 / sympy.pi) ** k / sympy.sqrt(1 + 4 * k * q)) == 0
    mpmath.mp.dps = 20
    qv = 0.37
    ref = mpmath.quad(lambda z: (1.2 ** 2 * 4 / mpmath.pi * mpmath.exp(-2 * qv * z * z)) ** k
                      * mpmath.npdf(z), [-mpmath.inf, mpmath.inf])
    assert float(mf.mu_expr(k).subs(q, qv)) == pytest.approx(float(ref), rel=1e-12)


def test_mu_expr_relu_is_half_of_sigma_w_power():
    assert MeanField("relu", 1.3).mu_expr(3, symbolic=True) == sw ** 6 / 2


def test_chi1_product_relu_symbolic_depth():
    L = sympy.Symbol("L", positive=True, integer=True)
    assert MeanField("relu", 1.3).chi1_product_expr(L, symbolic=True) == (sw ** 2 / 2) ** L


def test_chi1_product_erf_along_trajectory_vs_propagate():
    mf = MeanField("erf", 1.4, 0.3)
    expr = mf.chi1_product_expr(4, q0=sympy.Rational(1, 2))
    p = mf.propagate(4, q0=0.5)
    assert float(expr) == pytest.approx(float(p.grad[0]), rel=1e-12)
    assert MeanField("tanh", 1.4, 0.3).chi1_product_expr(4) is None
