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


# ---------------------------------------------------------------- normalized recurrence

from vanishcalc.errors import VanishcalcError  # noqa: E402
from vanishcalc.maps.rnn import RecurrentNormRNN  # noqa: E402


@pytest.mark.parametrize("gh, gx, B", [(1.0, 1.0, None), (1.0, 0.3, None), (0.5, 1.0, 8),
                                       (1.0, 1.0, 32)])
def test_recurrent_bn_linear_rate_closed_form(gh, gx, B):
    # φ = x: λ = γ_h²/(γ_h² + γ_x²)·(B−2)/(B−3), exactly (notes/recurrent.md)
    rnn = RecurrentNormRNN("x", "bn", gamma=gh, gamma_x=gx, batch=B)
    fb = 1.0 if B is None else (B - 2) / (B - 3)
    assert rnn.step_rate(2) == pytest.approx(gh ** 2 / (gh ** 2 + gx ** 2) * fb, rel=1e-12)
    assert rnn.step_rate(1) == pytest.approx(gh ** 2 / gx ** 2 * fb, rel=1e-12)


def test_recurrent_bn_infinite_batch_is_recurrent_bn_rate():
    # the t ≥ 2 rate at B = ∞ is recurrent_bn's (Var a = γ_h² + γ_x²)
    for spec, g in (("tanh", 0.1), ("tanh", 1.0), ("exp(-x**2)", 0.5)):
        r = RecurrentNormRNN(spec, "bn", gamma=g, beta=0.3 if spec != "tanh" else 0.0)
        ref = recurrent_bn(spec, g, g, beta=0.3 if spec != "tanh" else 0.0).rate
        assert r.step_rate(5) == pytest.approx(ref, rel=1e-10)


def test_recurrent_bn_finite_batch_tanh_vs_mpmath():
    # λ = γ_h² E[φ'(a)²] / (E φ(a)² − E φ(a1)φ(a2)) · B(B−2)/((B−3)(B−1)),
    # a ~ N(0, v), corr(a1, a2) = −1/(B−1): one-dimensional moments by mpmath, the cross
    # moment by a 2-D Gauss–Hermite product rule in numpy (tanh is analytic near the line)
    import numpy as np
    g, B = 0.5, 8
    v = 2 * g * g
    s = math.sqrt(v)
    rho = -1.0 / (B - 1)
    d2 = _mp_e(lambda z: (1 - mpmath.tanh(s * z) ** 2) ** 2)
    m2 = _mp_e(lambda z: mpmath.tanh(s * z) ** 2)
    x, w = np.polynomial.hermite_e.hermegauss(160)
    w = w / w.sum()
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    cross = float(np.sum(np.outer(w, w) * np.tanh(s * z1)
                         * np.tanh(s * (rho * z1 + math.sqrt(1 - rho ** 2) * z2))))
    ref = g * g * d2 / (m2 - cross) * B * (B - 2) / ((B - 3) * (B - 1))
    assert RecurrentNormRNN("tanh", "bn", gamma=g, batch=B).step_rate(2) == pytest.approx(ref,
                                                                                          rel=1e-8)


def test_recurrent_bn_q_c_exact():
    B, gh, gx, b = 10, 0.7, 0.4, 0.2
    p = RecurrentNormRNN("tanh", "bn", gamma=gh, gamma_x=gx, beta=b, batch=B).propagate(4)
    v = gh ** 2 + gx ** 2
    assert p.q[0] == pytest.approx(gx ** 2 + b * b) and p.q[2] == pytest.approx(v + b * b)
    assert p.c[3] == pytest.approx((b * b - v / (B - 1)) / (v + b * b))


def test_recurrent_ln_rate_is_recurrent_ln_and_width_factor():
    r = RecurrentNormRNN("tanh", "ln", gamma=1.2, beta=0.1, sigma_w=1.3, sigma_u=0.7)
    ref = recurrent_ln("tanh", 1.2, 0.1, sigma_w=1.3, sigma_u=0.7).rate
    assert r.step_rate(3) == pytest.approx(ref, rel=1e-12)
    r64 = RecurrentNormRNN("tanh", "ln", gamma=1.2, beta=0.1, sigma_w=1.3, sigma_u=0.7, width=64)
    assert r64.step_rate(3) == pytest.approx(ref * 62 / 61, rel=1e-12)
    # φ = x, β = 0: γ²σw²/(σw²γ² + σu² x2)
    lin = RecurrentNormRNN("x", "ln", sigma_w=1.0, sigma_u=1.0)
    assert lin.step_rate(2) == pytest.approx(0.5, rel=1e-12)


def test_recurrent_norm_long_propagation_log_grad():
    # T = 1000 at rate 1/2: grad underflows nowhere in log space
    p = RecurrentNormRNN("x", "bn", gamma=1.0).propagate(1000)
    assert p.log_grad[0] == pytest.approx(math.log(0.5) * 998 + math.log(1.0), rel=1e-10)
    assert p.grad[-1] == 1.0 and len(p.chi) == 999


@pytest.mark.parametrize("kwargs, word", [
    (dict(norm="gn"), "norm"),
    (dict(norm="bn", batch=3), "batch"),
    (dict(norm="bn", batch=2), "batch"),
    (dict(norm="bn", sigma_u=0.0), "sigma_u"),
    (dict(norm="bn", x_corr=1.0), "x_corr"),
    (dict(norm="bn", gamma_x=0.0), "gamma_x"),
    (dict(norm="bn", width=64), "batch="),
    (dict(norm="ln", width=3), "width"),
    (dict(norm="ln", gamma_x=0.5), "gamma="),
    (dict(norm="ln", batch=16), "width="),
    (dict(norm="ln", sigma_u=0.0), "sigma_u"),
    (dict(norm="bn", gamma=-1.0), "gamma"),
])
def test_recurrent_norm_bad_input_names_fix(kwargs, word):
    norm = kwargs.pop("norm")
    with pytest.raises(VanishcalcError, match=word):
        RecurrentNormRNN("tanh", norm, **kwargs)


def test_recurrent_bn_constant_phi_raises():
    with pytest.raises(VanishcalcError, match="constant"):
        RecurrentNormRNN("relu", "bn", beta=-40.0, gamma=0.1).step_rate(2)


def test_recurrent_ln_rate_vs_numpy_with_fresh_weights_each_step():
    # The mean field treats W as independent at every step; with W redrawn every step a plain
    # numpy LN RNN (φ = x) grows ‖δa‖² by the theory's γ²σw²/(γ²σw² + σu²)·(N−2)/(N−3) per step.
    # (With W reused the simulated rate drifts a few % above it over tens of steps at this
    # width: notes/recurrent.md, "Finite width".)
    import numpy as np
    N, B, T, nets = 64, 4, 40, 12
    rng = np.random.default_rng(7)
    rates = []
    for _ in range(nets):
        h = np.zeros((N, B))
        d = rng.standard_normal((N, B))
        r = []
        for t in range(T):
            W = rng.standard_normal((N, N)) / math.sqrt(N)
            U = rng.standard_normal((N, N)) / math.sqrt(N)
            y = W @ h + U @ rng.standard_normal((N, B))
            u = (y - y.mean(0)) / y.std(0)
            if t > 0:
                v = W @ d
                pv = v - v.mean(0)
                dn = (pv - u * np.mean(u * pv, 0)) / y.std(0)
                if t > 1:
                    r.append(np.sum(dn ** 2) / np.sum(d ** 2))
                d = dn
            h = u
        rates.append(np.mean(r))
    theory = RecurrentNormRNN("x", "ln", width=N).step_rate(2)
    assert theory == pytest.approx(0.5 * 62 / 61, rel=1e-12)
    se = np.std(rates, ddof=1) / math.sqrt(nets)
    assert abs(np.mean(rates) - theory) <= 4 * se + 0.01 * theory, (np.mean(rates), se, theory)
