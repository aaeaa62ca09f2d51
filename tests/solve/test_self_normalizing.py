"""``self_normalizing`` against Klambauer et al. 2017 (closed forms of α01, λ01; Jacobian
spectral norm 0.7877) and independent mpmath quadratures written here.

The closed forms (Klambauer et al., arXiv:1706.02515, §"Stable and Attracting Fixed Point (0, 1) for Normalized Weights"):
α01 = −√(2/π) / (erfc(1/√2)·√e − 1),
λ01 = (1 − erfc(1/√2)√e)·√(2π)·(2 erfc(√2) e² + π erfc(1/√2)² e − 2(2 + π) erfc(1/√2)√e + π + 2)^(−1/2).
"""
from __future__ import annotations

import mpmath
import pytest

from vanishcalc import (ComplexValuedError, DivergenceError, NotConvergedError, ParseError,
                        VanishcalcError, activation, gain)
from vanishcalc.parse import parse
from vanishcalc.solve.self_normalizing import self_normalizing

SELU_FAMILY = "l*(Max(x, 0) + Min(a*(exp(x) - 1), 0))"


def _selu_closed_forms():
    with mpmath.workdps(50):
        e, r = mpmath.e, mpmath.erfc(1 / mpmath.sqrt(2))
        alpha = -mpmath.sqrt(2 / mpmath.pi) / (r * mpmath.sqrt(e) - 1)
        lam = ((1 - r * mpmath.sqrt(e)) * mpmath.sqrt(2 * mpmath.pi)
               / mpmath.sqrt(2 * mpmath.erfc(mpmath.sqrt(2)) * e ** 2 + mpmath.pi * r ** 2 * e
                             - 2 * (2 + mpmath.pi) * r * mpmath.sqrt(e) + mpmath.pi + 2))
        return alpha, lam


@pytest.fixture(scope="module")
def selu():
    return self_normalizing(SELU_FAMILY, params=("a", "l"))


def test_self_normalizing_selu_vs_klambauer_closed_form(selu):
    with mpmath.workdps(50):
        alpha, lam = _selu_closed_forms()
        # the constants as the issue and the paper print them (20 digits)
        assert abs(alpha - mpmath.mpf("1.6732632423543772848")) < 1e-19
        assert abs(lam - mpmath.mpf("1.0507009873554804934")) < 1e-19
        for name, ref in (("a", alpha), ("l", lam)):
            v = selu.params[name]
            assert abs(float(v) - ref) <= v.error, (name, v, ref)
            assert v.error <= 1e-12
            assert abs(mpmath.mpf(selu.digits[name]) - ref) < 1e-22


def _mp_selu_moments(alpha, lam):
    """E[w(z) φ(z)^k] for SELU by mpmath quadrature split at 0, written independently."""
    pdf = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)
    f = lambda z: lam * z if z > 0 else lam * alpha * (mpmath.exp(z) - 1)
    E = lambda g: mpmath.quad(lambda z: g(z) * pdf(z), [-mpmath.inf, 0, mpmath.inf])
    return (E(f), E(lambda z: f(z) ** 2), E(lambda z: (z * z - 1) * f(z)) / 2,
            E(lambda z: (z * z - 1) * f(z) ** 2) / 2)


def test_self_normalizing_selu_jacobian_vs_mpmath_and_paper(selu):
    with mpmath.workdps(40):
        alpha, lam = _selu_closed_forms()
        m1, m2, dmu, dnu = _mp_selu_moments(alpha, lam)
        assert abs(m1) < 1e-30 and abs(m2 - 1) < 1e-30       # the reference itself is right
        (j00, j01), (j10, j11) = selu.jacobian
        assert j00 == 0.0 and j10 == 0.0                      # ω = 0: no μ dependence
        assert abs(j01 - dmu) < 1e-14 and abs(j11 - dnu) < 1e-14
        eig = sorted(float(e) for e in selu.eigenvalues)
        assert eig[0] == 0.0 and abs(eig[1] - dnu) <= selu.eigenvalues[1].error + 1e-15
        norm = mpmath.sqrt(dmu ** 2 + dnu ** 2)
        assert abs(float(selu.spectral_norm) - norm) <= selu.spectral_norm.error + 1e-15
    # Klambauer et al. 2017, §"Stable and Attracting Fixed Point (0, 1) for Normalized
    # Weights": the spectral norm of J(0, 1) is 0.7877 < 1
    assert round(float(selu.spectral_norm), 4) == 0.7877
    assert selu.stable
    assert abs(float(selu.mean)) <= selu.mean.error + 1e-20
    assert abs(float(selu.second_moment) - 1) <= selu.second_moment.error + 1e-15


def test_self_normalizing_odd_family_one_parameter_vs_mpmath():
    s = self_normalizing("l*tanh(x)", params=("l",))
    with mpmath.workdps(40):
        m2 = mpmath.quad(lambda z: mpmath.tanh(z) ** 2 * mpmath.exp(-z * z / 2),
                         [-mpmath.inf, mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)
        ref = 1 / mpmath.sqrt(m2)
    v = s.params["l"]
    assert abs(float(v) - ref) <= v.error and v.error < 1e-12
    # the same number as the second-moment gain of tanh (a one-parameter SNN is a gain)
    assert abs(float(gain("tanh")) - ref) < 1e-13


def test_self_normalizing_guess_reaches_same_root():
    s = self_normalizing(SELU_FAMILY, params=("a", "l"), guess={"a": 1.5, "l": 1.1})
    alpha, _ = _selu_closed_forms()
    assert abs(float(s.params["a"]) - alpha) <= s.params["a"].error


# ---------------------------------------------------------------- bad input


def test_self_normalizing_undeclared_name_is_parse_error_naming_params():
    with pytest.raises(ParseError, match="declared parameters: a.*add 'l' to params"):
        self_normalizing(SELU_FAMILY, params=("a",))


def test_self_normalizing_parameter_absent_or_too_many():
    with pytest.raises(VanishcalcError, match=r"\['b'\] do not appear"):
        self_normalizing("l*tanh(x)", params=("l", "b"))
    with pytest.raises(VanishcalcError, match="3 free parameter"):
        self_normalizing("l*tanh(b*x) + a", params=("a", "b", "l"))
    with pytest.raises(ParseError, match="already taken"):
        self_normalizing("x*exp(x)", params=("exp",))
    with pytest.raises(ParseError, match="already taken"):
        self_normalizing("l*x", params=("x",))


def test_self_normalizing_one_parameter_not_odd_has_no_solution():
    with pytest.raises(VanishcalcError, match="no solution with one parameter l.*not odd"):
        self_normalizing("l*sigmoid(x)", params=("l",))


def test_self_normalizing_singular_system():
    with pytest.raises(VanishcalcError, match="singular"):
        self_normalizing("a*exp(-x**2) + l*exp(-x**2)", params=("a", "l"))


def test_self_normalizing_complex_and_divergent_family():
    with pytest.raises(ComplexValuedError, match="complex"):
        self_normalizing("l*sqrt(x) + a", params=("a", "l"))
    with pytest.raises(DivergenceError, match="grows too fast"):
        self_normalizing("l*exp(a*x**2)", params=("a", "l"))


@pytest.mark.slow
def test_self_normalizing_no_root_is_not_converged():
    # E[l·e^{a z}] = l·e^{a²/2} vanishes only at l = 0, where E[φ²] = 0 ≠ 1: no solution
    with pytest.raises(NotConvergedError, match="may have no solution") as info:
        self_normalizing("l*exp(a*x)", params=("a", "l"))
    assert set(info.value.best) == {"a", "l"}


# ---------------------------------------------------------------- the parser's rule


def test_parse_params_only_where_asked():
    expr = parse(SELU_FAMILY, params=("a", "l"))
    assert {str(s) for s in expr.free_symbols} == {"a", "l", "x"}
    for text in ("a*x", SELU_FAMILY):
        with pytest.raises(ParseError, match="unknown name 'a'|unknown name 'l'"):
            parse(text)
        with pytest.raises(ParseError):
            activation(text)
    with pytest.raises(ParseError):
        gain("l*tanh(x)")


def test_parse_params_names_checked():
    for bad in (("x",), ("exp",), ("pi",), ("relu",), ("ReLU",), ("a", "a"), (1,), ("a b",),
                ("__class__",)):
        with pytest.raises(ParseError):
            parse("x", params=bad)
    with pytest.raises(ParseError, match="sequence of names"):
        parse("x", params=5)
    # a declared parameter stays a parameter: it cannot smuggle in anything else
    with pytest.raises(ParseError, match="attribute"):
        parse("a.real", params=("a",))
    with pytest.raises(ParseError, match="must be real numbers"):
        parse("leaky_relu(a)", params=("a",))


def test_self_normalizing_solution_is_a_spec_with_unit_gain_and_zero_mean():
    # SELU written with a polynomial kink condition (Min(x, 0) inside exp), which Activation
    # splits; the solved φ then goes through the library's own certified expectations
    s = self_normalizing("l*(Max(x, 0) + a*(exp(Min(x, 0)) - 1))", params=("a", "l"))
    alpha, lam = _selu_closed_forms()
    assert abs(float(s.params["a"]) - alpha) <= s.params["a"].error
    assert abs(float(s.params["l"]) - lam) <= s.params["l"].error
    from vanishcalc import expect
    phi = activation(s.expr)
    m1 = expect(phi)
    assert abs(float(m1)) <= m1.error + 1e-15
    g = gain(phi)                       # 1/√E[φ²] = 1 at the fixed point
    assert abs(float(g) - 1.0) <= g.error + 1e-15


def test_self_normalizing_gaussian_rbf_family_vs_closed_form():
    # φ = l·(e^{−x²} − b): E[e^{−z²}] = 1/√3, E[e^{−2z²}] = 1/√5 and E[z² e^{−k z²}] = (1 + 2k)^{−3/2}
    # give b = 1/√3, l = (1/√5 − 1/3)^{−1/2}, ∂μ̃/∂ν = −l/(3√3), ∂ν̃/∂ν = l²(2/9 − 2/(5√5))
    s = self_normalizing("l*(exp(-x**2) - b)", params=("b", "l"), guess={"b": 0.5, "l": 3.0})
    with mpmath.workdps(30):
        b = 1 / mpmath.sqrt(3)
        l = 1 / mpmath.sqrt(1 / mpmath.sqrt(5) - mpmath.mpf(1) / 3)
        for name, ref in (("b", b), ("l", l)):
            v = s.params[name]
            assert abs(float(v) - ref) <= v.error and v.error < 1e-12
        dmu = -l / (3 * mpmath.sqrt(3))
        dnu = l ** 2 * (mpmath.mpf(2) / 9 - 2 / (5 * mpmath.sqrt(5)))
        assert abs(s.jacobian[0][1] - dmu) < 1e-14 and abs(s.jacobian[1][1] - dnu) < 1e-14
        assert abs(float(s.eigenvalues[1]) - dnu) <= s.eigenvalues[1].error + 1e-15
    assert s.stable


def test_self_normalizing_condition_vanishing_on_a_stretch_is_no_kink():
    # Max(a·x, 0) at a = 0: the condition a·x = 0 holds for every x, the branches agree there
    from vanishcalc.parse import param_symbol
    from vanishcalc.solve.self_normalizing import _Family
    phi = parse("l*Max(a*x, 0) + x", params=("a", "l"))
    fam = _Family(phi, (param_symbol("a"), param_symbol("l")), "l*Max(a*x, 0) + x")
    with mpmath.workdps(30):
        assert fam.kinks([mpmath.mpf(0), mpmath.mpf(1)]) == []
        assert [float(k) for k in fam.kinks([mpmath.mpf(2), mpmath.mpf(1)])] == [0.0]
