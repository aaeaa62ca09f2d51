"""bn_gradient_rate, ln_gradient_rate, bn_affine against independent references.

References: Yang et al. 2019 (relu π/(π−1); linear (B−2)/(B−3)); mpmath 30-digit
Gaussian integrals written out in the tests (no vanishcalc code in the reference)."""
import math

import mpmath
import pytest
import sympy

from vanishcalc import VanishcalcError
from vanishcalc.solve.bn_affine import bn_affine, bn_gradient_rate, ln_gradient_rate


def _mp_gauss(f):
    with mpmath.workdps(30):
        return mpmath.quad(lambda z: f(z) * mpmath.npdf(z), [-mpmath.inf, -4, 0, 4, mpmath.inf])


def _mp_bn_rate(phi, dphi, g, b, norm="bn"):
    with mpmath.workdps(30):
        d2 = _mp_gauss(lambda z: (g * dphi(g * z + b)) ** 2)
        m1 = _mp_gauss(lambda z: phi(g * z + b))
        m2 = _mp_gauss(lambda z: phi(g * z + b) ** 2)
        return float(d2 / (m2 - m1 ** 2 if norm == "bn" else m2))


def _tanh():
    return mpmath.tanh, lambda x: 1 - mpmath.tanh(x) ** 2


def test_bn_rate_relu_exact_pi_over_pi_minus_1_yang2019():
    v = bn_gradient_rate("relu")
    assert v.exact is not None
    assert sympy.simplify(v.exact - sympy.pi / (sympy.pi - 1)) == 0


def test_ln_rate_relu_exact_one():
    v = ln_gradient_rate("relu")
    assert v.exact == 1


def test_bn_rate_linear_finite_batch_closed_form():
    for B in (4, 5, 8, 64):
        v = bn_gradient_rate("x", batch=B)
        assert v.exact == sympy.Rational(B - 2, B - 3)
    assert bn_gradient_rate("2*x + 1", gamma=0.3, beta=0.7, batch=8).exact == sympy.Rational(6, 5)


@pytest.mark.parametrize("g,b", [(1.0, 0.0), (0.3, 0.2), (2.0, -0.5)])
def test_bn_rate_tanh_vs_mpmath(g, b):
    v = bn_gradient_rate("tanh", gamma=g, beta=b)
    ref = _mp_bn_rate(*_tanh(), g, b)
    assert abs(float(v) - ref) <= max(v.error, 1e-15 * ref) * 10
    assert v.error <= 1e-10 * ref


def test_ln_rate_tanh_vs_mpmath():
    v = ln_gradient_rate("tanh", gamma=0.7, beta=0.4)
    ref = _mp_bn_rate(*_tanh(), 0.7, 0.4, norm="ln")
    assert abs(float(v) - ref) <= max(10 * v.error, 1e-13)


def test_bn_affine_tanh_rate_target_solved():
    a = bn_affine("tanh", rate=1.05)
    assert abs(float(a.rate) - 1.05) < 1e-9
    assert abs(_mp_bn_rate(*_tanh(), a.gamma, 0.0) - 1.05) < 1e-9
    assert 0.0 <= a.saturated_fraction < 1e-6
    assert 0.0 < a.nonlinearity < 0.1
    assert "gamma=" in repr(a)


def test_bn_affine_relu_tradeoff_values():
    a = bn_affine("relu", gamma=1.0)
    assert abs(a.saturated_fraction - 0.5) < 1e-9           # relu' = 0 on x < 0
    # 1 − Cov(relu(z), z)²/Var relu(z) = 1 − (1/4)/((π−1)/(2π))
    assert abs(a.nonlinearity - (1 - 0.25 * 2 * math.pi / (math.pi - 1))) < 1e-9


def test_bn_affine_gauss_even_function_rate_two_at_small_gamma():
    # exp(−x²) is even: at β = 0 the small-γ unit is quadratic, rate → 2 (notes/normalization.md)
    assert abs(float(bn_gradient_rate("exp(-x**2)", gamma=0.01)) - 2.0) < 1e-3
    with pytest.raises(ValueError, match="unreachable.*spans"):
        bn_affine("exp(-x**2)", rate=1.05)
    # a shifted β repairs it
    # (min_nonlinearity=0: the smallest rate over all β, the near-linear unit; the default
    # floor 0.05 stops the descent earlier, at rate ≈ 1.05, issue 10.6)
    a = bn_affine("exp(-x**2)", gamma=0.1, optimize="beta", min_nonlinearity=0.0)
    assert abs(a.beta) > 0.3 and float(a.rate) < 1.01
    a = bn_affine("exp(-x**2)", gamma=0.1, optimize="beta")
    assert abs(a.beta) > 0.3 and float(a.rate) < 1.1 and a.nonlinearity >= 0.05 - 1e-9
    b = bn_affine("exp(-x**2)", rate=1.05, beta=a.beta)
    assert abs(float(b.rate) - 1.05) < 1e-9


def test_bn_rate_finite_batch_tanh_simulated_has_error():
    v = bn_gradient_rate("tanh", batch=16, width=64, depth=8, n_nets=4)
    assert "simulation" in v.method and v.error > 0 and v.error_kind == "estimate"
    # finite-batch approximation γ²E[φ'²]/Var·(B−2)/(B−3), finite-width allowance 3 %
    approx = _mp_bn_rate(*_tanh(), 1.0, 0.0) * 14 / 13
    assert abs(float(v) - approx) < 4 * v.error + 0.03 * approx


@pytest.mark.parametrize("kw", [dict(gamma=0.0), dict(gamma=-1.0), dict(gamma=math.inf),
                                dict(beta=math.nan), dict(batch=3), dict(batch=1),
                                dict(batch=2.5)])
def test_bn_rate_bad_input_raises(kw):
    with pytest.raises(VanishcalcError):
        bn_gradient_rate("tanh", **kw)


def test_bn_rate_batch_three_message_explains():
    with pytest.raises(ValueError, match="degenerate"):
        bn_gradient_rate("x", batch=3)


def test_bn_affine_bad_arguments():
    with pytest.raises(ValueError, match="not both"):
        bn_affine("tanh", rate=1.1, gamma=1.0)
    with pytest.raises(VanishcalcError):
        bn_affine("tanh", rate=-1)
    with pytest.raises(VanishcalcError):
        bn_affine("tanh", rate="a")
    with pytest.raises(VanishcalcError):
        bn_affine("tanh", gamma=1.0, optimize="gamma")


# ---------------------------------------------------------------- issues 10.6, 11.1, 11.4


def test_bn_rate_tanh_large_gamma_vs_mpmath():
    """Issue 11.4: γ = 1e4 returned 0 ± 0 (tanh switches within |z| < 1e-4, between the
    quadrature's nodes).  Reference: mpmath in x = γz ~ N(0, γ²), split at the unit scale;
    it grows like γ·E-density(0)·∫sech⁴ = γ·(4/3)/√(2π) ≈ 0.532γ."""
    g = 1e4
    with mpmath.workdps(30):
        gm = mpmath.mpf(g)
        pts = [-mpmath.inf, -4 * gm, -16, -1, 0, 1, 16, 4 * gm, mpmath.inf]
        d2 = gm ** 2 * mpmath.quad(lambda x: mpmath.sech(x) ** 4 * mpmath.npdf(x, 0, gm), pts)
        var = mpmath.quad(lambda x: mpmath.tanh(x) ** 2 * mpmath.npdf(x, 0, gm), pts)
        ref = float(d2 / var)
    v = bn_gradient_rate("tanh", gamma=g)
    assert abs(float(v) - ref) <= v.error and v.error <= 1e-9 * ref
    assert ref == pytest.approx(4 / 3 / math.sqrt(2 * math.pi) * g, rel=1e-3)


def test_bn_affine_relu_optimize_beta_stops_at_the_nonlinearity_floor():
    """Issue 10.6: relu's rate falls to 1 as β grows (the unit turns linear); β = 6 (the edge
    of the search range, nonlinearity 5e-11) was returned as 'optimal'.  Now β is where the
    nonlinearity share 1 − Cov(φ, z)²/Var φ reaches the floor 0.05, and the note says so.
    Reference: mpmath moments of relu(z + β) (Cov(relu(z + β), z) = Φ(β))."""
    a = bn_affine("relu", gamma=1.0, optimize="beta")
    assert "no interior optimum" in a.note and a.nonlinearity == pytest.approx(0.05, abs=1e-9)
    b = a.beta
    with mpmath.workdps(30):
        bm = mpmath.mpf(b)        # relu(z + β) = 0 below z = −β: integrate from there
        m1 = mpmath.quad(lambda z: (z + bm) * mpmath.npdf(z), [-bm, 0, 8, mpmath.inf])
        m2 = mpmath.quad(lambda z: (z + bm) ** 2 * mpmath.npdf(z), [-bm, 0, 8, mpmath.inf])
        nl = 1 - mpmath.ncdf(bm) ** 2 / (m2 - m1 ** 2)
    assert float(nl) == pytest.approx(0.05, abs=1e-9)
    assert -6 < b < 6
    tanh = bn_affine("tanh", gamma=1.0, optimize="beta")
    assert "interior minimum" in tanh.note and abs(tanh.beta) < 1e-6


def test_bn_affine_relu_rate_does_not_depend_on_gamma():
    with pytest.raises(VanishcalcError, match="does not depend on gamma") as info:
        bn_affine("relu", rate=1.05)
    assert "pi/(-1 + pi)" in str(info.value)


@pytest.mark.parametrize("text, a, b", [("leaky_relu", "0.01", "1"), ("Max(x, -x/2)", "-0.5", "1"),
                                     ("3*x", "3", "3")])
def test_bn_affine_gamma_free_message_rate_vs_mpmath(text, a, b):
    # The message's closed form π(a²+b²)/(π(a²+b²) − (b−a)²) against 30-digit quadrature.
    with pytest.raises(VanishcalcError, match="does not depend on gamma") as info:
        bn_affine(text, rate=1.05)
    shown = float(str(info.value).split(" ≈ ")[1].split()[0])
    with mpmath.workdps(30):
        am, bm = mpmath.mpf(a), mpmath.mpf(b)
        phi = lambda z: am * z if z < 0 else bm * z          # noqa: E731
        mean = mpmath.quad(lambda z: phi(z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
        sq = mpmath.quad(lambda z: phi(z) ** 2 * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
        d2 = (am ** 2 + bm ** 2) / 2                          # E[φ'²]
        rate = d2 / (sq - mean ** 2)
    assert shown == pytest.approx(float(rate), rel=1e-6)


def test_cli_bn_messages_use_cli_option_names(capsys):
    """Issue 10.6: the CLI advised a rate 'in [1.46694, 1.46694]' and spelled Python keywords."""
    from vanishcalc.cli import main
    assert main(["bn", "relu", "--rate", "1.05"]) == 2
    err = capsys.readouterr().err
    assert "--gamma" in err and "--beta" in err and "gamma=" not in err and "beta=" not in err
    assert "[1.46694, 1.46694]" not in err
    assert main(["bn", "relu", "--optimize", "beta"]) == 0
    out = capsys.readouterr().out
    assert "--min-nonlinearity 0.05" in out and "beta  = 6" not in out


def test_bn_affine_unbounded_derivative_saturation_is_relative_to_the_bulk():
    """Issue 11.4: x² reported saturated = 1 (every |φ'| is small next to an unbounded max).
    Against max|φ'| on |x| ≤ 3 (= 6): P(|2z| < 6e-3) = erf(0.003/√2)."""
    a = bn_affine("x**2")
    # the reference is sim/'s grid maximum over |x| ≤ 3 (5.997 here, not 6): 1e-3 relative
    assert a.saturated_fraction == pytest.approx(math.erf(0.003 / math.sqrt(2)), rel=1e-3)


def test_bn_gradient_rate_refuses_sizes_that_cannot_fit(monkeypatch, capsys):
    """Issue 11.1: batch = 64, depth = 10**9 tried 119 GiB; --batch 1e9 printed a traceback.
    The size is checked against the machine's memory first (here 8 GiB) and the error names
    a setting that fits."""
    from vanishcalc.cli import main
    from vanishcalc import budget
    monkeypatch.setattr(budget, "available_memory", lambda: 8 << 30)
    with pytest.raises(budget.MemoryBudgetError, match="depth to at most"):
        bn_gradient_rate("tanh", batch=64, depth=10 ** 9)
    with pytest.raises(budget.MemoryBudgetError, match="omit batch"):
        bn_gradient_rate("tanh", batch=10 ** 9)
    assert main(["bn", "tanh", "--batch", "1000000000"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "omit --batch" in err


def test_saturated_fraction_is_computed_when_first_read(monkeypatch):
    """Issue 12.4: init_table reads only γ, yet every bn_affine paid for the saturated
    fraction (a scan of max|φ'| over 48k points, 0.3 s of the zoo table)."""
    from vanishcalc.solve import bn_affine as mod
    calls = []
    real_fn = mod.saturated_fraction
    monkeypatch.setattr(mod, "saturated_fraction", lambda *a: calls.append(a) or real_fn(*a))
    a = mod.bn_affine("tanh", rate=1.05)
    assert calls == []
    assert a.saturated_fraction == real_fn(a.act, a.gamma, a.beta)
    assert len(calls) == 1 and a.saturated_fraction == a.saturated_fraction and len(calls) == 1
