"""RNN mean field over time and recurrent BN/LN numbers (Cooijmans et al. 2017)."""
import math

import mpmath
import pytest

from vanishcalc.maps.meanfield import MeanField
from vanishcalc.maps.rnn import (RNNMeanField, expected_derivative, recurrent_bn, recurrent_ln)


def _mp_e(f):
    with mpmath.workdps(30):
        return float(mpmath.quad(lambda z: f(z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf]))


def test_expected_tanh_derivative_cooijmans_numbers_vs_mpmath():
    for g, approx in ((0.1, 0.990), (1.0, 0.606)):
        ref = _mp_e(lambda z: 1 - mpmath.tanh(g * z) ** 2)
        v = expected_derivative("tanh", g)
        assert abs(v - ref) < 1e-12
        assert round(v, 3) == approx


def test_rnn_qmap_is_feedforward_with_effective_bias():
    rnn = RNNMeanField("tanh", 1.2, sigma_u=0.5, sigma_b=0.1, x2=2.0)
    ff = MeanField("tanh", sigma_w=1.2, sigma_b=math.sqrt(0.01 + 0.25 * 2.0))
    for q in (0.1, 1.0, 3.0):
        assert rnn.meanfield.q_map(q) == pytest.approx(float(ff.q_map(q)), rel=1e-13)
    assert float(rnn.meanfield.q_star()) == pytest.approx(float(ff.q_star()), rel=1e-12)
    assert float(rnn.chi()) == pytest.approx(float(ff.chi1()), rel=1e-12)


def test_rnn_propagate_first_step_and_mpmath_qmap():
    rnn = RNNMeanField("tanh", 1.0, sigma_u=0.5)
    p = rnn.propagate(3)
    assert p.q[0] == 0.25 and p.c[0] == 0.0
    ref = _mp_e(lambda z: mpmath.tanh(0.5 * z) ** 2) + 0.25
    assert abs(p.q[1] - ref) < 1e-12


def test_rnn_critical_sigma_w_gives_chi_one():
    rnn = RNNMeanField("tanh", 1.0, sigma_u=0.3)
    sw = rnn.critical_sigma_w()
    # effective bias √(σu² x2) = 0.3: tanh's edge of chaos σw = 1.395584 (Schoenholz et al. 2017)
    assert sw == pytest.approx(1.395584, abs=1e-6)
    assert float(RNNMeanField("tanh", sw, sigma_u=0.3).chi()) == pytest.approx(1.0, abs=1e-9)


def test_recurrent_bn_and_ln_rates_vs_mpmath():
    r = recurrent_bn("tanh", 0.1, 0.1)
    s = math.sqrt(0.02)
    d2 = _mp_e(lambda z: (1 - mpmath.tanh(s * z) ** 2) ** 2)
    var = _mp_e(lambda z: mpmath.tanh(s * z) ** 2)
    assert r.rate == pytest.approx(0.01 * d2 / var, rel=1e-10)
    ln = recurrent_ln("tanh", gamma=1.0, sigma_w=1.0, sigma_u=1.0)
    d2 = _mp_e(lambda z: (1 - mpmath.tanh(z) ** 2) ** 2)
    m2 = _mp_e(lambda z: mpmath.tanh(z) ** 2)
    assert ln.rate == pytest.approx(d2 / (m2 + 1.0), rel=1e-10)


def test_rnn_bad_input():
    with pytest.raises(ValueError):
        RNNMeanField("tanh", 0.0)
    with pytest.raises(ValueError):
        RNNMeanField("tanh", 1.0, x_corr=2.0)
    with pytest.raises(ValueError):
        RNNMeanField("tanh", 1.0).propagate(3)     # h_0 = 0 with no drive stays 0
    with pytest.raises(ValueError):
        expected_derivative("tanh", gamma=-1)
