"""init_table and the table/meanfield CLI commands."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest

from vanishcalc.cli import main
from vanishcalc.errors import VanishcalcError
from vanishcalc.report.table import init_table


def test_init_table_relu_gaussian_closed_forms():
    t = init_table(["relu", "exp(-x**2)"])
    relu, gauss = t.rows
    assert relu["gain_second_moment"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert relu["closed_form"] == "sqrt(2)"
    assert relu["critical_sigma_w"] == pytest.approx(math.sqrt(2), rel=1e-15)
    assert relu["critical_q_star"] is None
    assert gauss["gain_second_moment"] == pytest.approx(5 ** 0.25, rel=1e-15)
    # at the second-moment gain and σb = 0, q = 1 is a fixed point; χ1 = σw² E[φ'²] = √5·(4/(3√... ))
    assert gauss["q_star"] == pytest.approx(1.0, rel=1e-14)
    # E[φ'(z)²] = E[4z² e^{-2z²}] = 4/5^{3/2}; χ1 = √5 · 4/5^{3/2} = 4/5
    assert gauss["chi1"] == pytest.approx(0.8, rel=1e-13)


def test_init_table_exact_forms_are_the_results_closed_forms():
    # The forms are built when read (a BN γ's simplify is 0.1–0.2 s); what is read must be
    # each result's own closed form, and keys only where one exists.
    import sympy
    from vanishcalc import gain
    from vanishcalc.solve.bn_affine import bn_gradient_rate
    t = init_table(["exp(-x**2)", "tanh"])
    assert "tanh.gain_second_moment" not in t.exact and "tanh.expression" in t.exact
    g = t.exact["exp(-x**2).gain_second_moment"]
    assert sympy.simplify(g - sympy.Integer(5) ** sympy.Rational(1, 4)) == 0
    assert t.exact["exp(-x**2).closed_form"] == g == gain("exp(-x**2)").exact
    rate = bn_gradient_rate("exp(-x**2)")
    assert (rate.exact is None) == ("exp(-x**2).bn_rate" not in t.exact)
    if rate.exact is not None:
        assert sympy.simplify(t.exact["exp(-x**2).bn_rate"] - rate.exact) == 0
    assert set(t.exact) == set(dict(t.exact.items())) and len(t.exact) == len(list(t.exact))


def test_init_table_formats_roundtrip():
    t = init_table(["relu", "tanh"], sigma_b=0.1)
    md = t.to_markdown()
    assert md.splitlines()[0].startswith("| φ |") and "tanh" in md
    rows = list(csv.DictReader(io.StringIO(t.to_csv())))
    assert rows[1]["name"] == "tanh"
    assert float(rows[1]["gain_second_moment"]) == pytest.approx(t.rows[1]["gain_second_moment"], rel=1e-16)
    data = json.loads(t.to_json())
    assert data["sigma_b"] == 0.1 and data["rows"][0]["name"] == "relu"
    assert "<table>" in t._repr_html_()
    assert "relu.critical_sigma_w" in t.notes      # relu has no critical point at σb > 0


def test_init_table_bad_sigma_b_raises():
    with pytest.raises(VanishcalcError, match="sigma_b"):
        init_table(["relu"], sigma_b=-1)
    with pytest.raises(VanishcalcError, match="sigma_b"):
        init_table(["relu"], sigma_b="abc")
    with pytest.raises(VanishcalcError):
        init_table(5)


@pytest.mark.parametrize("argv", [
    ["bn", "tanh", "--batch", "3"], ["bn", "tanh", "--rate", "-1"], ["bn", "1"],
    ["meanfield", "tanh", "--sigma-w", "1", "--depth", "-1"], ["meanfield", "tanh", "--sigma-w", "inf"],
    ["table", "foo"], ["table", "relu", "--sigma-b", "nan"]])
def test_cli_bad_input_one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and len(cap.err.strip().splitlines()) == 1


def test_cli_table_and_meanfield(capsys):
    assert main(["table", "relu", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["name"] == "relu"
    assert main(["meanfield", "tanh", "--sigma-w", "1.5", "--sigma-b", "0.1", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "chi1" in out and "xi_c" in out and len([l for l in out.splitlines() if l.strip().startswith(("0 ", "1 ", "2 "))]) == 3
    assert main(["meanfield", "tanh", "--sigma-w", "0"]) == 2
    assert "sigma_w" in capsys.readouterr().err


def test_init_table_marks_q_star_zero_limits_and_refuses_unstable_points():
    """Issue 10.3: silu's 'critical σw = 2' at σb = 0 was the q* = 0 limit of a fixed point
    that repels (q' ≈ q + 3q²/4 at σw = 2), printed beside real values.  Now it is absent
    with the reason; tanh's σw = 1 (q decays to 0: a real, marginal limit) is marked †."""
    t = init_table(["tanh", "silu"])
    tanh, silu = t.rows
    assert tanh["critical_sigma_w"] == 1.0 and tanh["critical_q_star"] == 0.0
    assert "q* = 0 limit" in t.notes["tanh.critical_sigma_w"]
    assert silu["critical_sigma_w"] is None and "repels" in t.notes["silu.critical_sigma_w"]
    md = t.to_markdown()
    tanh_line = next(l for l in md.splitlines() if l.startswith("| tanh"))
    assert "| 1 † | 0 † |" in tanh_line
