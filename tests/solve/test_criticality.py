"""The critical line against published tanh values, mpmath recomputation and relu's degeneracy."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from reference import mp_bivariate as mpb
from vanishcalc.errors import VanishcalcError
from vanishcalc.maps.meanfield import MeanField
from vanishcalc.solve.criticality import critical_line, critical_sigma_w, phase_diagram


def test_critical_sigma_w_tanh_published_values():
    """Schoenholz et al. 2017 / Poole et al. 2016 values for tanh."""
    sw, q = critical_sigma_w("tanh", sigma_b=math.sqrt(0.05))
    assert float(sw) ** 2 == pytest.approx(1.76095, abs=1e-5)
    assert float(q) == pytest.approx(0.570048, abs=1e-6)
    sw, _ = critical_sigma_w("tanh", sigma_b=0.3)
    assert float(sw) == pytest.approx(1.395584, abs=1e-6)


def test_critical_sigma_w_tanh_vs_mpmath():
    sw, q = critical_sigma_w("tanh", sigma_b=0.3)
    with mpmath.workdps(25):
        qm = mpmath.mpf(float(q))
        chi1 = float(sw) ** 2 * mpb.expect1(lambda x: mpmath.sech(x) ** 4, qm)
        sb2 = qm - float(sw) ** 2 * mpb.expect1(lambda x: mpmath.tanh(x) ** 2, qm)
    assert float(chi1) == pytest.approx(1.0, abs=1e-13)
    assert float(sb2) == pytest.approx(0.09, abs=1e-13)


def test_critical_sigma_w_relu_degenerates():
    p = critical_sigma_w("relu")
    assert float(p.sigma_w) == pytest.approx(math.sqrt(2), rel=1e-16) and p.q_star is None
    assert float(critical_sigma_w("leaky_relu(0.2)").sigma_w) == pytest.approx(math.sqrt(2 / 1.04),
                                                                               rel=1e-15)
    with pytest.raises(ValueError, match="positively homogeneous"):
        critical_sigma_w("relu", sigma_b=0.1)


def test_critical_sigma_w_odd_sigma_b_zero_is_one_over_slope():
    sw, q = critical_sigma_w("erf", 0.0)
    assert float(sw) == pytest.approx(math.sqrt(math.pi) / 2, rel=1e-15) and float(q) == 0.0


def test_critical_line_chi1_is_one_everywhere():
    line = critical_line("tanh", [0.05, 0.3, 1.0])
    for sw, sb in zip(line.sigma_w, line.sigma_b):
        assert float(MeanField("tanh", sw, sb).chi1()) == pytest.approx(1.0, abs=1e-12)


def test_phase_diagram_matches_certified_meanfield():
    sws, sbs = np.array([0.8, 1.3, 2.2, 3.5]), np.array([0.0, 0.1, 0.6])
    d = phase_diagram("tanh", sws, sbs)
    assert d.q_star.shape == (4, 3)
    for i, sw in enumerate(sws):
        for j, sb in enumerate(sbs):
            mf = MeanField("tanh", sw, sb)
            assert d.q_star[i, j] == pytest.approx(float(mf.q_star()), rel=1e-12, abs=1e-14)
            assert d.chi1[i, j] == pytest.approx(float(mf.chi1()), rel=1e-12)
            assert d.xi_c[i, j] == pytest.approx(float(mf.xi_c()), rel=1e-9)


def test_phase_diagram_relu_diverges_and_collapses():
    d = phase_diagram("relu", [1.0, 1.6], [0.0])
    assert d.status[0, 0] == 1 and d.q_star[0, 0] == 0.0
    assert d.status[1, 0] == 2 and math.isinf(d.q_star[1, 0])
    # collapsed relu: χ1 = ∂q'/∂q = σw²/2 (E[relu(√q z)²] = q/2), not φ'(0+)² = 1
    assert d.chi1[0, 0] == 0.5 and d.xi_q[0, 0] == pytest.approx(1 / math.log(2), rel=1e-15)


def test_phase_diagram_unconverged_point_is_flagged_not_a_number():
    """tanh at σw = 1, σb = 0: q_{l+1} ≈ q_l − 2q_l² creeps to q* = 0 (slope 1); within
    max_iter the iterate is still far from 0, and is reported as status 3 with NaN."""
    d = phase_diagram("tanh", [1.0, 2.0], [0.0])
    assert d.status[0, 0] == 3 and math.isnan(d.q_star[0, 0]) and math.isnan(d.chi1[0, 0])
    assert d.status[1, 0] == 0


@pytest.mark.parametrize("args,kw", [
    (("tanh", [0.0, 1.0], [0.1]), {}), (("tanh", [1.0], [-0.1]), {}),
    (("tanh", [float("nan")], [0.1]), {}), (("tanh", "ab", [0.1]), {}),
    (("tanh", [[1.0]], [0.1]), {}), (("tanh", [2.5], [0.1]), dict(n_hermite=-1)),
    (("tanh", [2.5], [0.1]), dict(n_hermite=1.5)), (("tanh", [2.5], [0.1]), dict(max_iter=0))])
def test_phase_diagram_bad_input_raises(args, kw):
    with pytest.raises(VanishcalcError):
        phase_diagram(*args, **kw)


@pytest.mark.parametrize("call", [
    lambda: critical_sigma_w("tanh", "abc"), lambda: critical_sigma_w("tanh", [0.1, 0.2]),
    lambda: critical_sigma_w("tanh", -1.0), lambda: critical_sigma_w("1", 0.1),
    lambda: critical_line("tanh", [[0.1, 0.2]]), lambda: critical_line("tanh", ["ab"])])
def test_critical_bad_input_raises(call):
    with pytest.raises(VanishcalcError):
        call()


def test_critical_sigma_w_jump_names_the_jump():
    with pytest.raises(VanishcalcError, match="jumps"):
        critical_sigma_w("sign(x)", 0.1)


# ---------------------------------------------------------------- stability (issue 10.3, 10.4)

def _mp_silu(x):
    return x / (1 + mpmath.exp(-x))


def _mp_dsilu(x):
    s = 1 / (1 + mpmath.exp(-x))
    return s + x * s * (1 - s)


def _mp_line(f, df, sw, q, kinks=()):
    """(χ1, σb², q-map slope) at (σw, q) from mpmath quadrature at 30 digits; the slope is
    σw² E[(z² − 1) f(√q z)²]/(2q) (independent of vanishcalc)."""
    with mpmath.workdps(30):
        qm = mpmath.mpf(q)
        chi1 = sw ** 2 * mpb.expect1(lambda x: df(x) ** 2, qm, kinks)
        sb2 = qm - sw ** 2 * mpb.expect1(lambda x: f(x) ** 2, qm, kinks)
        # E[(z² − 1) f(√q z)²] with z = x/√q
        slope = sw ** 2 * mpb.expect1(lambda x: (x * x / qm - 1) * f(x) ** 2, qm, kinks) / (2 * qm)
    return float(chi1), float(sb2), float(slope)


def _iterate_qmap(f, sw, sb, q0, steps):
    """Plain iteration of q' = σw² E[f(√q z)²] + σb², the mean by the trapezoidal rule on
    |z| ≤ 14 with step 0.004 (numpy; geometric convergence for φ analytic near the real axis:
    silu's poles at x = ±iπ sit at z = ±iπ/√q, 0.5 from the axis at q = 40)."""
    z = np.arange(-14.0, 14.0 + 1e-9, 0.004)
    w = 0.004 * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    q = q0
    for _ in range(steps):
        q = sw ** 2 * float(np.dot(w, f(math.sqrt(q) * z) ** 2)) + sb ** 2
    return q


def _np_silu(x):
    return x / (1 + np.exp(-x))


@pytest.mark.parametrize("sb", [0.1, 0.3])
def test_silu_unstable_critical_points_are_refused(sb):
    """Issue 10.3: silu's χ1 = 1 point at σb = 0.1 / 0.3 has q-map slope 1.07 / 1.09
    (mpmath below): no network settles there.  The error names the saddle-node."""
    with pytest.raises(VanishcalcError, match="saddle-node") as info:
        critical_sigma_w("silu", sb)
    assert "Hayou" in str(info.value)
    # the refused point really is unstable (independent check at the point the issue quotes)
    sw, q = {0.1: (1.8200517222636268, 0.2597125038961834),
             0.3: (1.575621438721777, 1.3995947845567136)}[sb]
    chi1, sb2, slope = _mp_line(_mp_silu, _mp_dsilu, sw, q)
    assert chi1 == pytest.approx(1.0, abs=1e-9) and sb2 == pytest.approx(sb * sb, abs=1e-9)
    assert slope > 1.05
    # and q started 1 % off the point moves away from it (numpy iteration, not vanishcalc)
    with np.errstate(over="ignore", invalid="ignore"):
        for factor in (0.99, 1.01):
            qn = _iterate_qmap(_np_silu, sw, sb, q * factor, 300)
            assert not abs(qn - q) < 0.1 * q


@pytest.mark.parametrize("name,f,df,npf,sb", [
    ("silu", _mp_silu, _mp_dsilu, _np_silu, 1.0),
    ("tanh", mpmath.tanh, lambda x: mpmath.sech(x) ** 2, np.tanh, 0.3)])
def test_stable_critical_point_is_stable_and_reached(name, f, df, npf, sb):
    """The returned point: χ1 = 1, σb² right, slope < 1 and equal to mpmath's within the
    reported error; q iterated from q*(1 ± 5 %) returns to q* (numpy Gauss–Hermite)."""
    p = critical_sigma_w(name, sb)
    sw, q = float(p.sigma_w), float(p.q_star)
    chi1, sb2, slope = _mp_line(f, df, sw, q)
    assert chi1 == pytest.approx(1.0, abs=1e-12)
    assert sb2 == pytest.approx(sb * sb, abs=1e-11 * max(1.0, q))
    assert float(p.q_slope) < 1.0 and slope < 1.0
    assert abs(float(p.q_slope) - slope) <= max(p.q_slope.error, 1e-14) * 10
    steps = int(math.log(1e-9) / math.log(slope)) + 50
    for factor in (0.95, 1.05):
        assert _iterate_qmap(npf, sw, sb, q * factor, steps) == pytest.approx(q, rel=1e-7)


def test_elu_critical_point_at_small_sigma_b():
    """Issue 10.4: elu at σb = 0.1 raised NotConvergedError at q = 1e-8 (rounding noise of
    e^x − 1); the point is stable.  Checked against mpmath, with the σw error honest."""
    def f(x):
        return x if x > 0 else mpmath.exp(x) - 1

    def df(x):
        return mpmath.mpf(1) if x > 0 else mpmath.exp(x)
    p = critical_sigma_w("elu", 0.1)
    chi1, sb2, slope = _mp_line(f, df, float(p.sigma_w), float(p.q_star), kinks=(0,))
    assert chi1 == pytest.approx(1.0, abs=1e-12) and sb2 == pytest.approx(0.01, abs=1e-12)
    assert float(p.q_slope) == pytest.approx(slope, abs=1e-12) and slope < 0.9
    # tiny σb: q* ~ 3e-6, inside the series range of the moments
    p = critical_sigma_w("elu", 1e-6)
    chi1, sb2, _ = _mp_line(f, df, float(p.sigma_w), float(p.q_star), kinks=(0,))
    assert chi1 == pytest.approx(1.0, abs=1e-11) and sb2 == pytest.approx(1e-12, rel=1e-6)


def test_sigma_b_zero_limit_kept_only_when_q_decays():
    """σb = 0, φ(0) = 0: χ1 → 1 as q* → 0.  tanh's q decays to 0 (q' ≈ q − 2q²): kept, marked
    limit 'q*=0', slope 1.  silu's q grows away from 0 at σw = 2 (q' ≈ q + 3q²/4): refused."""
    p = critical_sigma_w("tanh", 0.0)
    assert p.limit == "q*=0" and float(p.q_slope) == 1.0 and float(p.sigma_w) == 1.0
    assert _iterate_qmap(np.tanh, 1.0, 0.0, 0.01, 2000) < 0.01 / 10
    with pytest.raises(VanishcalcError, match="repels"):
        critical_sigma_w("silu", 0.0)
    assert _iterate_qmap(_np_silu, 2.0, 0.0, 0.01, 50) > 0.01 * 1.2


def test_critical_line_carries_slopes_and_refuses_unstable():
    line = critical_line("tanh", [0.3, 1.0])
    assert np.all(line.q_slope < 1.0)
    with pytest.raises(VanishcalcError, match="saddle-node"):
        critical_line("gelu", [0.3])


def test_phase_diagram_reports_the_stable_fixed_point():
    """At silu's refused critical σw (σb = 0.3) the diagram reports the ordered fixed point
    the network reaches (q* = 0.362, slope < 1), never the unstable q* = 1.3996."""
    d = phase_diagram("silu", [1.575621438721777], [0.3])
    assert d.status[0, 0] == 0 and d.q_star[0, 0] == pytest.approx(0.3618, abs=1e-3)
    assert d.q_slope[0, 0] < 1.0 and d.chi1[0, 0] < 1.0


def test_phase_diagram_memory_is_checked_before_allocating(monkeypatch):
    """Issue 11.1: n_hermite = 10**7 needed ~28 GiB.  With 8 GiB available the call raises at
    once, naming the limit and an n_hermite that fits."""
    from vanishcalc import budget
    monkeypatch.setattr(budget, "available_memory", lambda: 8 << 30)
    with pytest.raises(budget.MemoryBudgetError, match="n_hermite to at most"):
        phase_diagram("tanh", [1.5], [0.1], n_hermite=10 ** 7)


def test_phase_diagram_streams_large_grids(monkeypatch):
    """A grid larger than a chunk runs chunk by chunk and gives the same numbers."""
    from vanishcalc.solve import criticality
    sws, sbs = np.linspace(0.8, 3.0, 9), np.linspace(0.0, 0.8, 5)
    whole = phase_diagram("tanh", sws, sbs)
    monkeypatch.setattr(criticality, "PHASE_CHUNK", 7)
    parts = phase_diagram("tanh", sws, sbs)
    np.testing.assert_array_equal(whole.status, parts.status)
    np.testing.assert_allclose(parts.q_star, whole.q_star, rtol=1e-13)
    np.testing.assert_allclose(parts.xi_c, whole.xi_c, rtol=1e-9)


def test_phase_diagram_long_run_warns_with_its_projected_duration(monkeypatch):
    """Issue 11.1: a 1000 × 1000 diagram ran 184 s silently.  A run projected past the limit
    (timed on its first chunk) warns; here the limit is 0 s and the chunk 4 points."""
    from vanishcalc.solve import criticality
    monkeypatch.setattr(criticality, "PHASE_CHUNK", 4)
    monkeypatch.setattr(criticality, "PHASE_WARN_S", 0.0)
    with pytest.warns(Warning, match="will take about"):
        phase_diagram("tanh", [1.2, 1.5, 2.0], [0.1, 0.3])
