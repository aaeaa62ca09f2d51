"""RBF distance units (vanishcalc/maps/rbf.py) and their solver (vanishcalc/solve/rbf_scale.py).

References are independent: plain numpy with explicit inputs x and centers w (Monte Carlo
over units), mpmath integrals of the Gaussian expectations, and the non-central χ² cumulants
(Johnson, Kotz & Balakrishnan, ch. 29) written out here.  notes/rbf.md.
"""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from vanishcalc.errors import VanishcalcError
from vanishcalc.maps import RBF, Dense, LayerNorm, serial
from vanishcalc.maps.meanfield import MeanField
from vanishcalc.maps.rbf import gauss_moments, numeric_moments
from vanishcalc.maps.state import MomentState
from vanishcalc.activation import activation
from vanishcalc.solve.rbf_scale import rbf_scale


@pytest.fixture
def rng():
    return np.random.default_rng(20261130)


def _ln_inputs(rng, n, c):
    """Two inputs of width n, correlation ≈ c, each standardized over its units (as LayerNorm)."""
    g = rng.standard_normal(n)
    x = math.sqrt(c) * g + math.sqrt(1 - c) * rng.standard_normal((2, n))
    return (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)


def _distances(rng, x, units, mu_c, sigma_c, scale, offset, chunk=500):
    """d for every (unit, input): explicit centers, no expansion of the square."""
    n = x.shape[1]
    d = np.empty((units, x.shape[0]))
    for k in range(0, units, chunk):
        w = mu_c + sigma_c * rng.standard_normal((min(chunk, units - k), n))
        d[k:k + len(w)] = (((x[None] - w[:, None]) ** 2).sum(-1) - offset) / scale
    return d


# ---------------------------------------------------------------- the law of d


@pytest.mark.parametrize("sigma_c, mu_c, beta", [(1.0, 0.0, 0.0), (0.5, 0.3, 0.4)])
def test_rbf_d_law_vs_numpy_monte_carlo(rng, sigma_c, mu_c, beta):
    """Mean, variance and covariance of d across units are exact at any width (cumulants of
    σc²χ'²_n); numpy with explicit x and w agrees within Monte-Carlo error."""
    n, units = 128, 20000
    x = _ln_inputs(rng, n, 0.5) + beta          # LayerNorm(1, β) output: mean β, variance 1
    scale, offset = 2.0 * math.sqrt(n), n * 1.7
    layer = RBF(width=n, scale=scale, offset=offset, sigma_c=sigma_c, center_mean=mu_c)
    q = float(np.mean(x[0] ** 2))
    state = MomentState(q, float(np.mean(x[1] ** 2)), float(x[0] @ x[1] / n) / q, mean=beta)
    m1, v1, m2, v2, cov = layer.d_law(state)
    d = _distances(rng, x, units, mu_c, sigma_c, scale, offset)
    # independent: the non-central χ² with n dof, λ = ‖x − μc‖²/σc², times σc², shifted/scaled
    lam = np.sum((x - mu_c) ** 2, axis=1) / sigma_c ** 2
    mean_ref = (sigma_c ** 2 * (n + lam) - offset) / scale
    var_ref = sigma_c ** 4 * 2 * (n + 2 * lam) / scale ** 2
    assert np.allclose([m1, m2], mean_ref, rtol=0, atol=1e-9)
    assert np.allclose([v1, v2], var_ref, rtol=1e-12)
    se_mean = np.sqrt(var_ref / units)
    assert np.all(np.abs(d.mean(0) - mean_ref) < 5 * se_mean)
    emp = np.cov(d.T)
    se_var = var_ref * math.sqrt(2.0 / units)
    assert np.all(np.abs(np.diag(emp) - var_ref) < 5 * se_var)
    assert abs(emp[0, 1] - cov) < 5 * math.sqrt(v1 * v2 * (1 + (cov / math.sqrt(v1 * v2)) ** 2)
                                                / units)


@pytest.mark.parametrize("spec", ["exp(-x**2)", "tanh"])
def test_rbf_moment_map_vs_numpy_monte_carlo_large_width(rng, spec):
    """q', c', mean' and the LN-projected gradient factor against explicit x, w at width 1024
    (the Gaussian law of d is the large-width limit; skewness 0.07 here)."""
    n, units = 1024, 12000
    x = _ln_inputs(rng, n, 0.6)
    scale, offset = 3.84 * math.sqrt(n), 2.0 * n + 0.7 * 3.84 * math.sqrt(n)
    layer = RBF(spec, width=n, scale=scale, offset=offset)
    state = MomentState(1.0, 1.0, float(x[0] @ x[1] / n), mean=0.0)
    out = layer.moment_map(state)
    d = _distances(rng, x, units, 0.0, 1.0, scale, offset)
    act = activation(spec)
    y = np.asarray(act.numpy(d), float)
    for est, th in [(y[:, 0] ** 2, out.q1), (y[:, 1] ** 2, out.q2), (y[:, 0] * y[:, 1], out.cov),
                    (y[:, 0], out.mean)]:
        se = est.std() / math.sqrt(units)
        assert abs(est.mean() - th) < 5 * se + 0.01 * abs(th), (est.mean(), th, se)
    # gradient factor: J v with v ⊥ x, 1 (what a LayerNorm passes on), explicit Jacobian rows
    v = rng.standard_normal(n)
    for u in (np.ones(n) / math.sqrt(n), x[0] / np.linalg.norm(x[0])):
        v -= (v @ u) * u
    w = rng.standard_normal((units, n))
    d0 = (((x[0] - w) ** 2).sum(1) - offset) / scale
    jv = np.asarray(act.derivative(1).numpy(d0), float) * 2 * ((x[0] - w) @ v) / scale
    est = jv ** 2 * n / (v @ v)         # ‖Jv‖²/‖v‖² = (1/n)·Σ_i … with n units
    th = layer.grad_factor(state)
    assert abs(est.mean() - th) < 5 * est.std() / math.sqrt(units) + 0.01 * th


# ---------------------------------------------------------------- Gaussian expectations


def _bivariate_gauss(m1, v1, m2, v2, cov):
    """E exp(−d1²)exp(−d2²): the inner expectation over d2 | d1 by the 1-D Gaussian integral
    E exp(−(a + s z)²) = exp(−a²/(1 + 2s²))/√(1 + 2s²), the outer one by mpmath."""
    mpmath.mp.dps = 30
    s1, rho = mpmath.sqrt(v1), cov / math.sqrt(v1 * v2)
    s2sq = v2 * (1 - rho * rho)

    def inner(z1):
        a = m2 + mpmath.sqrt(v2) * rho * z1
        return (mpmath.exp(-(m1 + s1 * z1) ** 2) * mpmath.exp(-a * a / (1 + 2 * s2sq))
                / mpmath.sqrt(1 + 2 * s2sq) * mpmath.npdf(z1))
    return float(mpmath.quad(inner, [-mpmath.inf, 0, mpmath.inf]))


def _bivariate_scipy(f, m1, v1, m2, v2, cov):
    """E f(d1) f(d2) by scipy's adaptive 2-D quadrature over (z1, z2) ∈ [−12, 12]²."""
    from scipy.integrate import dblquad
    rho = cov / math.sqrt(v1 * v2)
    a, b = math.sqrt(v2) * rho, math.sqrt(v2 * (1 - rho * rho))
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)   # noqa: E731
    val, _ = dblquad(lambda z2, z1: f(m1 + math.sqrt(v1) * z1) * f(m2 + a * z1 + b * z2)
                     * pdf(z1) * pdf(z2), -12, 12, -12, 12, epsabs=1e-14, epsrel=1e-12)
    return val


def _mp_mean(f, m, v):
    mpmath.mp.dps = 30
    return float(mpmath.quad(lambda z: f(m + mpmath.sqrt(v) * z) * mpmath.npdf(z),
                             [-mpmath.inf, 0, mpmath.inf]))


@pytest.mark.parametrize("law", [(0.3, 0.5, -0.2, 0.7, 0.3), (-0.7, 0.41, -0.7, 0.41, 0.28)])
def test_gauss_moments_closed_form_vs_mpmath(law):
    m1, v1, m2, v2, cov = law
    e1, e11, e12, ed = gauss_moments(*law)
    f = lambda t: mpmath.exp(-t * t)          # noqa: E731
    assert e1 == pytest.approx(_mp_mean(f, m1, v1), rel=1e-13)
    assert e11 == pytest.approx(_mp_mean(lambda t: f(t) ** 2, m1, v1), rel=1e-13)
    assert ed == pytest.approx(_mp_mean(lambda t: (2 * t * f(t)) ** 2, m1, v1), rel=1e-12)
    assert e12 == pytest.approx(_bivariate_gauss(*law), rel=1e-12)


def test_numeric_moments_tanh_vs_mpmath():
    law = (0.4, 0.8, -0.3, 1.2, 0.5)
    e1, e11, e12, ed = numeric_moments(activation("tanh"), *law)
    m1, v1 = law[:2]
    assert e1 == pytest.approx(_mp_mean(mpmath.tanh, m1, v1), rel=1e-12)
    assert e11 == pytest.approx(_mp_mean(lambda t: mpmath.tanh(t) ** 2, m1, v1), rel=1e-12)
    assert ed == pytest.approx(_mp_mean(lambda t: mpmath.sech(t) ** 4, m1, v1), rel=1e-12)
    assert e12 == pytest.approx(_bivariate_scipy(math.tanh, *law), rel=1e-10)


# ---------------------------------------------------------------- composition and the solver


def test_rbf_composes_with_dense_layernorm_and_serial():
    r = rbf_scale(width=64)
    net = serial(Dense(1.3), LayerNorm(), r.layer, LayerNorm(0.8, 0.1), r.layer)
    out = net.moment_map(MomentState(1.0, 1.0, 0.3))
    assert 0 < out.q1 < 1 and 0 < out.c < 1 and out.mean > 0 and not out.is_gaussian
    assert "RBF(width=64" in repr(net)


def test_rbf_scale_rate_vs_mpmath_from_scale_and_offset():
    """The solved (scale, offset) reproduce the target block rate when the rate is recomputed
    from scratch: law of d from the χ² cumulants, expectations by mpmath."""
    for n, target in [(64, 1.0), (500, 1.3)]:
        r = rbf_scale(width=n, rate=target, ln_gamma=1.2, sigma_c=0.8)
        Q, s2 = 1.2 ** 2, 0.64
        mu = (n * (Q + s2) - r.offset) / r.scale
        v = n * (4 * Q * s2 + 2 * s2 * s2) / r.scale ** 2
        f = lambda t: mpmath.exp(-t * t)          # noqa: E731
        e1, e11 = _mp_mean(f, mu, v), _mp_mean(lambda t: f(t) ** 2, mu, v)
        ed = _mp_mean(lambda t: (2 * t * f(t)) ** 2, mu, v)
        rate = (1.2 ** 2 / (e11 - e1 ** 2)) * 4 * n * s2 * ed / r.scale ** 2
        assert rate == pytest.approx(target, rel=1e-9)
        # and the composed layers agree at the fixed point (LayerNorm × RBF factors)
        prop = MeanField(r.block).propagate(4, q0=1.0, c0=0.5)
        assert prop.chi[1:] == pytest.approx(target, rel=1e-9)


def test_rbf_scale_tanh_rate_within_reported_error_vs_mpmath():
    """tanh has no closed form here: the rate is adaptive quadrature; mpmath from scale and
    offset lies within the reported error, and the error is small.  (Gauss–Hermite with 160
    nodes missed by 1.6e-4 with an estimate of 1.6e-4 from 240 nodes: this test caught it.)"""
    n = 64
    r = rbf_scale("tanh", width=n, rate=1.2)
    mu = (n * 2.0 - r.offset) / r.scale
    v = n * 6.0 / r.scale ** 2
    e1, e11 = _mp_mean(mpmath.tanh, mu, v), _mp_mean(lambda t: mpmath.tanh(t) ** 2, mu, v)
    ed = _mp_mean(lambda t: mpmath.sech(t) ** 4, mu, v)
    ref = 4 * n * ed / r.scale ** 2 / (e11 - e1 ** 2)
    assert abs(float(r.rate) - ref) <= r.rate.error and r.rate.error < 1e-8
    assert r.rate.error_kind == "estimate" and "gauss-kronrod" in r.rate.method
    assert r.d_mean == 0.0                                # tanh is steepest at 0


def test_rbf_scale_width_independent_parameterization():
    a, b = rbf_scale(width=100), rbf_scale(width=400)
    assert b.scale / a.scale == pytest.approx(2.0, rel=1e-12)
    assert (b.offset - 400 * 2) / (a.offset - 100 * 2) == pytest.approx(2.0, rel=1e-12)
    assert (a.d_mean, a.d_std) == pytest.approx((b.d_mean, b.d_std), rel=1e-12)


def test_rbf_scale_saturation_target():
    r = rbf_scale(width=128, saturation=0.2)
    assert r.saturated_fraction == pytest.approx(0.2, abs=1e-6)


# ---------------------------------------------------------------- deep nets: naive vs solved


def test_deep_rbf_solved_keeps_signal_naive_collapses_theory():
    n = 256
    solved = rbf_scale(width=n)
    prop = MeanField(solved.block).propagate(40, q0=1.0, c0=0.5)
    assert np.allclose(prop.q[1:], prop.q[1], rtol=1e-12) and prop.q[1] > 0.1   # alive units
    assert np.all(prop.c[1:] < 0.99)                    # inputs still told apart at depth 40
    assert prop.chi[1:] == pytest.approx(1.0, rel=1e-9)  # gradient rate 1 per block
    # naive: scale 1, offset 0 — d ≈ n(q + σc²) ± √(6n): every unit saturated
    naive = serial(LayerNorm(), RBF(width=n, scale=1.0, offset=0.0))
    with pytest.raises(VanishcalcError, match="every unit is saturated.*rbf_scale"):
        MeanField(naive).propagate(2, q0=1.0, c0=0.5)
    # centred but unscaled (offset = n(q + σc²), scale 1): the gradient explodes ∝ n per block
    rates = []
    for w in (64, 1024):
        half = serial(LayerNorm(), RBF(width=w, scale=1.0, offset=2.0 * w))
        rates.append(MeanField(half).propagate(3, q0=1.0, c0=0.5).chi[-1])
    assert rates[0] > 100 and rates[1] / rates[0] > 10


def test_rbf_norm_mode_q_slope_grows_as_sqrt_width_without_layernorm():
    """The norm mode (notes/rbf.md) seen by the map itself: after a Dense layer the fixed
    point q* of [Dense, RBF] has q-slope ∝ √n (unstable), while [LayerNorm, RBF] has 0."""
    q = 0.42168523712477557                      # the solved block's q* (exp(−x²), σc = 1)
    slopes = []
    for n in (64, 1024):
        r = rbf_scale(width=n)
        state = MomentState(q, q, 0.5)
        slopes.append(serial(Dense(1 / math.sqrt(q)), r.layer).q_slope(state))
        assert r.block.q_slope(state) == 0.0
    assert slopes[0] > 1.5 and slopes[1] / slopes[0] == pytest.approx(4.0, rel=0.05)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kw, match", [
    (dict(scale=0.0), "scale = 0.0 must be > 0.*rbf_scale"),
    (dict(scale=-2.0), "scale = -2.0 must be > 0"),
    (dict(width=4), "width = 4.*wider"),
    (dict(sigma_c=0.0), "sigma_c = 0.0 must be > 0"),
    (dict(centers="uniform"), "centers = 'uniform'"),
    (dict(spec="sign(x)"), "jumps"),
])
def test_rbf_bad_input_names_fix(kw, match):
    args = dict(width=64, scale=10.0, offset=128.0)
    args.update(kw)
    spec = args.pop("spec", "exp(-x**2)")
    with pytest.raises(VanishcalcError, match=match):
        RBF(spec, **args)


def test_rbf_width_too_small_for_statistics():
    layer = RBF(width=10, scale=5.0, offset=20.0)
    with pytest.raises(VanishcalcError, match=r"width 10 is too small.*use width ≥ 19"):
        layer.moment_map(MomentState(1.0, 1.0, 0.5))


def test_rbf_matched_needs_mean_and_rbf_scale_refusals():
    layer = RBF(width=64, scale=10.0, offset=128.0, centers="matched")
    with pytest.raises(VanishcalcError, match="LayerNorm"):
        layer.moment_map(MomentState(1.0, 1.0, 0.5, mean=None, is_gaussian=False))
    out = serial(LayerNorm(1.0, 0.5), layer).moment_map(MomentState(1.0, 1.0, 0.5))
    assert out.q1 > 0
    with pytest.raises(VanishcalcError, match="not both"):
        rbf_scale(width=64, rate=1.0, saturation=0.1)
    with pytest.raises(VanishcalcError, match="reached"):
        rbf_scale(width=64, rate=1e6)
