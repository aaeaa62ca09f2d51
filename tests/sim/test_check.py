"""``vanishcalc.check`` and ``vanishcalc check``: theory vs simulation.

The theory side is either a closed-form stub computed here (relu: q_{l+1} = σw² q_l/2 + σb²,
arc-cosine kernel for c, χ = σw²/2) or ``MeanField.propagate`` (checked itself against the
stub), so a wrong theory must fail and a right one must pass.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from vanishcalc.errors import VanishcalcError
from vanishcalc.sim.check import CheckReport, check


def _relu_theory(depth, sigma_w, sigma_b, q0=1.0, c0=0.5):
    sw2, sb2 = sigma_w ** 2, sigma_b ** 2
    q, c = [q0], [c0]
    for _ in range(depth):
        th = math.acos(c[-1])
        qn = sw2 * q[-1] / 2 + sb2
        e12 = q[-1] / (2 * math.pi) * (math.sin(th) + (math.pi - th) * math.cos(th))
        q.append(qn)
        c.append((sw2 * e12 + sb2) / qn)
    grad = (sw2 / 2) ** (depth - np.arange(depth + 1))
    return {"q": np.array(q), "c": np.array(c), "grad": grad}


KW = dict(depth=10, width=256, n_nets=32, seed=3)


def test_check_relu_stub_theory_passes():
    th = _relu_theory(10, 1.3, 0.2)
    rep = check("relu", 1.3, 0.2, theory=th, **KW)
    assert isinstance(rep, CheckReport) and rep.passed, rep.summary()
    assert set(rep.z) == {"q", "c", "grad"} and len(rep.z["q"]) == 11
    text = rep.summary()
    assert "PASSED" in text and "layer" in text
    assert "<table>" in rep._repr_html_()


@pytest.mark.parametrize("field, factor", [("q", 1.1), ("grad", 1.2)])
def test_check_wrong_theory_fails(field, factor):
    """A theory off by 10 % in q (or 20 % in grad) is caught at width 256."""
    th = _relu_theory(10, 1.3, 0.2)
    th[field] = th[field] * factor
    if field == "grad":
        th["grad"][-1] = 1.0
    rep = check("relu", 1.3, 0.2, theory=th, **KW)
    assert not rep.passed
    assert "FAILED" in rep.summary()


def test_check_meanfield_relu_vs_closed_form():
    """check() with the real MeanField: its trajectory equals the stub, and the check passes."""
    pytest.importorskip("vanishcalc.maps.meanfield")
    rep = check("relu", math.sqrt(2), 0.0, **KW)
    th = _relu_theory(10, math.sqrt(2), 0.0)
    for k in ("q", "c", "grad"):
        np.testing.assert_allclose(rep.theory[k], th[k], rtol=1e-6)
    assert rep.passed, rep.summary()


@pytest.mark.parametrize("spec, sigma_w, sigma_b, weights", [
    ("tanh", 1.0, 0.0, "gaussian"), ("exp(-x**2)", 1.5, 0.1, "orthogonal"),
])
def test_check_meanfield_passes_saturating(spec, sigma_w, sigma_b, weights):
    pytest.importorskip("vanishcalc.maps.meanfield")
    rep = check(spec, sigma_w, sigma_b, depth=20, width=256, n_nets=32, weights=weights, seed=1)
    assert rep.passed, rep.summary()


@pytest.mark.parametrize("kwargs, word", [
    (dict(n_nets=1), "n_nets"), (dict(tolerance=-1.0), "tolerance"),
    (dict(allowance=float("nan")), "allowance"), (dict(width=0), "width"),
])
def test_check_bad_input_raises(kwargs, word):
    args = dict(depth=2, width=8, n_nets=4, theory=_relu_theory(2, 1.0, 0.0))
    args.update(kwargs)
    with pytest.raises(VanishcalcError, match=word):
        check("relu", 1.0, **args)


@pytest.mark.parametrize("theory", [
    3, {"q": [1.0, 1.0, 1.0]}, {"q": "abc", "c": 1.0, "grad": 1.0},
])
def test_check_bad_theory_raises_vanishcalc_error(theory):
    # used to escape as AttributeError / KeyError / ValueError
    with pytest.raises(VanishcalcError, match="theory"):
        check("relu", 1.0, depth=2, width=8, n_nets=4, theory=theory)


@pytest.mark.parametrize("kwargs, word", [
    (dict(tolerance="a"), "tolerance"), (dict(allowance=[1]), "allowance"),
    (dict(n_nets=2.0), "n_nets"), (dict(depth="2"), "depth"),
])
def test_check_junk_input_named(kwargs, word):
    args = dict(depth=2, width=8, n_nets=4, theory=_relu_theory(2, 1.0, 0.0))
    args.update(kwargs)
    with pytest.raises(VanishcalcError, match=word):
        check("relu", 1.0, **args)


def test_check_summary_max_rows_validated():
    rep = check("relu", 1.0, depth=2, width=8, n_nets=4, theory=_relu_theory(2, 1.0, 0.0))
    assert len(rep.summary(max_rows=1).splitlines()) == 4          # head, columns, 1 row, verdict
    with pytest.raises(VanishcalcError, match="max_rows"):
        rep.summary(max_rows=0)


def test_check_cli_exit_codes(capsys):
    """0 when it passes, 1 when it fails, 2 on bad input."""
    pytest.importorskip("vanishcalc.maps.meanfield")
    from vanishcalc.cli import main
    base = ["check", "relu", "--sigma-w", "1.4142135623730951", "--depth", "5", "--nets", "16"]
    assert main(base + ["--width", "128"]) == 0
    assert "PASSED" in capsys.readouterr().out
    # no allowance and an absurd |z| bound: the finite-width scatter fails it
    assert main(base + ["--width", "128", "--tolerance", "1e-6", "--allowance", "0"]) == 1
    assert main(base + ["--width", "0"]) == 2
    assert "width" in capsys.readouterr().err
    assert main(base + ["--width", "128", "--rows", "-3"]) == 2     # was a numpy traceback
    err = capsys.readouterr().err
    assert "--rows" in err and len(err.strip().splitlines()) == 1
