"""The shared argument validator: every public entry's messages come from here."""
import math

import numpy as np
import pytest

from vanishcalc import VanishcalcError
from vanishcalc.validate import integer, real


@pytest.mark.parametrize("value", [True, np.bool_(False)])
def test_real_rejects_booleans_not_one_or_zero(value):
    with pytest.raises(VanishcalcError, match="boolean"):
        real("f", "rate", value)


@pytest.mark.parametrize("value, kw, word", [
    ("a", {}, "not a real number"), (math.nan, {}, "finite"), (math.inf, {}, "finite"),
    (0.0, dict(positive=True), "> 0"), (-1.0, dict(nonneg=True), "≥ 0"),
    (1.5, dict(lo=-1.0, hi=1.0), r"\[-1.0, 1.0\]"), (1e300, dict(hi_bound=1e150), "too large"),
])
def test_real_message_names_where_argument_and_range(value, kw, word):
    with pytest.raises(VanishcalcError, match=word) as info:
        real("where", "arg", value, **kw)
    assert str(info.value).startswith("where: arg = ")


@pytest.mark.parametrize("value", [2.5, True, "3", -1])
def test_integer_refuses_non_integers_and_small_values(value):
    with pytest.raises(VanishcalcError):
        integer("f", "n", value, 0)


def test_integer_accepts_numpy_integers():
    assert integer("f", "n", np.int64(7), 1) == 7


def test_dense_huge_sigma_w_is_a_named_error_not_overflow():
    from vanishcalc.maps import Dense
    with pytest.raises(VanishcalcError, match="sigma_w"):
        Dense(1e300)


# One rule at every public entry that takes numbers (README, "Arguments"): booleans and strings
# are refused with a VanishcalcError that says what to pass; int/float/NumPy/SymPy reals are taken.
def _entry_points():
    import vanishcalc as vc
    mf = lambda: vc.MeanField("tanh", 1.5, 0.3)   # noqa: E731
    sim = dict(depth=2, width=4, n_nets=2)
    return {
        "gain.q": lambda v: vc.gain("tanh", q=v),
        "expect.q": lambda v: vc.expect("tanh", q=v),
        "expect.rtol": lambda v: vc.expect("tanh", rtol=v),
        "expect.exact_timeout": lambda v: vc.expect("tanh", exact_timeout=v),
        "expect2.c": lambda v: vc.expect2("tanh", c=v),
        "expect2.q1": lambda v: vc.expect2("tanh", q1=v),
        "MeanField.sigma_w": lambda v: vc.MeanField("tanh", v),
        "MeanField.sigma_b": lambda v: vc.MeanField("tanh", 1.5, v),
        "MeanField.q_star.q0": lambda v: mf().q_star(v),
        "MeanField.c_star.c0": lambda v: mf().c_star(v),
        "MeanField.propagate.q0": lambda v: mf().propagate(3, q0=v),
        "critical_sigma_w.sigma_b": lambda v: vc.critical_sigma_w("tanh", v),
        "critical_line.sigma_b_values": lambda v: vc.critical_line("tanh", [0.1, v]),
        "bn_gradient_rate.gamma": lambda v: vc.bn_gradient_rate("tanh", gamma=v),
        "bn_gradient_rate.beta": lambda v: vc.bn_gradient_rate("tanh", beta=v),
        "ln_gradient_rate.gamma": lambda v: vc.ln_gradient_rate("tanh", gamma=v),
        "bn_affine.rate": lambda v: vc.bn_affine("tanh", rate=v),
        "bn_affine.gamma": lambda v: vc.bn_affine("tanh", gamma=v),
        "bn_affine.beta": lambda v: vc.bn_affine("tanh", gamma=1.0, beta=v),
        "simulate.sigma_w": lambda v: vc.simulate("tanh", v, 0.0, **sim),
        "simulate.q0": lambda v: vc.simulate("tanh", 1.0, 0.0, q0=v, **sim),
        "check.sigma_b": lambda v: vc.check("tanh", 1.0, v, **sim),
        "check.tolerance": lambda v: vc.check("tanh", 1.0, 0.0, tolerance=v, **sim),
        "check.allowance": lambda v: vc.check("tanh", 1.0, 0.0, allowance=v, **sim),
        "init_table.sigma_b": lambda v: vc.init_table(["relu"], sigma_b=v),
        "RNNMeanField.sigma_u": lambda v: vc.RNNMeanField("tanh", 1.0, v),
    }


ENTRY_POINTS = sorted(_entry_points())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("value, word", [(True, "boolean"), ("0.5", "string")])
def test_every_entry_refuses_booleans_and_strings(entry, value, word):
    call = _entry_points()[entry]
    with pytest.raises(VanishcalcError, match=word) as info:
        call(value)
    assert "pass" in str(info.value)


@pytest.mark.parametrize("value", [0.5, np.float32(0.5), np.array(0.5), __import__("fractions").Fraction(1, 2)])
def test_real_accepts_every_kind_of_real_number(value):
    assert real("f", "v", value) == 0.5


def test_real_accepts_sympy_numbers_and_refuses_symbols_and_complex():
    import sympy
    assert real("f", "v", sympy.sqrt(2)) == math.sqrt(2)
    assert real("f", "v", np.int64(3)) == 3.0
    with pytest.raises(VanishcalcError, match="not a real number"):
        real("f", "v", sympy.Symbol("x"))
    with pytest.raises(VanishcalcError, match="complex"):
        real("f", "v", 1 + 2j)
    with pytest.raises(VanishcalcError, match="not a real number"):
        real("f", "v", [0.5])


@pytest.mark.parametrize("value, word", [(True, "boolean"), ("3", "string"), (2.5, "float")])
@pytest.mark.parametrize("entry", ["simulate.depth", "propagate.depth", "bn_gradient_rate.batch"])
def test_counts_refuse_booleans_strings_and_floats_saying_what_to_pass(entry, value, word):
    import vanishcalc as vc
    call = {"simulate.depth": lambda v: vc.simulate("tanh", 1.0, 0.0, depth=v, width=4, n_nets=2),
            "propagate.depth": lambda v: vc.MeanField("tanh", 1.5).propagate(v),
            "bn_gradient_rate.batch": lambda v: vc.bn_gradient_rate("tanh", batch=v)}[entry]
    with pytest.raises(VanishcalcError, match=word) as info:
        call(value)
    assert "integer" in str(info.value)
