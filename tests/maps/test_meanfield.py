"""MeanField and the layers against closed forms (arc-cosine kernel) and mpmath recomputations."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy

from reference import mp_bivariate as mpb
from vanishcalc.errors import DivergenceError, NotConvergedError, VanishcalcError
from vanishcalc.maps import Activation, Dense, MomentState, repeat, serial
from vanishcalc.maps.layer import Layer
from vanishcalc.maps.meanfield import MeanField


def _relu_c_next(c, sw2, sb2, q):
    """Cho & Saul 2009 arc-cosine kernel: the relu c-map at q."""
    k = q / (2 * math.pi) * (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c)
    return (sw2 * k + sb2) / (sw2 * q / 2 + sb2)


def test_qmap_relu_closed_form():
    mf = MeanField("relu", 1.3, 0.2)
    for q in (0.1, 1.0, 7.5):
        assert float(mf.q_map(q)) == pytest.approx(1.3 ** 2 * q / 2 + 0.04, rel=1e-15)


def test_qmap_expr_relu_and_gaussian_closed_forms():
    sw, sb, q = sympy.Symbol("sigma_w", positive=True), sympy.Symbol("sigma_b", nonnegative=True), \
        sympy.Symbol("q", positive=True)
    relu = MeanField("relu", 1.0).q_map_expr(symbolic=True)
    assert sympy.simplify(relu - (sw ** 2 * q / 2 + sb ** 2)) == 0
    gauss = MeanField("exp(-x**2)", 1.0).q_map_expr(symbolic=True)
    assert sympy.simplify(gauss - (sw ** 2 / sympy.sqrt(4 * q + 1) + sb ** 2)) == 0
    assert MeanField("tanh", 1.0).q_map_expr() is None


def test_cmap_relu_arccos_kernel():
    mf = MeanField("relu", 1.2, 0.3)
    q = 0.7
    for c in (-0.5, 0.1, 0.95):
        assert float(mf.c_map(c, q=q)) == pytest.approx(_relu_c_next(c, 1.44, 0.09, q), rel=1e-14)


def test_qstar_tanh_vs_mpmath_findroot():
    sw, sb = 1.5, 0.2
    mf = MeanField("tanh", sw, sb)
    with mpmath.workdps(25):
        q_ref = mpmath.findroot(lambda q: sw ** 2 * mpb.expect1(lambda x: mpmath.tanh(x) ** 2, q, dps=25)
                                + sb ** 2 - q, 0.8)
        chi_ref = sw ** 2 * mpb.expect1(lambda x: mpmath.sech(x) ** 4, q_ref, dps=25)
    assert float(mf.q_star()) == pytest.approx(float(q_ref), rel=1e-13)
    assert float(mf.chi1()) == pytest.approx(float(chi_ref), rel=1e-13)


def test_chi1_relu_exact_and_phase():
    assert float(MeanField("relu", math.sqrt(2)).chi1()) == pytest.approx(1.0, rel=1e-15)
    assert MeanField("relu", math.sqrt(2)).phase() == "critical"
    assert MeanField("tanh", 1.0, 0.5).phase() == "ordered"
    assert MeanField("tanh", 3.0, 0.1).phase() == "chaotic"


def test_xi_q_relu_closed_form():
    # q-map slope of relu is σw²/2; ξq = −1/log(σw²/2)
    mf = MeanField("relu", 1.2, 0.3)
    assert float(mf.xi_q()) == pytest.approx(-1 / math.log(1.44 / 2), rel=1e-12)


def test_chi1_xi_q_relu_collapsed_closed_form():
    """relu at σw = 1, σb = 0: q-map q' = q/2 collapses to q* = 0, yet χ1 = σw² E[relu'²] = σw²/2
    and ∂q'/∂q = σw²/2 at every q (Poole et al. 2016, eq. 3 with E[relu(√q z)²] = q/2) — not the
    one-sided φ'(0+)² = 1 of the kink."""
    mf = MeanField("relu", 1.0)
    assert float(mf.q_star()) == 0.0
    assert float(mf.chi1()) == 0.5 and mf.phase() == "ordered"
    assert float(mf.xi_q()) == pytest.approx(1 / math.log(2), rel=1e-15)


def test_xi_q_slope_identity_vs_mpmath():
    """∂q'/∂q = χ1 + σw² E[φ''φ] (Schoenholz eq. 6) recomputed with φ'' explicitly."""
    sw, sb = 1.8, 0.1
    mf = MeanField("tanh", sw, sb)
    q = float(mf.q_star())
    with mpmath.workdps(25):
        slope = sw ** 2 * (mpb.expect1(lambda x: mpmath.sech(x) ** 4, q)
                           + mpb.expect1(lambda x: -2 * mpmath.tanh(x) ** 2 * mpmath.sech(x) ** 2, q))
    assert float(mf.q_slope()) == pytest.approx(float(slope), rel=1e-11)
    assert float(mf.xi_q()) == pytest.approx(-1 / math.log(float(slope)), rel=1e-10)


def test_xi_c_diverges_as_chi1_to_one():
    """Approaching the critical σw(σb = 0.3) ≈ 1.395584 from the ordered side, ξc → ∞."""
    xis = [float(MeanField("tanh", sw, 0.3).xi_c()) for sw in (1.2, 1.35, 1.39, 1.395)]
    assert all(a < b for a, b in zip(xis, xis[1:]))
    assert xis[-1] > 1000
    assert math.isinf(float(MeanField("relu", math.sqrt(2)).xi_c()))


def test_chi_c_chaotic_vs_mehler_mpmath():
    sw, sb = 2.5, 0.3
    mf = MeanField("tanh", sw, sb)
    q, c = float(mf.q_star()), float(mf.c_star())
    # χc = σw² E[φ'(u1)φ'(u2)] by Mehler's series of sech² at 30 digits
    ref = sw ** 2 * mpb.expect2_mehler(lambda x: mpmath.sech(x) ** 2, lambda x: mpmath.sech(x) ** 2,
                                       q, q, c, n_max=40)
    assert float(mf.chi_c()) == pytest.approx(float(ref), rel=1e-12)
    # and c* is a fixed point of the (independently summed) c-map
    cmap = (sw ** 2 * mpb.expect2_mehler(mpmath.tanh, mpmath.tanh, q, q, c, n_max=40) + sb ** 2) / q
    assert float(cmap) == pytest.approx(c, abs=1e-13)


def test_chi_c_from_the_mehler_series_kinked_hardtanh_vs_mpmath():
    """Issue 12.4: χc of a chaotic plain net comes from the Mehler series when its error bound
    is within 1e-13·χc (no 2-D integral).  hardtanh (kinks at ±1, slowly decaying Hermite
    coefficients) at c* = 0.073: χc = σw²·P(|u1| < 1, |u2| < 1), a 1-D mpmath integral."""
    sw, sb = 2.0, 0.2
    mf = MeanField("hardtanh", sw, sb)
    q, c = float(mf.q_star()), float(mf.c_star())
    v = mf.chi_c()
    assert v.method == "meanfield:chi_c-mehler"
    with mpmath.workdps(30):
        r, s = mpmath.sqrt(q), mpmath.sqrt(1 - mpmath.mpf(c) ** 2)
        ref = sw ** 2 * mpmath.quad(
            lambda z: mpmath.npdf(z) * (mpmath.ncdf((1 - c * r * z) / (r * s))
                                        - mpmath.ncdf((-1 - c * r * z) / (r * s))), [-1 / r, 0, 1 / r])
    assert abs(float(v) - float(ref)) <= v.error <= 1e-12


def test_chi_c_from_a_longer_mehler_series_kinked_elu_at_c_star_072_vs_mpmath():
    """Up to 200 Hermite terms when c* is large: elu at σw = 1.3, σb = 0.1 has c* = 0.716, where
    a 60-term tail bound is loose; the reference is the 120-term series of 30-digit mpmath
    Hermite coefficients (0.72^120 ≈ 1e-17 of a missing mass < 1e-3)."""
    sw, sb = 1.3, 0.1
    mf = MeanField("elu", sw, sb)
    q, c = float(mf.q_star()), float(mf.c_star())
    v = mf.chi_c()
    assert v.method == "meanfield:chi_c-mehler"
    elu = lambda x: x if x > 0 else mpmath.expm1(x)     # noqa: E731
    a = mpb.hermite_coefficients(elu, q, 120, (0,), 30)
    with mpmath.workdps(30):
        ref = sw ** 2 * mpmath.fsum(n * a[n] ** 2 * mpmath.mpf(c) ** (n - 1) for n in range(1, 121)) / q
    assert abs(float(v) - float(ref)) <= v.error <= 1e-12


@pytest.mark.parametrize("c0", [0.5, -0.5])
def test_chaotic_c_star_mehler_bracket_contains_mpmath_fixed_point(c0):
    # c0 = 0.5 lies above c* ≈ 0.122 (c decreases to it), c0 = −0.5 below (c increases)
    sw, sb = 2.5, 0.3
    mf = MeanField("tanh", sw, sb)
    q = float(mf.q_star())
    c = mf.c_star(c0)
    assert c.method == "meanfield:c*-mehler-bracket"    # series, then two 2-D c-map checks
    a = mpb.hermite_coefficients(mpmath.tanh, q, 40, (), 30)
    with mpmath.workdps(30):
        # 0.13^41 < 1e-36: the truncated Mehler sum is the c-map to 30 digits here
        ref = mpmath.findroot(lambda x: (sw ** 2 * mpmath.fsum(a[n] ** 2 * x ** n for n in range(41))
                                         + sb ** 2) / q - x, mpmath.mpf("0.12"))
    assert abs(float(c) - float(ref)) <= c.error <= 1e-10


def test_chaotic_c_star_mehler_bracket_kinked_elu_vs_mpmath():
    # elu (kink at 0: Hermite coefficients decay slowly) at σw = 1.3: c* ≈ 0.72, where
    # 0.72^121 < 1e-17 makes the 120-term reference sum exact to far below the bracket
    sw, sb = 1.3, 0.1
    mf = MeanField("elu", sw, sb)
    q = float(mf.q_star())
    c = mf.c_star()
    assert c.method == "meanfield:c*-mehler-bracket"
    elu = lambda x: x if x > 0 else mpmath.expm1(x)     # noqa: E731
    a = mpb.hermite_coefficients(elu, q, 120, (0,), 30)
    with mpmath.workdps(30):
        ref = mpmath.findroot(lambda x: (sw ** 2 * mpmath.fsum(a[n] ** 2 * x ** n for n in range(121))
                                         + sb ** 2) / q - x, mpmath.mpf(float(c)))
    assert abs(float(c) - float(ref)) <= c.error <= 1e-10


def test_chaotic_c_star_near_one_is_refined_inside_a_wide_bracket():
    # c* = 0.92: the 60-term series converges slowly there, the checked bracket is ~6e-7 wide
    # and a secant root inside it was 8e-11 off (± 5.6e-10, χc 1e-10 off): Brent inside the
    # bracket must finish it to the c-map's own precision over the slope 1 − χc ≈ 0.06.
    mf = MeanField("tanh(x) + 0.1*x", 1.8, 1.0)
    c = mf.c_star()
    assert c.method == "meanfield:c*-mehler-bracket"
    assert c.error <= 1e-12


def _mp_relu6_cmap_and_chic(c):
    """relu6 at q = 1 and σw = its second-moment gain (so q* = 1): the c-map C(c) and its slope
    χc(c) = σw²·P(0 < u1 < 6, 0 < u2 < 6), as 1-D mpmath integrals over z1 of closed-form
    inner Gaussian expectations (independent of vanishcalc)."""
    with mpmath.workdps(45):
        c = mpmath.mpf(c)
        s = mpmath.sqrt((1 - c) * (1 + c))
        m2 = mpmath.ncdf(6) - mpmath.mpf(1) / 2 - 6 * mpmath.npdf(6) + 36 * mpmath.ncdf(-6)
        sw2 = 1 / m2

        def ramp(m, a):                    # E[max(0, Y − a)], Y ~ N(m, s²)
            return (m - a) * mpmath.ncdf((m - a) / s) + s * mpmath.npdf((m - a) / s)

        def inner(z):                      # E[relu6(c·z + s·t)]
            return ramp(c * z, 0) - ramp(c * z, 6)
        near = [s * k for k in (1, 3, 10, 30, 100, 300, 1000, 3000, 10 ** 4, 10 ** 5)]
        pts = sorted({mpmath.mpf(0), *near, 6 - s * 100, 6 - s * 10, 6 - s, mpmath.mpf(6),
                      6 / c - s, 6 / c, 6 / c + s, 6 / c + 10 * s, 6 / c + 100 * s})
        pts = [p for p in pts if p >= 0]
        cmap = sw2 * (mpmath.quad(lambda z: z * inner(z) * mpmath.npdf(z), [p for p in pts if p <= 6])
                      + 6 * mpmath.quad(lambda z: inner(z) * mpmath.npdf(z), [p for p in pts if p >= 6]
                                        + [mpmath.inf]))
        chic = sw2 * mpmath.quad(lambda z: (mpmath.ncdf((6 - c * z) / s) - mpmath.ncdf(-c * z / s))
                                 * mpmath.npdf(z), [p for p in pts if p <= 6])
        return cmap, chic, mpmath.sqrt(sw2)


def test_chaotic_c_star_within_the_c_maps_error_of_one_is_not_overstated():
    """Issue 12.4 (found while timing init_table): relu6 at its gain, σb = 0, has χ1 = 1 + 2e-9
    (chaotic, barely) and c* within 1e-14 of 1 (mpmath below: the c-map is still above the
    diagonal at 1 − 1e-14).  The c-map's own error (1e-14) cannot resolve that, yet c* came
    out as 1 − 1e-11 ± 1e-15 and ξc as 703408 ± 0.5, where the truth exceeds 1e7."""
    eps = mpmath.mpf("1e-14")
    cmap, chic_lo, sw = _mp_relu6_cmap_and_chic(1 - eps)
    assert cmap - (1 - eps) > 0                      # so 1 − 1e-14 < c* < 1
    xi_lo = -1 / mpmath.log(chic_lo)                 # χc rises with c: ξc(c*) ≥ this
    assert xi_lo > 1e7
    mf = MeanField("relu6", float(sw), 0.0)
    c = mf.c_star()
    assert float(c) - c.error < 1 - float(eps) and float(c) + c.error >= 1 - float(eps)
    chi_c = mf.chi_c()
    assert float(chi_c) + chi_c.error >= float(chic_lo)
    try:
        xi = mf.xi_c()
    except NotConvergedError:
        return
    assert math.isinf(float(xi)) or float(xi) + xi.error >= float(xi_lo)


def test_propagate_relu_closed_form_trajectory():
    sw2, sb2, q0, c0, L = 1.7, 0.05, 1.3, 0.2, 6
    p = MeanField("relu", math.sqrt(sw2), math.sqrt(sb2)).propagate(L, q0=q0, c0=c0)
    q, c = [q0], [c0]
    for _ in range(L):
        c.append(_relu_c_next(c[-1], sw2, sb2, q[-1]))
        q.append(sw2 * q[-1] / 2 + sb2)
    assert p.q.shape == p.c.shape == p.grad.shape == (L + 1,)
    np.testing.assert_allclose(p.q, q, rtol=1e-14)
    np.testing.assert_allclose(p.c, c, rtol=1e-13)
    np.testing.assert_allclose(p.grad, (sw2 / 2) ** np.arange(L, -1, -1), rtol=1e-14)


def test_propagate_tanh_grad_along_trajectory_vs_mpmath():
    sw, sb, L = 1.6, 0.1, 4
    p = MeanField("tanh", sw, sb).propagate(L, q0=2.0)
    chis = [float(sw ** 2 * mpb.expect1(lambda x: mpmath.sech(x) ** 4, qk, dps=20)) for qk in p.q[:-1]]
    np.testing.assert_allclose(p.grad, np.append(np.cumprod(chis[::-1])[::-1], 1.0), rtol=1e-12)
    assert p.grad[-1] == 1.0


def test_layers_compose_serial_repeat_equals_propagate():
    block = serial(Activation("tanh"), Dense(1.5, 0.1))
    out = repeat(block, 3).moment_map(MomentState(1.0, 1.0, 0.5))
    p = MeanField("tanh", 1.5, 0.1).propagate(3)
    assert out.q1 == pytest.approx(p.q[3], rel=1e-15) and out.c == pytest.approx(p.c[3], rel=1e-15)
    assert "Activation('tanh')" in repr(block) and "Dense(sigma_w=1.5" in repr(block)
    mf = MeanField([Activation("tanh"), Dense(1.5, 0.1)])
    assert float(mf.q_star()) == pytest.approx(float(MeanField("tanh", 1.5, 0.1).q_star()), rel=1e-15)


def test_activation_layer_requires_gaussian_input():
    with pytest.raises(VanishcalcError, match="random affine"):
        serial(Activation("tanh"), Activation("tanh")).moment_map(MomentState.single(1.0))


def test_activation_c_slope_identity_vs_finite_difference():
    layer = Activation("gelu")
    s = MomentState(0.9, 1.4, 0.3)
    assert layer.c_slope(s) == pytest.approx(Layer.c_slope(layer, s), rel=1e-7)
    assert layer.q_slope(MomentState.single(0.9)) == pytest.approx(
        Layer.q_slope(layer, MomentState.single(0.9)), rel=1e-7)


def test_qstar_divergence_and_collapse_flagged():
    with pytest.raises(ValueError, match="without bound"):
        MeanField("relu", 1.6, 0.1).q_star()
    q = MeanField("tanh", 0.8, 0.0).q_star()
    assert float(q) == 0.0 and "collapsed" in q.method


def test_gelu_qstar_diverges_like_relu_above_sqrt2():
    """Issue 12.4: gelu at σw = 1.7, σb = 0 raised NotConvergedError (the quadrature of gelu²
    at q = 2^19 stalled on the corner at z = 0, width 1/√q).  q really grows without bound
    from q0 = 1: gelu → relu for large q, so Q(q)/q → σw²/2 = 1.445 (mpmath iteration below,
    independent of vanishcalc), and Q(q)/q > 1 from q = 1 on."""
    def q_next(q):
        with mpmath.workdps(20):
            f = lambda z: (mpmath.sqrt(q) * z * mpmath.ncdf(mpmath.sqrt(q) * z)) ** 2 * mpmath.npdf(z)
            return 1.7 ** 2 * mpmath.quad(f, [-mpmath.inf, 0, mpmath.inf])
    q = mpmath.mpf(1)
    for _ in range(12):
        qn = q_next(q)
        assert qn > 1.2 * q
        q = qn
    assert q_next(mpmath.mpf(1e6)) / 1e6 == pytest.approx(1.7 ** 2 / 2, rel=1e-4)
    with pytest.raises(DivergenceError, match="without bound"):
        MeanField("gelu", 1.7, 0.0).q_star()


@pytest.mark.parametrize("call", [
    lambda: MeanField("tanh", 0.0),
    lambda: MeanField("tanh", -1.0),
    lambda: MeanField("tanh", float("nan")),
    lambda: MeanField("tanh", 1.0, float("inf")),
    lambda: MeanField("tanh", 1.0).propagate(-1),
    lambda: MeanField("tanh", 1.0).propagate(3, c0=1.5),
    lambda: MeanField("tanh", 1.0).c_map(-1.2),
    lambda: MeanField("tanh", 1.0).q_star(q0=float("nan")),
    lambda: MeanField("tanh", 1.0).propagate(2.5),
    lambda: MeanField("tanh", "abc"),
    lambda: repeat(Dense(1.0), 2.0),
])
def test_meanfield_bad_input_raises_valueerror(call):
    with pytest.raises(VanishcalcError):
        call()


def test_propagate_and_repeat_accept_numpy_integers():
    assert MeanField("relu", 1.0).propagate(np.int64(2)).q.shape == (3,)
    assert repeat(Dense(1.0), np.int64(2)).depth == 2


# ---------------------------------------------------------------- magnitudes far from 1 (issue 11.2)


def test_relu_q_halves_exactly_far_below_1e_154():
    """relu at σw = 1, σb = 0: q_l = 2^-l (E[relu(√q z)²] = q/2), and c follows the
    arc-cosine map, which does not depend on q; q1·q2 underflowed to 0 below 1e-154 and
    raised ZeroDivisionError."""
    p = MeanField("relu", 1.0).propagate(600)
    np.testing.assert_allclose(p.q, 2.0 ** -np.arange(601.0), rtol=1e-13)
    c = 0.5
    for _ in range(600):
        c = _relu_c_next(c, 1.0, 0.0, 1.0)
    assert p.c[600] == pytest.approx(c, rel=1e-12)
    assert p.grad[0] == pytest.approx(2.0 ** -600, rel=1e-12)


def test_tanh_vanishing_signal_stays_representable():
    """tanh at σw = 0.5: q shrinks ×¼ per layer (to 1e-180 at 300) and raised ZeroDivisionError
    below 1e-154; tanh is linear there, so q_{l+1}/q_l → σw² = 1/4 and χ → 1/4."""
    p = MeanField("tanh", 0.5).propagate(300, c0=1.0)    # c0 = 1: one input (fast)
    assert p.q[300] < 1e-175 and p.q[300] / p.q[299] == pytest.approx(0.25, rel=1e-12)
    assert np.all(p.c == 1.0) and p.chi[-1] == pytest.approx(0.25, rel=1e-12)


def test_gradient_beyond_double_range_is_kept_in_log_form():
    """12,000 layers of a chaotic tanh net: the gradient ratio is e^1456, past the double range;
    log_grad carries it (= Σ log χ_l, checked against a naive sum) and a warning says so."""
    with pytest.warns(Warning, match="log_grad"):
        p = MeanField("tanh", 1.5, 0.1).propagate(12000, c0=1.0)   # c = 1: one input, fast
    assert math.isinf(p.grad[0])
    assert p.log_grad[0] == pytest.approx(math.fsum(math.log(x) for x in p.chi), rel=1e-12)
    assert p.log_grad[-1] == 0.0 and np.all(np.isfinite(p.log_grad))


def test_underflowed_q_is_flagged():
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = MeanField("relu", 0.1).propagate(400)
    messages = " ".join(str(w.message) for w in caught)
    assert "smallest normal double" in messages and "log_grad" in messages
    assert p.first_subnormal_layer is not None and p.q[p.first_subnormal_layer] < 2.3e-308


def test_cli_meanfield_deep_vanishing_net_prints_log_gradients(capsys):
    from vanishcalc.cli import main
    assert main(["meanfield", "relu", "--sigma-w", "0.1", "--depth", "400"]) == 0
    out, err = capsys.readouterr()
    assert "10^-" in out and "Traceback" not in err and "warning:" in err


@pytest.mark.parametrize("q", [1e-6, 1e-8, 1e-12])
def test_tiny_q_moments_from_the_series_match_mpmath(q):
    """Issue 10.4: at q = 1e-8 quadrature of E[elu(√q z)²] came out 0.5 % high with a 5e-14
    relative error estimate (e^x − 1 cancels); the series of φ² at 0 is used there."""
    from vanishcalc.activation import activation
    from vanishcalc.maps.activation import second_moment_with_error
    v, err = second_moment_with_error(activation("elu"), q)
    with mpmath.workdps(30):
        ref = mpb.expect1(lambda x: x * x if x > 0 else (mpmath.exp(x) - 1) ** 2, q, (0,))
    assert abs(v - float(ref)) <= err and err <= 1e-13 * v
    vd, errd = second_moment_with_error(activation("elu").derivative(1), q)
    with mpmath.workdps(30):
        refd = mpb.expect1(lambda x: mpmath.mpf(1) if x > 0 else mpmath.exp(2 * x), q, (0,))
    assert abs(vd - float(refd)) <= errd
