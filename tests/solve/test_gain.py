"""``gain``: exact closed forms, torch.nn.init conventions, and mpmath references.

torch.nn.init.calculate_gain (documented table): linear/conv/sigmoid → 1, tanh → 5/3,
relu → √2, leaky_relu(a) → √(2/(1 + a²)), selu → 3/4.  The second-moment convention
reproduces the relu / leaky_relu / linear entries exactly; its tanh value is
1/√E[tanh(z)²] = 1.5925374197…, not torch's heuristic 5/3.
"""
from __future__ import annotations

import math

import mpmath
import pytest
import sympy
from sympy import Rational, pi, sqrt

from reference.mp_gauss import ZOO, X, gauss_expect
from vanishcalc import DivergenceError, ParseError, Value, VanishcalcError
from vanishcalc.solve.gain import gain


def assert_exact(value, closed):
    assert isinstance(value, Value)
    assert value.exact is not None, f"no closed form: {value!r}"
    assert sympy.simplify(value.exact - closed) == 0, (value.exact, closed)
    assert float(value) == pytest.approx(float(sympy.N(closed, 30)), rel=2 ** -52)


@pytest.mark.parametrize("spec, closed", [
    ("exp(-x**2)", Rational(5) ** Rational(1, 4)),                       # 1/√(1/√5)
    ("gaussian", Rational(5) ** Rational(1, 4)),
    ("relu", sqrt(2)),                                                   # He et al. 2015
    ("gelu", 1 / sqrt(Rational(1, 3) + sqrt(3) / (6 * pi))),
    ("linear", sympy.Integer(1)),
    ("identity", sympy.Integer(1)),
    ("sin", 1 / sqrt((1 - sympy.exp(-2)) / 2)),
    ("erf", 1 / sqrt(2 / pi * sympy.asin(Rational(2, 3)))),              # Williams 1997
])
def test_gain_closed_form_exact_vs_cited(spec, closed):
    assert_exact(gain(spec), closed)


@pytest.mark.parametrize("a", ["0.01", "0.2"])
def test_gain_leaky_relu_vs_torch_formula(a):
    # torch.nn.init.calculate_gain("leaky_relu", a) = sqrt(2.0 / (1 + a ** 2))
    ar = Rational(a)
    closed = sqrt(2 / (1 + ar ** 2))
    assert_exact(gain(f"leaky_relu({a})"), closed)
    assert float(gain(f"leaky_relu({a})")) == pytest.approx(math.sqrt(2.0 / (1 + float(a) ** 2)),
                                                            rel=1e-15)
    if a == "0.01":
        assert_exact(gain("leaky_relu"), closed)      # torch's default negative_slope


def test_gain_relu_linear_match_torch_table():
    assert float(gain("relu")) == pytest.approx(math.sqrt(2.0), rel=1e-16)
    assert float(gain("linear")) == 1.0


def test_gain_tanh_is_not_torch_five_thirds_vs_mpmath():
    expr, kinks = ZOO["tanh"]
    ref = gauss_expect(expr ** 2, 1, kinks, dps=40)
    with mpmath.workdps(40):
        want = 1 / mpmath.sqrt(ref.value)
    g = gain("tanh")
    assert abs(mpmath.mpf(float(g)) - want) <= g.error + 1e-30
    assert g.error <= 1e-13 * float(want)
    assert mpmath.nstr(want, 11) == "1.5925374197"
    assert abs(float(g) - 5 / 3) > 0.07


def test_gain_selu_is_one_klambauer_2017():
    # The SELU fixed point E[selu(z)²] = 1 gives gain 1 (to the rounding of α, λ).
    assert abs(float(gain("selu")) - 1) < 1e-12


@pytest.mark.parametrize("name, q", [("tanh", 4.0), ("softplus", 0.25), ("hardswish", 1.0),
                                     ("mish", 1.0), ("relu6", 4.0)])
def test_gain_second_moment_vs_mpmath(name, q):
    expr, kinks = ZOO[name]
    qe = sympy.Rational(repr(q))
    ref = gauss_expect(expr ** 2, qe, kinks, dps=40)
    with mpmath.workdps(40):
        want = mpmath.sqrt(mpmath.mpf(q) / ref.value)
        g = gain(name, q=q)
        assert abs(mpmath.mpf(float(g)) - want) <= g.error + 1e-30
    assert g.error <= 1e-13 * float(want)


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu", "softplus", "elu", "hard_sigmoid"])
def test_gain_std_convention_vs_mpmath(name):
    expr, kinks = ZOO[name]
    m1 = gauss_expect(expr, 1, kinks, dps=40)
    m2 = gauss_expect(expr ** 2, 1, kinks, dps=40)
    with mpmath.workdps(40):
        want = 1 / mpmath.sqrt(m2.value - m1.value ** 2)
        g = gain(name, "std")
        assert abs(mpmath.mpf(float(g)) - want) <= g.error + 1e-30, (float(g), want, g.error)
    assert g.error <= 1e-12 * float(want)


@pytest.mark.parametrize("name", ["tanh", "relu", "gelu", "softsign", "selu", "sigmoid"])
def test_gain_backward_convention_vs_mpmath(name):
    expr, kinks = ZOO[name]
    ref = gauss_expect(sympy.diff(expr, X) ** 2, 1, kinks, dps=40)
    with mpmath.workdps(40):
        want = 1 / mpmath.sqrt(ref.value)
        g = gain(name, "backward")
        assert abs(mpmath.mpf(float(g)) - want) <= g.error + 1e-30, (float(g), want, g.error)
    assert g.error <= 1e-12 * float(want)


def test_gain_relu_std_closed_form():
    # Var[relu(z)] = 1/2 − 1/(2π)
    assert_exact(gain("relu", "std"), 1 / sqrt(Rational(1, 2) - 1 / (2 * pi)))
    assert_exact(gain("relu", "backward"), sqrt(2))


def test_gain_homogeneous_is_q_independent():
    # relu is 1-homogeneous: √(q / E[relu(√q z)²]) = √2 for every q.
    for q in (0.25, 4.0):
        assert_exact(gain("relu", q=q), sqrt(2))


@pytest.mark.parametrize("kwargs, error, piece", [
    (dict(spec="relu", convention="kaiming"), VanishcalcError, "kaiming"),
    (dict(spec="relu", q=0), VanishcalcError, "q must be > 0"),
    (dict(spec="relu", q=-1), VanishcalcError, "q"),
    (dict(spec="0"), VanishcalcError, "undefined"),
    (dict(spec="1", convention="std"), VanishcalcError, "undefined"),
    (dict(spec="exp(x**2)"), DivergenceError, "does not exist"),
    (dict(spec="y"), ParseError, "'y'"),
])
def test_gain_bad_input_names_problem(kwargs, error, piece):
    with pytest.raises(error) as info:
        gain(**kwargs)
    assert piece in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


def test_gain_backward_of_step_is_documented_error():
    with pytest.raises(VanishcalcError):
        gain("Heaviside(x)", "backward")


@pytest.mark.parametrize("spec, q, closed", [
    # Issue #10.2: both raised "the moment it divides by is 0".  E[e^{−2a x²}] at variance q
    # is 1/√(1 + 4aq) (a Gaussian integral), so g = √(q·√(1 + 4aq)).
    ("exp(-x**2)", 1e8, sympy.sqrt(10 ** 8 * sympy.sqrt(1 + 4 * 10 ** 8))),
    ("exp(-5e7*x**2)", 1.0, (1 + 4 * 5 * 10 ** 7) ** sympy.Rational(1, 4)),
])
def test_gain_narrow_gaussian_at_extreme_scale_vs_closed_form(spec, q, closed):
    g = gain(spec, q=q)
    ref = float(sympy.N(closed, 30))
    assert abs(float(g) - ref) <= g.error + 2 ** -52 * ref
    assert float(g) == pytest.approx(ref, rel=1e-15)


def test_gain_rejects_non_numeric_q_by_name():
    with pytest.raises(VanishcalcError, match="q"):
        gain("tanh", q="a")
