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
    # head, columns, 1 row, verdict, and one line per reason of a non-PASSED verdict
    assert len(rep.summary(max_rows=1).splitlines()) == 4 + len(rep.reasons)
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


# ---------------------------------------------------------------- three verdicts (issue 10.5)

def test_check_must_fail_sigma_w_five_percent_off():
    """A simulation at σw·1.05 held against the closed-form theory at σw (relu, depth 20)
    must FAIL: q grows by 1.05² per layer more than the theory says."""
    th = _relu_theory(20, math.sqrt(2), 0.0)
    rep = check("relu", math.sqrt(2) * 1.05, 0.0, depth=20, width=256, n_nets=32, seed=1,
                theory=th)
    assert rep.verdict == "FAILED" and not rep.passed and rep.exit_code == 1, rep.summary()
    assert any("q differs" in r for r in rep.reasons)


def test_check_must_fail_tanh_sigma_w_five_percent_off():
    pytest.importorskip("vanishcalc.maps.meanfield")
    from vanishcalc import MeanField
    th = MeanField("tanh", 1.5, 0.3).propagate(20)
    rep = check("tanh", 1.5 * 1.05, 0.3, depth=20, width=256, n_nets=32, seed=1, theory=th)
    assert rep.verdict == "FAILED", rep.summary()


def test_check_must_pass_with_every_layer_resolved():
    th = _relu_theory(20, math.sqrt(2), 0.0)
    rep = check("relu", math.sqrt(2), 0.0, depth=20, width=256, n_nets=32, seed=1, theory=th)
    assert rep.verdict == "PASSED" and rep.passed and rep.exit_code == 0, rep.summary()
    for s in ("q", "c", "grad"):
        assert "-" not in set(rep.scale[s].tolist()), (s, rep.scale[s])


def test_check_issue_example_is_inconclusive_not_passed():
    """relu σw = 1.6, depth 100, width 16, 64 nets: the allowance (l/N = 6.25 times q) and the
    heavy tail of q (log-variance ≈ 40 across nets) leave the deep layers unresolved: it used
    to say PASSED with q = 5.3e10 in theory against 3.6e7 simulated."""
    th = _relu_theory(100, 1.6, 0.0)
    rep = check("relu", 1.6, 0.0, depth=100, width=16, n_nets=64, seed=0, theory=th)
    assert rep.verdict == "INCONCLUSIVE" and not rep.passed and rep.exit_code == 3
    text = rep.summary()
    assert "INCONCLUSIVE" in text and "±allow" in text and "width ≥" in text
    q_reason = next(r for r in rep.reasons if r.startswith("q:"))
    assert "heavy tail" in q_reason and "allowance" in q_reason
    # the allowance is reported, so z can be recomputed: a = l/N · |q|
    np.testing.assert_allclose(rep.allowance["q"], np.arange(101) / 16 * th["q"])


def test_check_inconclusive_example_decided_at_the_width_it_names():
    """What the INCONCLUSIVE report asks for decides it: the width it names (with the same
    nets, ×1.1 for the estimate's slack) makes the same net PASS."""
    import re
    th = _relu_theory(30, 1.6, 0.0)
    narrow = check("relu", 1.6, 0.0, depth=30, width=16, n_nets=64, seed=0, theory=th)
    assert narrow.verdict == "INCONCLUSIVE"
    need = max(int(w) for w in re.findall(r"width ≥ (\d+) \(with 64 nets\)",
                                           " ".join(narrow.reasons)))
    wide = check("relu", 1.6, 0.0, depth=30, width=int(1.1 * need), n_nets=64, seed=0, theory=th)
    assert wide.verdict == "PASSED", wide.summary()


def test_lognormal_skew_of_mean_vs_scipy():
    from scipy.stats import lognorm

    from vanishcalc.sim.check import _lognormal_skew
    for s2, n in ((0.1, 1), (1.0, 16), (3.0, 64)):
        want = float(lognorm(math.sqrt(s2)).stats(moments="s")) / math.sqrt(n)
        assert float(_lognormal_skew(s2, n)) == pytest.approx(want, rel=1e-12)


def test_check_theory_overflow_is_a_named_error():
    # x**2 at σw = 2: the q-map runs away; the theory used to raise a raw OverflowError
    with pytest.raises(VanishcalcError, match="theory"):
        check("x**2", 2.0, depth=10, width=16, n_nets=4)


def test_theory_overflow_leaks_no_numpy_warning():
    # the c-map's Cauchy–Schwarz scale √(E[f²]E[g²]) overflowed as a product before the root
    # and printed numpy's "overflow encountered in scalar multiply"
    import warnings
    from vanishcalc.gaussian.bivariate import expect2
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        v = expect2("x**2", "x**2", 1e80, 1e80, 0.5)
    assert v.error <= 1e-6 * float(v)       # E[u1² u2²] = q1 q2 (1 + 2c²) = 1.5e160
    assert float(v) == pytest.approx(1.5e160, rel=1e-10)


def test_check_cli_exit_code_inconclusive(capsys):
    from vanishcalc.cli import main
    code = main(["check", "relu", "--sigma-w", "1.6", "--depth", "100", "--width", "16",
                 "--nets", "64"])
    out = capsys.readouterr().out
    assert code == 3 and "INCONCLUSIVE" in out and "Would decide it" in out


def test_check_exact_input_layer_rounding_is_not_a_failure():
    """Layer 0 is exact by construction; its 'standard error' (3e-17) is rounding noise, and a
    rounding difference of 1e-16 used to give z = 3.7 and FAILED (leaky_relu(0.2), seed 0)."""
    rep = check("leaky_relu(0.2)", 1.4, depth=5, width=64, n_nets=8, seed=0)
    assert rep.verdict != "FAILED", rep.summary()
    for s in ("q", "c"):
        assert abs(rep.z[s][0]) < 1e-3


def test_check_grad_not_judged_where_the_q_trajectory_is_unresolved():
    """gelu, depth 50, width 64: the nets' q has drifted (unresolved from layer ~9), so the χ
    they multiply are not the theory's; grad at layer 47 used to FAIL with z = −5 against a
    correct theory.  grad counts only where q is resolved at every later layer."""
    rep = check("gelu", 1.6, 0.1, depth=50, width=64, n_nets=32, seed=1)
    assert rep.verdict == "INCONCLUSIVE", rep.summary()
    assert "q is unresolved" in next(r for r in rep.reasons if r.startswith("grad"))
