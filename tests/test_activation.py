"""``activation(spec)``: kinks, pieces, derivatives and numeric callables.

References: the hand-written zoo in ``reference.mp_gauss.ZOO`` (kinks listed there by hand),
mpmath evaluation, and ``sympy.diff`` of the hand-written expressions.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy

from reference.mp_gauss import ALIASES, ZOO, X, lambdify_mp
from vanishcalc import ComplexValuedError, ParseError, SingularityError
from vanishcalc.activation import Activation, activation


@pytest.mark.parametrize("name", sorted(ZOO))
def test_activation_kinks_vs_hand_written(name):
    _, kinks = ZOO[name]
    act = activation(name)
    assert act.kinks == tuple(float(k) for k in kinks)
    assert len(act.pieces) == len(kinks) + 1
    assert act.name == name


@pytest.mark.parametrize("name", sorted(ZOO))
def test_activation_pieces_vs_mpmath(name, rng):
    """Each piece's smooth formula equals the reference inside its interval."""
    ref = lambdify_mp(ZOO[name][0])
    act = activation(name)
    for p in act.pieces:
        lo = max(p.lo, -20.0)
        hi = min(p.hi, 20.0)
        piece = lambdify_mp(p.expr, X)
        for t in rng.uniform(lo, hi, size=5):
            with mpmath.workdps(30):
                a, b = piece(mpmath.mpf(t)), ref(mpmath.mpf(t))
                assert abs(a - b) <= 1e-25 * max(1, abs(b)), (name, p, t)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_activation_numpy_vs_mpmath(name, rng):
    ref = lambdify_mp(ZOO[name][0])
    # far tails too: log(1 + e^{−30}) in doubles is 1e-3 off (numpy must use log1p); the
    # reference at 40 digits, whatever precision another test left mpmath at
    z = np.concatenate([rng.normal(size=40) * 3, [-30.0, -12.0, -6.0, -3.0, -1.0, 0.0, 1.0, 3.0,
                                                 6.0, 12.0, 30.0]])
    ours = np.asarray(activation(name).numpy(z), dtype=float)
    with mpmath.workdps(40):
        want = np.array([float(ref(mpmath.mpf(t))) for t in z])
    np.testing.assert_allclose(ours, want, rtol=4e-15, atol=4e-16)


@pytest.mark.parametrize("name", ["relu", "elu", "hardtanh", "relu6", "hardswish", "softsign",
                                  "gelu", "tanh", "selu"])
def test_activation_derivative_vs_sympy_diff(name, rng):
    ref_expr, kinks = ZOO[name]
    ref = lambdify_mp(sympy.diff(ref_expr, X))
    d = activation(name).derivative(1)
    assert d.kinks == tuple(float(k) for k in kinks)
    assert d.deltas == ()    # these φ are continuous: no Dirac mass in φ'
    z = rng.normal(size=30) * 4
    z = z[np.min(np.abs(z[:, None] - np.array([*kinks, 1e9], dtype=float)), axis=1) > 1e-6]
    ours = np.asarray(d.numpy(z), dtype=float)
    want = np.array([float(ref(mpmath.mpf(t))) for t in z])
    np.testing.assert_allclose(ours, want, rtol=1e-14, atol=1e-15)


def test_activation_derivative_of_jump_has_dirac_mass():
    # d/dx Heaviside(x - 1/2)·3 = 3 δ(x − 1/2); d/dx sign(x) = 2 δ(x).
    d = activation("3*Heaviside(x - 0.5)").derivative(1)
    assert [(float(k), w) for k, w in d.deltas] == [(0.5, 3)]
    d = activation("sign(x)").derivative(1)
    assert [(float(k), w) for k, w in d.deltas] == [(0.0, 2)]


def test_activation_second_derivative_of_relu_is_a_dirac_mass():
    d2 = activation("relu").derivative(2)
    assert [(float(k), w) for k, w in d2.deltas] == [(0.0, 1)]
    assert all(p.expr == 0 for p in d2.pieces)


def test_activation_map_keeps_kinks():
    sq = activation("hardtanh").map(lambda e: e ** 2, "hardtanh²")
    assert sq.kinks == (-1.0, 1.0)
    assert [p.expr for p in sq.pieces] == [1, X ** 2, 1]


@pytest.mark.parametrize("name", ["hardtanh", "silu", "selu", "softplus", "gelu", "sin"])
def test_activation_power_is_the_map_and_evaluates_like_it(name):
    # power(k) reuses φ's numpy form; it must equal the compiled φ**k, including far tails
    # where φ's own form needs its overflow repair (silu at x = -1e3).
    act = activation(name)
    cube = act.power(3, "cube")
    ref = act.map(lambda e: e ** 3, "cube")
    assert cube == ref and cube.kinks == ref.kinks
    assert [p.expr for p in cube.pieces] == [p.expr for p in ref.pieces]
    x = np.concatenate([np.linspace(-8, 8, 2001), [-1e3, -40.0, 40.0, 300.0]])
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(cube.numpy(x), ref.numpy(x), rtol=4e-15, atol=0)


@pytest.mark.parametrize("text, kinks", [
    ("hardtanh(2*x + 0.5)", (-0.75, 0.25)),
    ("Abs(x - 1) + Max(x, 2)", (1.0, 2.0)),
    ("Max(x**2 - 2, 0)", (-math.sqrt(2), math.sqrt(2))),
    ("Heaviside(x + 3)*x", (-3.0,)),
    ("sign(x)*x**2", (0.0,)),
    ("tanh(x)", ()),
])
def test_activation_kinks_of_user_expressions_vs_hand_computed(text, kinks):
    act = activation(text)
    assert act.kinks == pytest.approx(kinks, abs=1e-15)
    assert act.is_smooth == (not kinks)


def test_activation_sympy_expression_in_any_symbol():
    t = sympy.Symbol("t")
    act = activation(sympy.tanh(2 * t))
    assert act.expr.free_symbols == {X}
    assert float(act.numpy(np.array([0.5]))[0]) == pytest.approx(math.tanh(1.0), rel=1e-15)


def test_activation_is_cached_and_hashable():
    assert activation("relu") is activation(" relu ") or activation("relu") == activation(" relu ")
    assert activation("tanh") == activation("tanh(x)")
    assert len({activation("tanh"), activation("tanh(x)")}) == 1
    assert isinstance(activation(activation("relu")), Activation)


@pytest.mark.parametrize("spec, error", [
    (sympy.Symbol("a") * sympy.Symbol("b"), ParseError),
    (3.5, ParseError),
    (sympy.sqrt(X), ComplexValuedError),
    (sympy.I * X, ComplexValuedError),
    ("log(x)", ComplexValuedError),
    ("1/x", SingularityError),
    ("1/(x**2 - 1)", SingularityError),
    ("1/sin(x)", SingularityError),
])
def test_activation_rejects_bad_spec(spec, error):
    with pytest.raises(error) as info:
        activation(spec)
    assert isinstance(info.value, ValueError)
    assert str(info.value)


@pytest.mark.parametrize("spec, error", [
    # near misses of the structural positivity shortcut: each must still reach the grid check
    ("log(x**2)", SingularityError),                 # ≥ 0 but zero at 0
    ("log(exp(x) - 1)", ComplexValuedError),         # exp minus a constant
    ("1/(exp(x) - 1)", SingularityError),
    ("sqrt(cosh(x) - 2)", ComplexValuedError),
    ("(1 + x*Abs(x))**(-1)", SingularityError),      # x|x| is not ≥ 0
])
def test_activation_domain_checks_survive_the_positivity_shortcut(spec, error):
    with pytest.raises(error):
        activation(spec)


def test_surely_positive_is_structural_and_never_raises():
    from vanishcalc.activation import _surely_nonnegative, _surely_positive
    yes = [1 + sympy.exp(-X), 1 + sympy.Abs(X), 1 + X ** 2, sympy.cosh(X) * 3,
           (2 + X ** 4) ** sympy.Rational(-3, 2), sympy.Integer(2)]
    no = [X ** 2, sympy.exp(X) - 1, X * sympy.Abs(X) + 1, sympy.Integer(0), sympy.nan, -sympy.oo]
    assert all(_surely_positive(e) for e in yes)
    assert not any(_surely_positive(e) for e in no)
    assert _surely_nonnegative(X ** 2) and _surely_nonnegative(sympy.Abs(X))
    assert not _surely_nonnegative(sympy.nan) and not _surely_nonnegative(X ** 3)


def test_activation_repr_rounds_long_decimal_constants_and_says_so():
    # issue 10.8: selu's λ and α carry 31 digits; the REPL shows 8 and points to .expr
    r = repr(activation("selu"))
    assert "1.0507009873554804934193349852946" not in r and "1.050701" in r
    assert "in full in .expr" in r
    assert repr(activation("tanh")) == "Activation('tanh': tanh(x))"


def test_numpy_repairs_overflowing_terms_of_a_finite_value_vs_mpmath():
    # silu'(x) as SymPy writes it has x·e^{-x}/(1 + e^{-x})²: inf/inf = NaN in doubles at
    # x = -1810, though the value is ~1e-783.  At q ≈ 1.3e4 the mean field reaches such x and
    # raised NonFiniteError ("an overflow: lower σw") for a finite χ1.
    d = activation("silu").derivative(1)
    xs = np.array([-1810.0, -40.0, 0.0, 3.0])
    with mpmath.workdps(30):
        s = lambda x: 1 / (1 + mpmath.exp(-x))                      # noqa: E731
        ref = [float(s(x) * (1 + x * (1 - s(x)))) for x in map(mpmath.mpf, xs)]
    np.testing.assert_allclose(d.numpy(xs), ref, rtol=1e-14, atol=0)
    from vanishcalc import MeanField
    mf = MeanField("silu", 1.0, 80.0)
    q = float(mf.q_star())
    with mpmath.workdps(30):
        sq = mpmath.sqrt(q)
        s = lambda x: 1 / (1 + mpmath.exp(-x))                      # noqa: E731
        f = lambda z: (s(sq * z) * (1 + sq * z * (1 - s(sq * z)))) ** 2 * mpmath.npdf(z)  # noqa: E731
        chi1 = mpmath.quad(f, [-mpmath.inf, -10 / sq, 0, 10 / sq, mpmath.inf])
    chi = mf.chi1()
    assert abs(float(chi) - float(chi1)) <= chi.error + 1e-15
    assert abs(float(chi) - float(chi1)) < 1e-12


def test_transcendental_kink_conditions_solved_or_refused_clearly():
    """SELU typed as Klambauer writes it, Min(α(eˣ − 1), 0): the kink at 0 is found in closed
    form; a periodic or implicit condition is refused with a ParseError naming the rewrite."""
    import mpmath
    from vanishcalc import ParseError, activation, gain
    lam, alpha = "1.0507009873554804934", "1.6732632423543772848"
    act = activation(f"{lam}*(Max(x, 0) + Min({alpha}*(exp(x) - 1), 0))")
    mpmath.mp.dps = 30
    L, A = mpmath.mpf(lam), mpmath.mpf(alpha)
    pdf = lambda z: mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)
    m2 = (mpmath.quad(lambda z: (L * A * (mpmath.exp(z) - 1)) ** 2 * pdf(z), [-mpmath.inf, 0])
          + mpmath.quad(lambda z: (L * z) ** 2 * pdf(z), [0, mpmath.inf]))
    assert abs(float(gain(act)) - float(1 / mpmath.sqrt(m2))) < 1e-13
    activation("Max(tanh(x), 1/2)")                      # atanh(1/2), exact
    for bad in ("Max(sin(x), 0)", "Max(exp(x) - x - 2, 0)"):
        with pytest.raises(ParseError, match="cannot locate the kinks"):
            activation(bad)
def test_overflow_repair_in_long_double_matches_mpmath():
    """Issue 12.4: overflowed doubles are repaired first by the same formula in long double
    (one numpy call), then by mpmath for what still overflows or has no long-double loop
    (scipy's erf).  Values: those of a 30-digit mpmath evaluation, rounded to a double."""
    import mpmath
    xs = np.array([-1810.0, -900.0, 900.0, 5000.0, 20000.0])     # the doubles overflow here
    for text in ("x*tanh(log(1 + exp(x)))", "x*erf(exp(x))", "x*exp(-x)/(1 + exp(-x))**2",
                 "exp(x)*atan(x)"):
        act = activation(text)
        with np.errstate(all="ignore"):
            got = act.numpy(xs)
        f = sympy.lambdify(sympy.Symbol("x", real=True), act.expr, "mpmath")
        with mpmath.workdps(30):
            want = [float(f(mpmath.mpf(x))) for x in xs]
        assert got.tolist() == want, text
