"""``lecun_targets`` and ``lecun_input_scale`` against closed forms (LeCun et al. 1998, §4.4:
1.7159·tanh(2x/3), targets ±1; the maxima of |tanh''| at tanh² = 1/3), mpmath fixed points
and a naive numpy network.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from vanishcalc import DivergenceError, VanishcalcError
from vanishcalc.solve.lecun import lecun_input_scale, lecun_targets


def _assert_points(targets, refs):
    assert len(targets.points) == len(refs)
    for p, ref in zip(targets.points, refs):
        assert abs(float(p) - ref) <= p.error, (p, ref)
        assert p.error <= 1e-15 * max(1.0, abs(ref))


def test_lecun_targets_lecun_tanh_vs_closed_form():
    # 1.7159·tanh(2x/3): (tanh u)'' = −2 tanh u sech² u, extreme at tanh² u = 1/3, so
    # x* = (3/2)·artanh(1/√3) = (3/4)·log(2 + √3) = 0.98772…, φ(x*) = 1.7159/√3
    t = lecun_targets("lecun_tanh")
    with mpmath.workdps(30):
        x_star = mpmath.mpf(3) / 4 * mpmath.log(2 + mpmath.sqrt(3))
        _assert_points(t, [-x_star, x_star])
        value = mpmath.mpf("1.7159") / mpmath.sqrt(3)
        for v, ref in zip(t.values, (-value, value)):
            assert abs(float(v) - ref) <= v.error
        curv = mpmath.mpf("1.7159") * mpmath.mpf(4) / 9 * 2 / mpmath.sqrt(3) * mpmath.mpf(2) / 3
        assert float(t.curvature) == pytest.approx(float(curv), rel=1e-14)
    assert round(float(t.points[1]), 5) == 0.98772                 # the issue's ±0.98772
    assert abs(1.7159 * math.tanh(2 / 3) - 1) < 1e-4                 # f(±1) = ±1: LeCun's rounding
    assert not t.at_kinks


@pytest.mark.parametrize("name, scale, values", [
    ("tanh", 0.5, (-1 / math.sqrt(3), 1 / math.sqrt(3))),              # ½ log(2 + √3)
    ("sigmoid", 1.0, (0.5 - math.sqrt(3) / 6, 0.5 + math.sqrt(3) / 6)),  # log(2 + √3)
])
def test_lecun_targets_tanh_sigmoid_vs_closed_form(name, scale, values):
    t = lecun_targets(name)
    with mpmath.workdps(30):
        x_star = scale * mpmath.log(2 + mpmath.sqrt(3))
        _assert_points(t, [-x_star, x_star])
    for v, ref in zip(t.values, values):
        assert abs(float(v) - ref) <= v.error + 1e-16


def test_lecun_targets_kinks_are_exact():
    relu = lecun_targets("relu")
    assert relu.at_kinks and [float(p) for p in relu.points] == [0.0]
    assert math.isinf(float(relu.curvature))
    ht = lecun_targets("hardtanh")
    assert [float(p) for p in ht.points] == [-1.0, 1.0]
    assert [float(v) for v in ht.values] == [-1.0, 1.0]


def test_lecun_targets_one_sided_maximum_at_kink():
    # elu(α = 1): φ' is continuous at 0, φ'' = eˣ on x < 0 and 0 on x > 0: sup |φ''| = 1 at 0⁻
    t = lecun_targets("elu")
    assert [float(p) for p in t.points] == [0.0] and not t.at_kinks
    assert float(t.curvature) == pytest.approx(1.0, rel=1e-15)


def test_lecun_targets_gaussian_at_origin():
    # exp(−x²)'' = (4x² − 2)e^{−x²}: |·| is 2 at 0, 4e^{−3/2} = 0.89 at ±√(3/2)
    t = lecun_targets("gaussian")
    assert [float(p) for p in t.points] == [0.0]
    assert float(t.curvature) == pytest.approx(2.0, rel=1e-15)


def test_lecun_targets_bad_input():
    with pytest.raises(VanishcalcError, match="linear"):
        lecun_targets("linear")
    with pytest.raises(VanishcalcError, match="no isolated maximum|edge"):
        lecun_targets("exp(x)")
    with pytest.raises(VanishcalcError, match="jumps"):
        lecun_targets("Heaviside(x)")


# ---------------------------------------------------------------- input scale


def _mp_q_star(sigma_w, sigma_b, q0=1.0):
    with mpmath.workdps(30):
        def m2(q):
            return mpmath.quad(lambda z: mpmath.tanh(mpmath.sqrt(q) * z) ** 2 * mpmath.exp(-z * z / 2),
                               [-mpmath.inf, mpmath.inf]) / mpmath.sqrt(2 * mpmath.pi)
        q = mpmath.findroot(lambda q: sigma_w ** 2 * m2(q) + sigma_b ** 2 - q, q0)
        return q, m2(q)


def test_lecun_input_scale_tanh_vs_mpmath_fixed_point():
    sw, sb = 1.5, 0.1
    s = lecun_input_scale("tanh", sw, sb)
    q_ref, m2_ref = _mp_q_star(sw, sb)
    assert abs(float(s.q_star) - q_ref) <= s.q_star.error + 1e-15
    # the input second moment equals E[φ(√q* z)²]: a layer's output at the fixed point
    assert float(s.input_second_moment) == pytest.approx(float(m2_ref), rel=1e-13)
    assert float(s.input_std) == pytest.approx(math.sqrt(m2_ref), rel=1e-13)
    assert not s.every_q_fixed and abs(float(s.q_slope)) < 1


def test_lecun_input_scale_relu_with_bias_closed_form():
    # relu, σw = 1, σb = 0.5: q' = q/2 + 1/4, q* = 1/2, E[x²] = (q* − σb²)/σw² = 1/4
    s = lecun_input_scale("relu", 1.0, 0.5)
    assert float(s.q_star) == pytest.approx(0.5, rel=1e-14)
    assert float(s.input_second_moment) == pytest.approx(0.25, rel=1e-13)


def test_lecun_input_scale_homogeneous_every_q_fixed_is_an_answer():
    s = lecun_input_scale("relu", math.sqrt(2))
    assert s.every_q_fixed and s.q_star is None and s.input_second_moment is None
    assert "every q is a fixed point" in s.note
    assert lecun_input_scale("leaky_relu(0.2)", math.sqrt(2 / 1.04)).every_q_fixed
    with pytest.raises(VanishcalcError, match="decays to 0"):
        lecun_input_scale("relu", 1.0)
    with pytest.raises(DivergenceError, match="grows without bound"):
        lecun_input_scale("relu", 2.0)
    with pytest.raises(VanishcalcError, match="q\\* = 0"):
        lecun_input_scale("tanh", 0.9)
    with pytest.raises(VanishcalcError, match="sigma_w"):
        lecun_input_scale("tanh", -1.0)


def test_lecun_input_scale_starts_a_numpy_network_at_q_star(rng):
    sw, sb, width, batch = 1.5, 0.1, 1000, 200
    s = lecun_input_scale("tanh", sw, sb)
    x = float(s.input_std) * rng.standard_normal((batch, width))
    qs = []
    for _ in range(3):
        w = rng.standard_normal((width, width)) * sw / math.sqrt(width)
        b = rng.standard_normal(width) * sb
        h = x @ w.T + b
        qs.append(np.mean(h ** 2))
        x = np.tanh(h)
    assert np.allclose(qs, float(s.q_star), rtol=0.03)


def test_lecun_targets_kink_counted_once():
    # softsign'' = −2 sign(x)/(1 + |x|)³: |φ''| → 2 from both sides of 0, one target
    t = lecun_targets("softsign")
    assert [float(p) for p in t.points] == [0.0]
    assert float(t.curvature) == pytest.approx(2.0, rel=1e-15)
