"""The activation zoo against the definitions in issue #3 and the cited papers.

Reference: ``reference.mp_gauss.ZOO``, written by hand (piecewise functions as Piecewise)
and evaluated with mpmath; never the library's own expressions.
"""
from __future__ import annotations

import mpmath
import pytest
import sympy

from reference.mp_gauss import ALIASES, ZOO, X, lambdify_mp
from vanishcalc import zoo
from vanishcalc.parse import parse

ISSUE_NAMES = ["linear", "relu", "leaky_relu", "elu", "selu", "celu", "gelu", "gelu_tanh", "silu",
               "mish", "tanh", "sigmoid", "hard_sigmoid", "hardtanh", "relu6", "hardswish",
               "softplus", "softsign", "log_sigmoid", "sin", "erf", "gaussian", "lecun_tanh"]

# Points that probe every branch: both sides of each kink (±1, ±3, 6), far tails, 0.
POINTS = ["-40", "-7.5", "-3.25", "-3", "-2.75", "-1.5", "-1", "-0.5", "-0.03125", "0", "0.03125",
          "0.5", "1", "1.5", "2.75", "3", "3.25", "5.5", "6", "6.5", "40"]


def test_zoo_names_match_issue_list():
    assert sorted(zoo.names()) == sorted(ISSUE_NAMES)
    assert zoo.lookup("swish").name == "silu"
    assert zoo.lookup("identity").name == "linear"
    assert zoo.lookup("no_such_activation") is None


@pytest.mark.parametrize("name", ISSUE_NAMES + sorted(ALIASES))
def test_zoo_definition_vs_mpmath_reference(name):
    ref_expr, _ = ZOO[ALIASES.get(name, name)]
    ours = lambdify_mp(parse(name), X)
    ref = lambdify_mp(ref_expr, X)
    with mpmath.workdps(30):
        for p in POINTS:
            t = mpmath.mpf(p)
            a, b = ours(t), ref(t)
            assert abs(a - b) <= mpmath.mpf(10) ** -25 * max(1, abs(b)), (name, p, a, b)


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_zoo_expressions_are_in_sympys_evaluated_form(name):
    # The zoo builds Max/Min without SymPy's evaluation (speed); the result must be the
    # very expression evaluation gives, or activation("relu") and Max(0, x) typed by a
    # user would be different keys with different caches.
    expr = zoo.lookup(name).expr()
    from sympy.functions.elementary.piecewise import ExprCondPair
    rebuilt = eval(sympy.srepr(expr), {**vars(sympy), "ExprCondPair": ExprCondPair})  # evaluated
    assert rebuilt == expr and sympy.srepr(rebuilt) == sympy.srepr(expr)
    if expr.has(sympy.Max, sympy.Min):     # the user typing the same formula gets the same key
        assert parse(name) == parse(sympy.sstr(expr))


def test_zoo_selu_constants_klambauer_2017():
    # arXiv:1706.02515, eq. 14: α01 ≈ 1.6732632423543772848170429916717,
    # λ01 ≈ 1.0507009873554804934193349852946.
    assert abs(zoo.SELU_ALPHA - sympy.Float("1.6732632423543772848170429916717", 40)) < 1e-31
    assert abs(zoo.SELU_LAMBDA - sympy.Float("1.0507009873554804934193349852946", 40)) < 1e-31


@pytest.mark.parametrize("text, expected", [
    ("leaky_relu(0.2)", sympy.Piecewise((X / 5, X < 0), (X, True))),
    ("leaky_relu(x, 0.2)", sympy.Piecewise((X / 5, X < 0), (X, True))),
    ("elu(2)", sympy.Piecewise((2 * (sympy.exp(X) - 1), X < 0), (X, True))),
    ("celu(2)", sympy.Piecewise((2 * (sympy.exp(X / 2) - 1), X < 0), (X, True))),
    ("relu(x - 1)", sympy.Piecewise((0, X < 1), (X - 1, True))),
])
def test_zoo_parameters_vs_hand_written(text, expected):
    ours = lambdify_mp(parse(text), X)
    ref = lambdify_mp(expected, X)
    with mpmath.workdps(30):
        for p in POINTS:
            t = mpmath.mpf(p)
            assert abs(ours(t) - ref(t)) <= mpmath.mpf(10) ** -25 * max(1, abs(ref(t))), (text, p)


def test_zoo_decimal_parameters_are_exact_rationals():
    # 0.01 must stay 1/100 (not the double 0.01000000000000000020816681711721685...).
    assert parse("leaky_relu").has(sympy.Rational(1, 100))
    assert not parse("leaky_relu").has(sympy.Float)
    assert not parse("lecun_tanh").has(sympy.Float)


def test_zoo_lookup_ignores_letter_case():
    assert zoo.lookup("ReLU").name == "relu"
    assert zoo.lookup("GELU").name == "gelu"
    assert zoo.lookup("Swish").name == "silu"


def test_zoo_did_you_mean():
    assert zoo.did_you_mean("rleu", zoo.names()) == " (did you mean 'relu'?)"
    assert zoo.did_you_mean("completely_different", zoo.names()) == ""
