"""Adversarial audit of the APIs added with issues 13–17: hostile inputs must give a clear
VanishcalcError (never a raw OverflowError/TypeError), and certified numbers must cover
independent mpmath references."""
import math

import mpmath
import numpy as np
import pytest

import vanishcalc as vc
from vanishcalc.errors import VanishcalcError


# ---------------------------------------------------------------- huge / tiny inputs

def test_xavier_huge_q_does_not_overflow_the_error_propagation():
    # g_f = √q ~ 1e154 at q = 1e308: the old δs used g_f³ (OverflowError)
    x = vc.xavier("tanh", 10, 10, q=1e308)
    # tanh(√q z)² = 1 up to a mass O(1/√q): g_f = √q
    assert abs(float(x.forward_gain) - 1e154) <= x.forward_gain.error + 1e154 * 1e-12
    # E[sech⁴(s z)] → (4/3)/(s√(2π)) for s → ∞, so g_b = √(3 s √(2π)/4)
    with mpmath.workdps(30):
        gb = mpmath.sqrt(3 * mpmath.mpf(1e154) * mpmath.sqrt(2 * mpmath.pi) / 4)
        s_ref = mpmath.sqrt(2 / (10 / mpmath.mpf(1e154) ** 2 + 10 / gb ** 2))
    assert abs(float(x.backward_gain) - float(gb)) <= x.backward_gain.error + 1e-12 * float(gb)
    assert abs(float(x.std) - float(s_ref)) <= x.std.error + 1e-12 * float(s_ref)


@pytest.mark.parametrize("call", [
    lambda: vc.lecun_input_scale("tanh", 1.5, 0.1, q0=1e308),
    lambda: vc.residual_alpha("tanh", 10, q0=1e308),
    lambda: vc.residual_growth("tanh", 0.5, depth=20, q0=1e308),
    lambda: vc.rbf_scale(width=64, ln_gamma=1e308),
    lambda: vc.rbf_scale(width=64, ln_beta=1e308),
    lambda: vc.rbf_scale(width=64, center_mean=1e308),
], ids=["lecun-q0", "residual_alpha-q0", "residual_growth-q0", "rbf-gamma", "rbf-beta",
        "rbf-center_mean"])
def test_huge_inputs_give_a_vanishcalc_error(call):
    # each raised a raw OverflowError (2.0 ** ceil(log2 q), γ², …) before
    with pytest.raises(VanishcalcError, match="too large"):
        call()


@pytest.mark.parametrize("make", [lambda v: vc.RReLU(lower=v), lambda v: vc.prelu(v)],
                         ids=["rrelu", "prelu"])
def test_tiny_slopes_are_kept_exactly(make):
    # nsimplify's tolerance 1e-14·|v| underflows at v = -1e-300: raw TypeError before
    obj = make(-1e-300)
    assert obj is not None
    assert float(vc.RReLU(lower=-1e-300).lower) == -1e-300


# ---------------------------------------------------------------- fixed point error bars

@pytest.mark.parametrize("sigma_b", [0.05, 0.02, 0.2])
def test_q_star_error_covers_a_weakly_attracting_fixed_point(sigma_b):
    # φ = x·exp(−x²/2): E[φ(√q z)²] = q/(1 + 2q)^{3/2} in closed form.  At σw = 1 the q-map's
    # slope at q* is 0.84 (σb = 0.05), so q* − root = residual/(1 − Q′): the residual-only
    # error bar (2.4e-17) did not cover the truth (off by 4.3e-17).  jacobian_spectrum,
    # lecun_input_scale etc. propagate this q*.
    with mpmath.workdps(50):
        truth = mpmath.findroot(lambda q: q / (1 + 2 * q) ** mpmath.mpf(1.5)
                                + mpmath.mpf(sigma_b) ** 2 - q, mpmath.mpf(sigma_b) ** 2 * 10)
        v = vc.MeanField("x*exp(-x**2/2)", sigma_w=1.0, sigma_b=sigma_b).q_star()
        assert abs(mpmath.mpf(float(v)) - truth) <= v.error
        s = vc.jacobian_spectrum("x*exp(-x**2/2)", 1.0, sigma_b, depth=1)
        assert abs(mpmath.mpf(float(s.q_star)) - truth) <= s.q_star.error


# ---------------------------------------------------------------- residual α near T = 1

@pytest.mark.parametrize("depth, excess", [(3, 1e-10), (10, 1e-8), (100, 1e-6), (100, 1.0)])
def test_residual_alpha_error_covers_the_closed_form_near_target_one(depth, excess):
    # relu without norm: r = (1 + α²χ_B)^L, χ_B = σw₁²σw₂²/2 = 2 at σw = √2, so
    # α* = √((T^{1/L} − 1)/χ_B).  Each factor 1 + α²χ_B is rounded before its log: as T → 1
    # the root moves by ~L·ε/(2 log T)·α, which the Brent-only error (1e-14) did not cover
    # (L = 3, T = 1 + 1e-10: off by 2e-12).
    with mpmath.workdps(40):
        target = mpmath.mpf(1) + mpmath.mpf(excess)
        truth = mpmath.sqrt((target ** (mpmath.mpf(1) / depth) - 1) / 2)
    a = vc.residual_alpha("relu", depth, target=1.0 + excess, sigma_w=2 ** 0.5)
    assert abs(mpmath.mpf(float(a.alpha)) - truth) <= a.alpha.error


@pytest.mark.parametrize("values", [[], ["a"], [None]], ids=["empty", "string", "none"])
def test_isometry_settings_bad_sigma_b_values(values):
    # [] raised a raw IndexError (sbs[0] in the message), ["a"] numpy's ValueError
    with pytest.raises(VanishcalcError, match="sigma_b"):
        vc.isometry_settings("tanh", 10, sigma_b_values=values)


# ---------------------------------------------------------------- TAT's reach

def _gauss(f):
    return mpmath.quad(lambda z: f(z) * mpmath.exp(-z * z / 2), [-mpmath.inf, -6, -2, 0, 2, 6,
                                                                  mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)


@pytest.mark.parametrize("spec", ["sigmoid", "tanh(50*x)", "tanh(x/30)", "3*sigmoid(x/20) - 1"])
# sigmoid(x) = (1 + tanh(x/2))/2, tanh(kx): s(tanh(ax + b) + c) is in every family here
def test_tat_finds_a_reparameterized_tanh_solution(spec):
    depth, tau = 10, 0.3
    t = vc.transform("tanh", "tat", depth=depth)
    a, b, c, s = (mpmath.mpf(v) for v in (t.input_scale, t.input_shift, t.output_shift,
                                           t.output_scale))
    # tanh's solution meets TAT's conditions (mpmath, independent of our quadrature) …
    with mpmath.workdps(30):
        th = lambda z: mpmath.tanh(a * z + b)
        d1 = lambda z: s * a * (1 - th(z) ** 2)
        d2 = lambda z: -2 * s * a * a * th(z) * (1 - th(z) ** 2)
        assert abs(_gauss(lambda z: (s * (th(z) + c)) ** 2) - 1) < 1e-10
        assert abs(_gauss(lambda z: d1(z) ** 2) - 1) < 1e-10
        assert abs(_gauss(lambda z: d2(z) ** 2) - tau / depth) < 1e-10
    # … so the spec, the same family, has one too — and it is the same φ̂ (found by the
    # search's second pass, in φ's own units: dks's a·s ≥ 2 rule rejects sigmoid's a > 0
    # root, and its starts a ∈ (0, 2) miss tanh(50x)'s a = 0.0037)
    ts = vc.transform(spec, "tat", depth=depth)
    assert ts.max_residual < 1e-12
    x = np.linspace(-6, 6, 25)
    np.testing.assert_allclose(ts(x), t(x), rtol=0, atol=1e-9)


def test_lr_multipliers_huge_q0_gives_a_vanishcalc_error():
    mf = vc.MeanField("tanh", sigma_w=1.2, sigma_b=0.1)
    with pytest.raises(VanishcalcError, match="too large"):       # raw OverflowError before
        vc.lr_multipliers(mf, 10, q0=1e308)


def test_lecun_input_scale_unresolved_weight_share():
    # σw² E[φ²] = 1e-302 vanishes against σb² = 0.01: m2 = 0, then ZeroDivisionError before
    with pytest.raises(VanishcalcError, match="raise sigma_w"):
        vc.lecun_input_scale("tanh", 1e-150, 0.1)


def test_residual_alpha_has_a_time_budget(monkeypatch):
    # depth 1e5: ~100 trajectories of 1e5 blocks took minutes with no budget (a hang)
    import vanishcalc.solve.residual as residual
    monkeypatch.setattr(residual, "TIME_BUDGET_S", 0.5)
    with pytest.raises(vc.NotConvergedError, match="did not finish"):
        vc.residual_alpha("relu", 100_000, sigma_w=2 ** 0.5)
