"""``Value``: a float with its closed form, error and method (STYLE.md, convention 2)."""
from __future__ import annotations

import math
import pickle
import re

import pytest
import sympy

from vanishcalc import Value
from vanishcalc.solve.gain import gain


def test_value_is_a_float_and_arithmetic_gives_floats():
    v = Value.from_exact(sympy.sqrt(2))
    assert isinstance(v, float)
    assert float(v) == math.sqrt(2)
    assert type(v * 2) is float and v * 2 == 2 * math.sqrt(2)
    assert math.isclose(math.sqrt(v), 2 ** 0.25)


def test_value_repr_of_gain_matches_issue():
    assert repr(gain("exp(-x**2)")) == "5**(1/4) ≈ 1.4953487812212205 (exact)"
    assert str(gain("relu")) == "sqrt(2) ≈ 1.4142135623730951 (exact)"


def test_value_repr_numeric_shows_error_and_method():
    v = Value(0.5, error=3e-16, error_kind="estimate", method="numeric:gauss-kronrod")
    assert repr(v) == "0.5 ± 3.0e-16 (numeric:gauss-kronrod)"


def test_value_repr_latex():
    assert gain("exp(-x**2)")._repr_latex_() == r"$\sqrt[4]{5} \approx 1.4953487812212205$"
    assert Value(0.25, error=1e-17)._repr_latex_() == r"$0.25 \pm 1.0e-17$"


def test_value_from_exact_is_correctly_rounded_and_bounded():
    # float(N(expr, 30)) of 1/3 is the double nearest 1/3; the bound is half an ulp.
    v = Value.from_exact(sympy.Rational(1, 3))
    assert float(v) == 1 / 3
    assert v.error_kind == "bound" and 0 < v.error <= abs(1 / 3) * 2.0 ** -52
    assert v.exact == sympy.Rational(1, 3)


@pytest.mark.parametrize("v", [
    Value.from_exact(sympy.Integer(5) ** sympy.Rational(1, 4), method="exact:test"),
    Value(0.123, error=1e-16, error_kind="estimate", method="numeric:gauss-kronrod"),
])
def test_value_pickle_round_trip(v):
    w = pickle.loads(pickle.dumps(v))
    assert isinstance(w, Value)
    assert float(w) == float(v)
    assert (w.exact, w.error, w.error_kind, w.method) == (v.exact, v.error, v.error_kind, v.method)
    assert repr(w) == repr(v)


def test_value_relative_error():
    assert Value(2.0, error=1e-15).relative_error() == 5e-16
    assert Value(0.0, error=1e-15).relative_error() == math.inf


def test_value_repr_rounds_long_decimal_constants_and_says_so():
    # selu's λ, α are 31-digit decimals; SymPy carries them at 40 digits through every product
    g = gain("selu", convention="backward")
    text = repr(g)
    assert "1.5454566*exp(2)" in text and "shown to 8 digits" in text
    assert not re.search(r"\d\.\d{9,}", text.split("≈")[0]), text
    assert "1.54545664614399049855119" in sympy.sstr(g.exact)     # kept in full
    assert "digits" not in repr(gain("relu"))


def test_value_latex_rounds_long_decimal_constants_too():
    latex = gain("selu", convention="backward")._repr_latex_()
    assert "1.5454566 e^{2}" in latex and "8 digits" in latex
    assert not re.search(r"\d\.\d{9,}", latex.split(r"\approx")[0]), latex


def test_from_exact_defers_simplify_until_exact_is_read():
    """Issue 12.4: the BN rate's sympy.simplify (0.4 s of init_table) runs only when .exact is
    read; the float comes from the unsimplified form at 30 digits and is the same double."""
    pi = sympy.pi
    expr = (pi / 2 - 0) / ((pi - 1) / 2)              # relu's BN rate as built: π/(π − 1)
    v = Value.from_exact(expr, simplify=True)
    assert float(v) == float(sympy.N(pi / (pi - 1), 30))
    assert v.exact == sympy.simplify(expr) and v.exact is v.exact
    w = pickle.loads(pickle.dumps(Value.from_exact(expr, simplify=True)))
    assert w.exact == sympy.simplify(expr) and float(w) == float(v)
    assert repr(Value.from_exact(expr, simplify=True)) == repr(v)
