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
