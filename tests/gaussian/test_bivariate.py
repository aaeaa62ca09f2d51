"""expect2 against cited closed kernels and an independent mpmath 2-D reference."""
from __future__ import annotations

import math

import mpmath
import pytest

from reference import mp_bivariate as mpb
from vanishcalc.activation import activation
from vanishcalc.errors import VanishcalcError
from vanishcalc.gaussian.bivariate import _numeric, expect2


def _cho_saul_relu(q1, q2, c):
    """Cho & Saul 2009, eq. 6 with n = 1, scaled: E[relu(u1)relu(u2)]."""
    th = math.acos(c)
    return math.sqrt(q1 * q2) / (2 * math.pi) * (math.sin(th) + (math.pi - th) * math.cos(th))


@pytest.mark.parametrize("c", [-1.0, -0.6, 0.0, 0.25, 0.9, 1.0])
def test_expect2_relu_exact_cho_saul(c):
    v = expect2("relu", q1=1.7, q2=0.4, c=c)
    assert v.exact is not None
    assert float(v) == pytest.approx(_cho_saul_relu(1.7, 0.4, c), rel=1e-15, abs=1e-15)


@pytest.mark.parametrize("c", [-0.8, 0.3, 1.0])
def test_expect2_erf_exact_williams_arcsin(c):
    q1, q2 = 0.7, 2.5
    ref = 2 / math.pi * math.asin(2 * c * math.sqrt(q1 * q2) / math.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
    v = expect2("erf", q1=q1, q2=q2, c=c)
    assert v.exact is not None and float(v) == pytest.approx(ref, rel=1e-15)


def test_expect2_gaussian_exact_determinant():
    q1, q2, c = 0.5, 1.5, -0.4
    # E[exp(-u'u)] = det(I + 2Σ)^(-1/2)
    det = (1 + 2 * q1) * (1 + 2 * q2) - 4 * c * c * q1 * q2
    assert float(expect2("exp(-x**2)", q1=q1, q2=q2, c=c)) == pytest.approx(det ** -0.5, rel=1e-15)


def test_expect2_relu_derivative_exact_arccos_degree0():
    d = activation("relu").derivative(1)
    assert float(expect2(d, q1=2.0, c=0.5)) == pytest.approx((math.pi - math.acos(0.5)) / (2 * math.pi),
                                                            rel=1e-15)


@pytest.mark.parametrize("c", [0.35, -0.5])
def test_expect2_numeric_tanh_vs_mpmath_mehler(c):
    """30-digit mpmath Hermite coefficients summed by Mehler's formula (|c|^60 < 1e-18)."""
    q1, q2 = 1.3, 0.6
    ref = mpb.expect2_mehler(mpmath.tanh, mpmath.tanh, q1, q2, c, n_max=60, dps=30)
    v = expect2("tanh", q1=q1, q2=q2, c=c)
    assert v.exact is None
    diff = abs(float(v) - float(ref))
    assert diff <= 1e-12 * abs(float(ref))
    assert diff <= v.error + 1e-16 * abs(float(ref))       # the truth lies within the error
    assert v.error <= 1e-12 * abs(float(ref))              # and the error meets its target


def test_expect2_numeric_kinked_vs_mpmath_mehler():
    """hardtanh × relu: kinks of g become kink lines in the inner integral."""
    q1, q2, c = 2.0, 0.8, 0.3
    ht = lambda x: mpmath.mpf(-1) if x < -1 else (mpmath.mpf(1) if x > 1 else x)  # noqa: E731
    relu = lambda x: x if x > 0 else mpmath.mpf(0)  # noqa: E731
    ref = mpb.expect2_mehler(ht, relu, q1, q2, c, n_max=40, f_kinks=(-1, 1), g_kinks=(0,), dps=30)
    v = expect2("hardtanh", "relu", q1=q1, q2=q2, c=c)
    assert abs(float(v) - float(ref)) <= 1e-12 * abs(float(ref))
    assert abs(float(v) - float(ref)) <= v.error + 1e-16


@pytest.mark.parametrize("c", [0.3, 0.99, 1 - 1e-8, -1 + 1e-10])
def test_expect2_numeric_relu_near_unit_c_vs_cho_saul(c):
    """The numeric path (forced) keeps 1e-12 as |c| → 1, where the inner Gaussian is narrow."""
    a = activation("relu")
    value, err = _numeric(a, a, 1.2, 0.9, c)
    ref = _cho_saul_relu(1.2, 0.9, c)
    # the float reference itself cancels near c = −1 (value ~1e-16): absolute floor 1e-16
    assert abs(value - ref) <= 1e-12 * abs(ref) + 1e-16
    assert abs(value - ref) <= err + 1e-16


def test_expect2_c_one_equals_1d_mpmath():
    """c = 1 exactly uses the 1-D rule (no narrow inner Gaussian)."""
    ref = mpb.expect1(lambda x: mpmath.tanh(x) ** 2, 0.8, dps=30)
    assert float(expect2("tanh", q1=0.8, c=1.0)) == pytest.approx(float(ref), rel=1e-13)


@pytest.mark.parametrize("kwargs", [dict(c=1.5), dict(c=float("nan")), dict(q1=-1.0),
                                    dict(q1=float("inf")), dict(q2=0.0)])
def test_expect2_bad_input_raises_valueerror(kwargs):
    with pytest.raises(ValueError) as exc:
        expect2("tanh", **kwargs)
    assert any(k in str(exc.value) for k in ("c", "q1", "q2"))


def test_expect2_dirac_input_raises():
    with pytest.raises(VanishcalcError, match="Dirac"):
        expect2(activation("Heaviside(x)").derivative(1))
