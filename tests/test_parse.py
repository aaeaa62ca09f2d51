"""The safe parser: a whitelist over Python's ``ast``; nothing is ever ``eval``-ed.

References: hand-written SymPy expressions, and the grammar in issue #3 §3.
"""
from __future__ import annotations

import builtins
import time

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference.mp_gauss import X
from vanishcalc import ParseError
from vanishcalc.activation import activation
from vanishcalc.gaussian.expect import expect
from vanishcalc.parse import parse


@pytest.mark.parametrize("text, expected", [
    ("exp(-x**2)", sympy.exp(-X ** 2)),
    ("x*exp(-x**2) + sin(2*x)", X * sympy.exp(-X ** 2) + sympy.sin(2 * X)),
    ("1/(1+x**2)", 1 / (1 + X ** 2)),
    ("Abs(x)**1.5", sympy.Abs(X) ** sympy.Rational(3, 2)),
    ("abs(x) + max(x, 0) - min(x, 1)", sympy.Abs(X) + sympy.Max(X, 0) - sympy.Min(X, 1)),
    ("0.01*x", X / 100),
    ("-x + +x - (-x)", X),
    ("pi*E*x", sympy.pi * sympy.E * X),
    ("1.7159*tanh(2*x/3)", sympy.Rational(17159, 10000) * sympy.tanh(2 * X / 3)),
    ("erf(x) + erfc(x)", sympy.erf(X) + sympy.erfc(X)),
    ("atan(x) + sinh(x) + cosh(x) + cos(x) + sign(x) + Heaviside(x)",
     sympy.atan(X) + sympy.sinh(X) + sympy.cosh(X) + sympy.cos(X) + sympy.sign(X) + sympy.Heaviside(X)),
    ("  tanh(x)  ", sympy.tanh(X)),
    ("1_000*x", 1000 * X),
])
def test_parse_builds_expected_expression_vs_hand_written(text, expected):
    got = parse(text)
    assert sympy.simplify(got - expected) == 0
    assert got.free_symbols <= {X}
    assert not got.has(sympy.Float)   # decimals become exact rationals


def test_parse_symbol_is_real():
    assert X.is_real and parse("x") == X
    assert parse("sqrt(x**2)") == sympy.Abs(X)


INJECTIONS = [
    ("__import__('os').system('touch {marker}')", "__"),
    ("().__class__", "__"),
    ("x.__class__", "__"),
    ("().__class__.__bases__[0].__subclasses__()", "__"),
    ("x.real", "x.real"),
    ("sympy.exp(x)", "sympy.exp"),
    ("lambda: 1", "lambda"),
    ("(lambda y: y)(x)", "lambda"),
    ("[x for x in (1, 2)]", "[x for x in (1, 2)]"),
    ("{{x: 1}}", "{x: 1}"),
    ("f'{{x}}'", "f-string"),
    ("max(x, 1, key=abs)", "key=abs"),
    ("x if x else 1", "x if x else 1"),
    ("x[0]", "x[0]"),
    ("x < 1", "x < 1"),
    ("x and 1", "x and 1"),
    ("'abc'", "'abc'"),
    ("open", "open"),
    ("foo(x)", "foo"),
    ("eval", "eval"),
    ("exec(x)", "exec"),
    ("y", "'y'"),
    ("x + y", "'y'"),
    ("x // 2", "FloorDiv"),
    ("x % 2", "Mod"),
    ("x @ x", "MatMult"),
    ("1j*x", "1j"),
    ("True*x", "True"),
    ("import os", "invalid syntax"),
    ("x; y", "invalid syntax"),
    ("x = 1", "invalid syntax"),
    ("(y := 3)", "y := 3"),
    ("", "empty"),
    ("exp(*x)", "starred"),
]


@pytest.mark.parametrize("template, piece", INJECTIONS, ids=[t for t, _ in INJECTIONS])
def test_parse_rejects_injection_with_no_side_effect(template, piece, tmp_path):
    marker = tmp_path / "pwned"
    text = template.format(marker=marker)
    with pytest.raises(ParseError) as info:
        parse(text)
    assert isinstance(info.value, ValueError)
    assert piece in str(info.value), str(info.value)
    assert not marker.exists()


def test_parse_rejects_import_without_touching_disk(tmp_path):
    marker = tmp_path / "pwned"
    for text in (f"__import__('os').system('touch {marker}')",
                 f"exp(__import__('os').system('touch {marker}'))",
                 f"getattr(__builtins__, 'exec')('open(\"{marker}\", \"w\")')"):
        with pytest.raises(ParseError):
            parse(text)
        with pytest.raises(ParseError):
            activation(text)
        with pytest.raises(ParseError):
            expect(text)
    assert not marker.exists()


def test_parse_rejects_over_long_input_naming_the_length():
    text = "+".join(["x"] * 600)          # 1199 characters
    with pytest.raises(ParseError, match="1199"):
        parse(text)
    parse("+".join([f"{k}*x**{k}" for k in range(1, 30)]))   # a long but legal polynomial


@pytest.mark.parametrize("text, piece", [
    ("9**9**9**9", "9**9**9"),
    ("2**10**10", "10**10"),
    ("x**1000", "1000"),
    ("10.0**400", "400"),
    ("1e400", "1e400"),
    ("1e308*10", "1e308"),
    ("pi**pi**pi**pi", "pi**pi**pi**pi"),
])
def test_parse_rejects_huge_numbers_fast(text, piece):
    start = time.perf_counter()
    with pytest.raises(ParseError) as info:
        parse(text)
    assert time.perf_counter() - start < 1.0
    assert piece in str(info.value), str(info.value)


@pytest.mark.parametrize("text", [
    "exp(" * 60 + "x" + ")" * 60,
    "-" * 300 + "x",
    "(" * 90 + "x" + "+1)" * 90,
    "sin(" * 400 + "x" + ")" * 400,
])
def test_parse_rejects_deep_nesting_fast(text):
    start = time.perf_counter()
    with pytest.raises(ParseError) as info:
        parse(text)
    assert time.perf_counter() - start < 1.0
    assert any(w in str(info.value) for w in ("nested", "nodes", "characters")), str(info.value)


@pytest.mark.parametrize("text, piece", [
    ("sqrt(-1)*x", "sqrt(-1)"),
    ("log(0) + x", "log(0)"),
    ("x/0", "x/0"),
    ("0**-1 + x", "0**-1"),
    ("sin(x, x)", "sin(x, x)"),
    ("Max(x)", "Max(x)"),
    ("elu(-1)", "-1"),
    ("leaky_relu(0.1, 0.2)", "leaky_relu"),
    ("relu(y)", "'y'"),
    ("leaky_relu(x)(x)", "leaky_relu(x)"),
])
def test_parse_rejects_bad_math_naming_the_piece(text, piece):
    with pytest.raises(ParseError) as info:
        parse(text)
    assert piece in str(info.value), str(info.value)


@pytest.mark.parametrize("value", [None, 3.0, b"x", ("x",)])
def test_parse_rejects_non_strings(value):
    with pytest.raises(ParseError, match=type(value).__name__):
        parse(value)


def test_parse_rejects_unhashable_non_strings():
    with pytest.raises(ParseError, match="list"):
        parse(["x"])


def test_parse_never_hands_user_text_to_sympify_or_eval(monkeypatch):
    """sympify/parse_expr/eval/exec on a str would run Python: make them explode if called."""
    import sys

    import sympy.parsing.sympy_parser as sympy_parser
    core_sympify = sys.modules["sympy.core.sympify"]   # the module (sympy.core.sympify is the function)

    calls = []

    def guard(original, name):
        def wrapped(a, *args, **kwargs):
            if isinstance(a, str):
                calls.append((name, a))
                raise AssertionError(f"{name} called on the string {a!r}")
            return original(a, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(sympy, "sympify", guard(sympy.sympify, "sympy.sympify"))
    monkeypatch.setattr(core_sympify, "sympify", guard(core_sympify.sympify, "sympify"))
    monkeypatch.setattr(sympy_parser, "parse_expr", guard(sympy_parser.parse_expr, "parse_expr"))
    monkeypatch.setattr(sympy, "parse_expr", guard(sympy.parse_expr, "sympy.parse_expr"), raising=False)
    monkeypatch.setattr(builtins, "eval", guard(builtins.eval, "eval"))
    monkeypatch.setattr(builtins, "exec", guard(builtins.exec, "exec"))
    parse.cache_clear()
    try:
        # fresh strings (the cache was cleared) that exercise numbers, zoo names and calls
        for text in ("exp(-x**2) + 0.25*x", "leaky_relu(0.3)", "relu(x + 1.5)", "gelu + selu",
                     "Max(x, 2*x, 0.5) - abs(x)**1.5", "tanh(3*x)*x", "1.7159*tanh(2*x/3)"):
            parse(text)
    finally:
        parse.cache_clear()
    assert calls == []


@given(st.text(max_size=80))
@settings(max_examples=200, deadline=2000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
def test_parse_junk_text_gives_parse_error_or_expression(text):
    try:
        expr = parse(text)
    except ParseError:
        return
    assert isinstance(expr, sympy.Expr)
    assert expr.free_symbols <= {X}


_TOKENS = list("x+-*/()., 0123456789e") + ["**", "exp", "log", "sqrt", "tanh", "Max", "relu",
                                              "pi", "E", "abs", "leaky_relu", "__", "lambda"]
_GRAMMARISH = st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join)


@given(_GRAMMARISH)
@settings(max_examples=300, deadline=2000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
def test_parse_grammar_like_junk_gives_parse_error_or_expression(text):
    start = time.perf_counter()
    try:
        expr = parse(text)
    except ParseError:
        pass
    else:
        assert isinstance(expr, sympy.Expr)
        assert expr.free_symbols <= {X}
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("text, suggestion", [("rleu", "relu"), ("sigmod(x)", "sigmoid"),
                                              ("EXP(x)", "exp"), ("tahn", "tanh")])
def test_parse_unknown_name_suggests_the_closest(text, suggestion):
    with pytest.raises(ParseError, match=f"did you mean [^)]*'{suggestion}'"):
        parse(text)


def test_parse_zoo_names_in_any_case():
    assert parse("ReLU") == parse("relu") and parse("GELU(x + 1)") == parse("gelu(x + 1)")
