"""Jacobian spectrum (issue 16) against closed forms from the papers, mpmath and exact sums."""
from __future__ import annotations

import math
from fractions import Fraction
from math import comb

import mpmath
import numpy as np
import pytest
import sympy

from vanishcalc import jacobian_spectrum, isometry_settings
from vanishcalc.errors import DivergenceError, VanishcalcError
from vanishcalc.maps import Activation, Dense
from vanishcalc.maps.meanfield import MeanField
from vanishcalc.solve.spectrum import _integral, moment_series, spectrum_moments_expr


def fuss_catalan(L, k):
    """k-th moment of (W_L⋯W_1)ᵀ(W_L⋯W_1)/N for Gaussian W, σw = 1 (Penson & Życzkowski
    2011, arXiv:1103.3453): binom((L+1)k, k)/(Lk + 1)."""
    return comb((L + 1) * k, k) // (L * k + 1)


@pytest.mark.parametrize("L", [1, 2, 3, 7])
def test_moment_series_linear_gaussian_fuss_catalan(L):
    nu = [Fraction(1)] * 6
    got = moment_series(nu, L, "gaussian", Fraction(0), Fraction(1))
    assert got == [fuss_catalan(L, k) for k in range(1, 7)]


def test_moment_series_orthogonal_one_layer_is_the_law_of_d():
    # L = 1, orthogonal: JJᵀ = W D² Wᵀ has the eigenvalues of D², so m_k = μ_k
    nu = [Fraction(1), Fraction(3, 2), Fraction(7, 3), Fraction(5)]
    assert moment_series(nu, 1, "orthogonal", Fraction(0), Fraction(1)) == nu


def test_moments_linear_gaussian_spectrum_fuss_catalan_scaled():
    sw, L = 0.8, 5
    s = jacobian_spectrum("linear", sw, 0.0, depth=L, weights="gaussian")
    for k in range(1, 5):
        m = s.moments(k)
        truth = fuss_catalan(L, k) * sw ** (2 * L * k)
        assert abs(float(m) - truth) <= m.error + 1e-15 * truth
        assert m.error <= 1e-12 * truth


def test_linear_orthogonal_is_a_delta_at_sigma_w_to_the_2L():
    sw, L = 0.9, 12
    s = jacobian_spectrum("linear", sw, 0.0, depth=L, weights="orthogonal")
    assert float(s.spread) == pytest.approx(0.0, abs=1e-14)
    for k in (1, 2, 3):
        assert float(s.moments(k)) == pytest.approx(sw ** (2 * L * k), rel=1e-13)
    d = s.density()
    assert d.atoms == ((pytest.approx(sw ** (2 * L), rel=1e-13), 1.0),)
    assert s.edge() == pytest.approx(sw ** (2 * L), rel=1e-13)


def _mp_tanh_fixed_point(sw, sb):
    mpmath.mp.dps = 30
    f = lambda q: sw ** 2 * mpmath.quad(lambda z: mpmath.tanh(mpmath.sqrt(q) * z) ** 2
                                        * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf]) + sb ** 2
    q = mpmath.findroot(lambda q: f(q) - q, 0.5)
    mu = [sw ** (2 * k) * mpmath.quad(lambda z: mpmath.sech(mpmath.sqrt(q) * z) ** (4 * k)
                                      * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
          for k in (1, 2)]
    return q, mu


@pytest.mark.parametrize("weights, s", [("orthogonal", 0), ("gaussian", 1)])
def test_variance_tanh_pennington_closed_form_vs_mpmath(weights, s):
    """σ²_{JJᵀ}/m1² = L(μ2/μ1² − 1 + s): Pennington et al. 2017, eqs. 16-17 (s1 = 0 orthogonal,
    −1 in their sign convention for Gaussian)."""
    sw, sb, L = 1.3, 0.2, 20
    q, (mu1, mu2) = _mp_tanh_fixed_point(sw, sb)
    spec = jacobian_spectrum("tanh", sw, sb, depth=L, weights=weights)
    m1 = float(mu1 ** L)
    assert abs(float(spec.m1) - m1) <= spec.m1.error + 1e-15 * m1
    truth = float(L * (mu2 / mu1 ** 2 - 1 + s))
    assert abs(float(spec.spread) - truth) <= spec.spread.error + 1e-12 * truth
    var = float(L * (mu2 / mu1 ** 2 - 1 + s) * mu1 ** (2 * L))
    assert abs(float(spec.variance) - var) <= spec.variance.error + 1e-12 * var
    assert float(spec.mu(2)) == pytest.approx(float(mu2), rel=1e-12)


def test_relu_orthogonal_does_not_reach_isometry():
    """relu: D ∈ {0, 1} with P = 1/2 each, so μ2/μ1² = 2 and σ²/m1² = L even with orthogonal
    W (Pennington et al. 2017, §2.5); the eigenvalue 0 carries mass 1/2."""
    L = 16
    o = jacobian_spectrum("relu", math.sqrt(2), 0.0, depth=L, weights="orthogonal")
    g = jacobian_spectrum("relu", math.sqrt(2), 0.0, depth=L, weights="gaussian")
    assert o.d_law.atoms == ((0.0, 0.5), (1.0, 0.5))
    assert o.zero_mass == 0.5
    assert float(o.spread) == pytest.approx(L, rel=1e-13)
    assert float(g.spread) == pytest.approx(2 * L, rel=1e-13)
    assert o.density().atoms[0] == (0.0, 0.5)


def test_spectrum_moments_expr_second_moment_and_one_layer():
    L, mu1, mu2, mu3 = sympy.Symbol("L", positive=True, integer=True), *sympy.symbols(
        "mu_1:4", positive=True)
    m2 = spectrum_moments_expr(2, "orthogonal")
    assert sympy.simplify(m2 - mu1 ** (2 * L) * (1 + L * (mu2 / mu1 ** 2 - 1))) == 0
    m2g = spectrum_moments_expr(2, "gaussian")
    assert sympy.simplify(m2g - mu1 ** (2 * L) * (1 + L * mu2 / mu1 ** 2)) == 0
    # one orthogonal layer: the law of d itself
    assert sympy.simplify(spectrum_moments_expr(3, "orthogonal").subs(L, 1) - mu3) == 0
    # Gaussian, d ≡ 1: Fuss–Catalan
    fc = spectrum_moments_expr(3, "gaussian").subs({mu1: 1, mu2: 1, mu3: 1})
    assert [fc.subs(L, l) for l in (1, 2, 3)] == [fuss_catalan(l, 3) for l in (1, 2, 3)]


def test_density_marchenko_pastur_one_gaussian_layer():
    """L = 1, linear, σw = 1: Marchenko–Pastur with ratio 1, ρ(λ) = √(4/λ − 1)/(2π)."""
    s = jacobian_spectrum("linear", 1.0, 0.0, depth=1, weights="gaussian")
    d = s.density()
    inside = (d.x > 1e-6) & (d.x < 3.99)
    truth = np.sqrt(4 / d.x[inside] - 1) / (2 * np.pi)
    assert np.max(np.abs(d.density[inside] / truth - 1)) < 1e-5
    assert s.edge() == pytest.approx(4.0, rel=1e-10)


@pytest.mark.parametrize("L", [2, 3, 5])
def test_density_fuss_catalan_moments_and_edge(L):
    s = jacobian_spectrum("linear", 1.0, 0.0, depth=L, weights="gaussian")
    d = s.density()
    assert abs(d.checks["mass"]) < 1e-4
    m3 = _integral(d.log_x, d.log_density, d.log_edge, np.exp(3 * d.log_x))
    assert m3 == pytest.approx(fuss_catalan(L, 3), rel=1e-4)
    assert s.edge() == pytest.approx((L + 1) ** (L + 1) / L ** L, rel=1e-10)
    depths, lam, sv = s.edge_growth([1, 2, 4, 8])
    assert np.allclose(lam, [(l + 1) ** (l + 1) / l ** l for l in depths], rtol=1e-10)
    assert np.allclose(sv ** 2, lam)


@pytest.mark.parametrize("spec, sw, sb, L, weights", [
    ("tanh", 1.05, 0.05, 16, "orthogonal"),
    ("tanh", 1.3, 0.2, 8, "gaussian"),
    ("relu", math.sqrt(2), 0.0, 2, "orthogonal"),     # inverse-square-root edge
    ("hardtanh", 1.3, 0.1, 3, "orthogonal"),          # an atom at the top
    ("erf", 1.2, 0.2, 12, "orthogonal"),
    ("elu", 0.9, 0.3, 50, "orthogonal"),         # x turns fast: continuation by halved steps
    ("mish", 1.2, 0.1, 2, "orthogonal"),          # shallow: finer nodes of d's law
    ("leaky_relu", 1.2, 0.0, 50, "gaussian"),     # d = 1e-4 on half the units: a long low tail
    ("leaky_relu", 1.2, 0.0, 2, "orthogonal"),    # inverse-square-root lower edge: refined
    ("selu", 0.9, 0.3, 2, "orthogonal"),          # an atom inside the continuous part's range
])
def test_density_checks_mass_and_moments(spec, sw, sb, L, weights):
    s = jacobian_spectrum(spec, sw, sb, depth=L, weights=weights)
    d = s.density()
    assert d.error < (1e-3 if L == 2 and spec != "relu" else 2e-4), d.checks
    assert np.all(d.density >= 0) and np.all(np.isfinite(d.density))
    assert d.x.shape == d.density.shape
    cdf = d.cdf(np.array([0.0, s.edge() * 1.001]))
    assert cdf[0] == pytest.approx(s.zero_mass, abs=1e-12)
    assert cdf[1] == pytest.approx(1.0, abs=1e-12)


def test_hardtanh_orthogonal_top_atom():
    # P(|h| < 1) = p: the directions kept by every layer meet in dimension 1 − L(1 − p)
    sw, sb, L = 1.3, 0.1, 2
    s = jacobian_spectrum("hardtanh", sw, sb, depth=L, weights="orthogonal")
    p = math.erf(1 / math.sqrt(2 * float(s.q_star)))
    (loc, mass), = [a for a in s.density().atoms if a[0] > 0]
    assert loc == pytest.approx(sw ** (2 * L), rel=1e-14)
    assert mass == pytest.approx(1 - L * (1 - p), rel=1e-12)


def test_plain_meanfield_accepted_and_block_refused():
    mf = MeanField("tanh", 1.2, 0.1)
    s = jacobian_spectrum(mf, depth=4, weights="orthogonal")
    assert float(s.chi1) == pytest.approx(float(mf.chi1()), rel=1e-12)
    with pytest.raises(VanishcalcError, match="BatchNorm"):
        jacobian_spectrum(MeanField([Dense(1.2, 0.1), Activation("tanh")]), depth=4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(spec="tanh", sigma_w=1.2, depth=0), "depth = 0 must be ≥ 1"),
    (dict(spec="tanh", sigma_w=1.2, depth=2.5), "integer"),
    (dict(spec="tanh", sigma_w=1.2, depth=3, weights="ortho"), "'gaussian' .* or 'orthogonal'"),
    (dict(spec="tanh", depth=3), "sigma_w is required"),
])
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(VanishcalcError, match=match):
        jacobian_spectrum(**kwargs)


def test_no_fixed_point_raises_divergence():
    with pytest.raises(DivergenceError, match="without bound"):
        jacobian_spectrum("relu", 2.0, 0.0, depth=3)


def test_isometry_settings_tanh_orthogonal_reaches_the_q0_limit():
    res = isometry_settings("tanh", depth=100, weights="orthogonal",
                            sigma_b_values=[0.0, 0.05, 0.3])
    assert res.sigma_b == 0.0 and float(res.q_star) == 0.0
    assert float(res.sigma_w) == pytest.approx(1.0, rel=1e-12)
    assert float(res.spread) == pytest.approx(0.0, abs=1e-12)
    spreads = [row[3] for row in res.scan]
    assert spreads == sorted(spreads)            # wider as σb (hence q*) grows
    g = isometry_settings("tanh", depth=100, weights="gaussian", sigma_b_values=[0.0, 0.3])
    assert float(g.spread) == pytest.approx(100.0, rel=1e-12)   # Gaussian W adds L


def test_isometry_settings_relu_spread_is_depth():
    res = isometry_settings("relu", depth=10, weights="orthogonal", sigma_b_values=[0.0, 0.1])
    assert float(res.sigma_w) == pytest.approx(math.sqrt(2), rel=1e-14)
    assert float(res.spread) == pytest.approx(10.0, rel=1e-12)


def test_isometry_settings_selu_interior_minimum_vs_mpmath():
    """selu's spread on the critical line has an interior minimum in σb (found by the scan,
    refined in log σb); at the returned point χ1 = 1 and the spread L(μ2/μ1² − 1) agree with
    30-digit mpmath at an mpmath q*."""
    L = 50
    res = isometry_settings("selu", depth=L, weights="orthogonal")
    assert 0 < res.sigma_b < 0.1
    spreads = [row[3] for row in res.scan]
    assert float(res.spread) <= min(spreads)
    mpmath.mp.dps = 30
    lam = mpmath.mpf("1.0507009873554804934193349852946")
    alpha = mpmath.mpf("1.6732632423543772848170429916717")
    sw, sb = mpmath.mpf(float(res.sigma_w)), mpmath.mpf(res.sigma_b)

    def mean(f, q):
        s = mpmath.sqrt(q)
        return mpmath.quad(lambda z: f(s * z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
    selu = lambda x: lam * x if x > 0 else lam * alpha * (mpmath.exp(x) - 1)
    dselu = lambda x: lam if x > 0 else lam * alpha * mpmath.exp(x)
    q = mpmath.findroot(lambda q: sw ** 2 * mean(lambda x: selu(x) ** 2, q) + sb ** 2 - q, 0.05)
    mu1 = sw ** 2 * mean(lambda x: dselu(x) ** 2, q)
    mu2 = sw ** 4 * mean(lambda x: dselu(x) ** 4, q)
    assert float(mu1) == pytest.approx(1.0, abs=1e-9)
    assert float(res.spread) == pytest.approx(float(L * (mu2 / mu1 ** 2 - 1)), rel=1e-9)


def test_deep_chaotic_net_overflow_is_named_and_shape_stays_finite():
    # χ1 ≈ 1.05 over 20,000 layers: m1 = e^~1000 is beyond a double (an OverflowError before)
    s = jacobian_spectrum("tanh", 1.5, 0.3, depth=20000, weights="orthogonal")
    assert s.log_m1 > 709
    from vanishcalc.errors import NonFiniteError
    with pytest.raises(NonFiniteError, match="log_m1"):
        s.m1
    with pytest.raises(NonFiniteError, match="normalized_moment"):
        s.moments(2)
    assert math.isfinite(float(s.spread)) and float(s.spread) > 0
    assert float(s.normalized_moment(2)) == pytest.approx(1 + float(s.spread), rel=1e-12)


@pytest.mark.parametrize("L", [2, 4, 10, 50])
def test_relu_orthogonal_edge_closed_form(L):
    """relu, σw = √2, orthogonal: d̃ ∈ {0, 2} with P = 1/2, ψ_D(x) = x/(1 − 2x), so §3's
    orthogonal equation reads 1/s = x(1 − x)^{L−1}; its maximum at x = 1/L gives
    λ_max = L^L/(L − 1)^{L−1} (derived by hand, notes/isometry.md §3)."""
    s = jacobian_spectrum("relu", math.sqrt(2), 0.0, depth=L, weights="orthogonal")
    truth = math.exp(L * math.log(L) - (L - 1) * math.log(L - 1))
    assert s.edge() == pytest.approx(truth * float(s.m1), rel=1e-10)


def test_d_law_cdf_hardtanh_atoms_and_tanh_vs_normal_cdf():
    s = jacobian_spectrum("hardtanh", 1.2, 0.1, depth=3)
    p_out = math.erfc(1 / math.sqrt(2 * float(s.q_star)))        # P(|h| > 1): φ' = 0
    assert s.d_law.cdf([0.0, 0.5, 1.0]) == pytest.approx([p_out, p_out, 1.0], abs=1e-15)
    # tanh: P(tanh'(h) ≤ t) = P(|h| ≥ artanh √(1 − t)) = erfc(artanh(√(1 − t))/√(2q))
    s = jacobian_spectrum("tanh", 1.2, 0.1, depth=3)
    q = float(s.q_star)
    for t in (0.3, 0.7, 0.95):
        truth = math.erfc(math.atanh(math.sqrt(1 - t)) / math.sqrt(2 * q))
        assert float(s.d_law.cdf(t)) == pytest.approx(truth, abs=3e-4)   # node resolution
