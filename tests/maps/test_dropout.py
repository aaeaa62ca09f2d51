"""Dropout(keep): q/ρ, c·ρ, gradient 1/ρ; finite ξc below keep = 1 (Schoenholz et al. 2017, §5)."""
import math

import pytest
from scipy.optimize import brentq

from vanishcalc.errors import VanishcalcError
from vanishcalc.maps import Activation, Dense, Dropout, Layer, MomentState
from vanishcalc.maps.meanfield import MeanField


def test_dropout_moments_closed_form():
    d = Dropout(0.7)
    st = MomentState(1.4, 1.4, 0.6)
    out = d.moment_map(st)
    assert out.q == pytest.approx(2.0, rel=1e-15)
    assert out.cov == pytest.approx(st.cov, rel=1e-15)       # independent masks
    assert out.c == pytest.approx(0.42, rel=1e-15)
    assert d.grad_factor(st) == pytest.approx(1 / 0.7)
    assert d.c_slope(st) == pytest.approx(Layer.c_slope(d, st), rel=1e-8)
    assert d.q_slope(st) == pytest.approx(Layer.q_slope(d, st), rel=1e-8)


def test_dropout_relu_block_c_star_and_chi_c_closed_form():
    """[relu, Dropout(ρ), Dense(σw, σb)]: q* = σb²/(1 − σw²/(2ρ)), c'(c) = (σw² q* k1(c) + σb²)/q*
    with k1 the arc-cosine kernel; χc = σw² (π − arccos c*)/(2π).  Solved here with scipy."""
    rho, sw, sb = 0.8, 1.2, 0.5
    mf = MeanField([Activation("relu"), Dropout(rho), Dense(sw, sb)])
    qs = sb * sb / (1 - sw * sw / (2 * rho))

    def k1(c):
        return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (2 * math.pi)
    cs = brentq(lambda c: (sw * sw * qs * k1(c) + sb * sb) / qs - c, 0.0, 1 - 1e-12, xtol=1e-15)
    assert float(mf.q_star()) == pytest.approx(qs, rel=1e-12)
    assert float(mf.c_star()) == pytest.approx(cs, abs=1e-12)
    assert float(mf.chi_c()) == pytest.approx(sw * sw * (math.pi - math.acos(cs)) / (2 * math.pi),
                                              rel=1e-9)


def test_dropout_destroys_edge_of_chaos_tanh_schoenholz2017():
    """On tanh's critical line (χ1 = 1 at keep = 1), ξc is infinite at keep = 1 and finite, and
    shrinking, for keep < 1."""
    from vanishcalc.solve.criticality import critical_sigma_w
    sw = float(critical_sigma_w("tanh", 0.3).sigma_w)
    assert MeanField([Activation("tanh"), Dropout(1.0), Dense(sw, 0.3)]).xi_c() == math.inf
    xis = [float(MeanField([Activation("tanh"), Dropout(k), Dense(sw, 0.3)]).xi_c())
           for k in (0.99, 0.9)]
    assert all(math.isfinite(x) for x in xis) and xis[0] > xis[1] > 0


def test_dropout_before_activation_is_refused():
    with pytest.raises(VanishcalcError, match="Gaussian"):
        MeanField([Dense(1.0), Dropout(0.9), Activation("tanh")]).propagate(1)


@pytest.mark.parametrize("keep", [0, -0.5, 1.5, math.nan, math.inf, "0.9", True])
def test_dropout_bad_keep_is_clear_error(keep):
    with pytest.raises(VanishcalcError, match="keep"):
        Dropout(keep)
