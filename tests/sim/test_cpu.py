"""CPU simulator (``vanishcalc/sim/cpu/``, ``compile.py``, ``api.py``) against independent references.

References: φ, φ' written here from their definitions; the explicit-weight, back-propagating
numpy simulator ``tests/reference/naive_sim.py``; closed-form mean-field maps (relu:
arc-cosine kernel, Cho & Saul 2009; erf: arcsin kernel, Williams 1997; exp(-x²): Gaussian
integrals); Gauss–Hermite quadrature for tanh.  Sizes are small: each test takes seconds.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tests.reference.naive_sim import PHI, naive_simulate
from vanishcalc.errors import VanishcalcError, VanishcalcWarning
from vanishcalc.sim.api import simulate
from vanishcalc.sim.compile import cpu_functions, dphi_max, python_source


def _exec(spec):
    ns = {}
    exec(python_source(spec), ns)
    return ns["phi"], ns["dphi"]


XS = [-800.0, -30.0, -2.5, -1.0, -0.3, 0.0, 0.7, 1.0, 3.0, 30.0, 800.0]


# ---------------------------------------------------------------- compile.py

@pytest.mark.parametrize("spec, phi, dphi", [
    ("relu", lambda x: max(x, 0.0), lambda x: 1.0 if x >= 0 else 0.0),
    ("tanh", math.tanh, lambda x: 1 - math.tanh(x) ** 2),
    ("softplus", lambda x: max(x, 0) + math.log1p(math.exp(-abs(x))),
     lambda x: 1 / (1 + math.exp(-x)) if x > -700 else 0.0),
    ("sigmoid", lambda x: 1 / (1 + math.exp(-x)) if x > -700 else 0.0,
     lambda x: math.exp(-abs(x)) / (1 + math.exp(-abs(x))) ** 2),
    ("hardtanh", lambda x: min(max(x, -1.0), 1.0), lambda x: 1.0 if -1 <= x < 1 else 0.0),
    ("exp(-x**2)", lambda x: math.exp(-x * x), lambda x: -2 * x * math.exp(-x * x)),
    ("erf", math.erf, lambda x: 2 / math.sqrt(math.pi) * math.exp(-x * x)),
    ("selu", lambda x: 1.0507009873554805 * (x if x > 0 else 1.6732632423543772 * math.expm1(x)),
     lambda x: 1.0507009873554805 * (1.0 if x >= 0 else 1.6732632423543772 * math.exp(x))),
])
def test_python_source_values_vs_definition(spec, phi, dphi):
    """The printed phi/dphi (plain Python and njit) equal φ, φ' written from the definition,
    including at |x| = 800 where naive softplus/sigmoid' overflow."""
    p, d = _exec(spec)
    jp, jd = cpu_functions(spec)
    for x in XS:
        if spec in ("tanh", "erf", "exp(-x**2)", "selu") or abs(x) < 700:
            for f in (p, jp):
                assert f(x) == pytest.approx(phi(x), rel=1e-13, abs=1e-15)
            for f in (d, jd):
                assert f(x) == pytest.approx(dphi(x), rel=1e-12, abs=1e-15)
        else:
            for f in (jp,):
                assert f(x) == pytest.approx(phi(x), rel=1e-13, abs=1e-15)
            assert jd(x) == pytest.approx(dphi(x), rel=1e-12, abs=1e-15)


def test_python_source_text_uses_only_math():
    """The text is plain Python over ``math``: no SymPy objects (Heaviside, Piecewise)."""
    for spec in ("relu", "gelu", "mish", "selu", "hardswish", "leaky_relu"):
        src = "\n".join(ln for ln in python_source(spec).splitlines() if not ln.startswith("#"))
        assert "Heaviside" not in src and "Piecewise" not in src and "Dirac" not in src
        assert "def phi(x):" in src and "def dphi(x):" in src
        imports = [ln for ln in src.splitlines() if ln.startswith(("import", "from"))]
        assert imports == ["import math"]


def test_python_source_nan_propagates_through_constant_pieces():
    """NaN in → NaN out, also where the active piece is a constant (hardtanh, relu)."""
    for spec in ("hardtanh", "relu"):
        p, d = _exec(spec)
        jp, jd = cpu_functions(spec)
        for f in (p, d, jp, jd):
            assert math.isnan(f(float("nan")))


@pytest.mark.parametrize("spec, exact", [
    ("tanh", 1.0), ("relu", 1.0), ("sigmoid", 0.25), ("erf", 2 / math.sqrt(math.pi)),
    ("exp(-x**2)", math.sqrt(2) * math.exp(-0.5)),   # |−2x e^{−x²}| peaks at x = 1/√2
])
def test_dphi_max_vs_closed_form(spec, exact):
    assert dphi_max(spec) == pytest.approx(exact, rel=1e-6)


def test_normal_generator_vs_gaussian_moments():
    """The in-kernel ziggurat: mean, variance, kurtosis and tail mass of N(0, 1)."""
    from scipy import stats

    from vanishcalc.sim.cpu.rng import fill_normal, seed_states
    st = seed_states(7, 1)[0]
    z = np.empty(1_000_000)
    fill_normal(st, z)
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z ** 4) - 3) < 5 * math.sqrt(96 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-4
    tail = np.mean(np.abs(z) > 3.5)
    p = 2 * stats.norm.sf(3.5)
    assert abs(tail - p) < 5 * math.sqrt(p / n)


# ---------------------------------------------------------------- simulate: contract

def test_simulate_seed_reproducible_identical_arrays():
    """Same seed → identical arrays (also with one thread); another seed → different."""
    import numba
    kw = dict(depth=6, width=24, n_nets=5, seed=11)
    a = simulate("tanh", 1.2, 0.1, **kw)
    b = simulate("tanh", 1.2, 0.1, **kw)
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        c = simulate("tanh", 1.2, 0.1, **kw)
    finally:
        numba.set_num_threads(old)
    for k in ("q", "c", "grad", "sat"):
        np.testing.assert_array_equal(a.raw[k], b.raw[k])
        np.testing.assert_array_equal(a.raw[k], c.raw[k])
    d = simulate("tanh", 1.2, 0.1, **dict(kw, seed=12))
    assert not np.array_equal(a.raw["q"], d.raw["q"])


def test_simulate_layer0_exact_moments_definition():
    sim = simulate("relu", 1.0, depth=2, width=33, n_nets=7, q0=2.5, c0=-0.3, seed=3)
    np.testing.assert_allclose(sim.raw["q"][:, 0], 2.5, rtol=1e-13)
    np.testing.assert_allclose(sim.raw["c"][:, 0], -0.3, atol=1e-13)
    np.testing.assert_array_equal(sim.grad[-1], 1.0)
    assert sim.q.shape == (3,) and sim.raw["q"].shape == (7, 3)
    d = sim.to_dict()
    assert d["params"]["width"] == 33 and len(d["q"]) == 3


def test_simulate_single_net_se_zero_definition():
    sim = simulate("tanh", 1.0, depth=2, width=8, n_nets=1)
    assert np.all(sim.q_se == 0) and np.all(np.isfinite(sim.q))


@pytest.mark.parametrize("kwargs, word", [
    (dict(width=0), "width"), (dict(depth=-1), "depth"), (dict(n_nets=0), "n_nets"),
    (dict(width=2.5), "width"), (dict(sigma_w=float("nan")), "sigma_w"),
    (dict(sigma_w=-1.0), "sigma_w"), (dict(sigma_b=float("inf")), "sigma_b"),
    (dict(q0=0.0), "q0"), (dict(c0=1.5), "c0"), (dict(weights="uniform"), "weights"),
    (dict(backend="tpu"), "backend"), (dict(dtype="float16"), "dtype"),
    (dict(seed=-1), "seed"), (dict(width=1, c0=0.5), "width"),
])
def test_simulate_bad_input_raises_valueerror(kwargs, word):
    args = dict(sigma_w=1.0, depth=2, width=4, n_nets=2)
    args.update(kwargs)
    with pytest.raises(VanishcalcError, match=word) as info:
        simulate("tanh", **args)
    assert isinstance(info.value, ValueError)


def test_simulate_nonfinite_warns_first_layer():
    """exp(x) with σw = 30 overflows within a few layers: recorded per layer and warned."""
    with pytest.warns(VanishcalcWarning, match="overflowed or became NaN at layer"):
        sim = simulate("exp(x)", 30.0, depth=12, width=16, n_nets=3, seed=0)
    first = sim.first_nonfinite_layer
    assert first is not None and 1 <= first <= 12
    assert np.all(sim.nonfinite[first:]) and not np.any(sim.nonfinite[:first])
    assert np.all(sim.raw["nonfinite"][:, first:][sim.raw["nonfinite"][:, first]])


def test_simulate_float32_close_to_float64():
    a = simulate("tanh", 1.0, depth=5, width=64, n_nets=8, dtype="float64")
    b = simulate("tanh", 1.0, depth=5, width=64, n_nets=8, dtype="float32")
    np.testing.assert_allclose(a.q, b.q, rtol=1e-4)


def test_simulate_import_vanishcalc_does_not_import_numba():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, vanishcalc; vanishcalc.Simulation; "
                          "vanishcalc.simulate; vanishcalc.check; print('numba' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- simulate vs naive explicit weights

def _z(a_mean, a_se, b_mean, b_se):
    return (a_mean - b_mean) / np.sqrt(a_se ** 2 + b_se ** 2)


def _mse(x):
    """Mean and standard error over nets, leaving out dead nets (relu: 0/0 gradients)."""
    n = np.sum(np.isfinite(x), axis=0)
    return np.nanmean(x, axis=0), np.nanstd(x, axis=0, ddof=1) / np.sqrt(n)


@pytest.mark.parametrize("spec, sigma_w, sigma_b, orthogonal", [
    ("relu", 1.5, 0.2, False), ("tanh", 1.3, 0.3, False), ("exp(-x**2)", 1.5, 0.1, False),
    ("relu", 1.2, 0.1, True), ("tanh", 1.0, 0.2, True),
])
def test_simulate_distribution_vs_naive_explicit_weights(spec, sigma_w, sigma_b, orthogonal, rng):
    """Exact conditional sampling of W X has the law of explicit weights at finite width:
    q, c and the gradient (forward mode here, back-propagation there) agree in standard
    errors at width 8, where finite-width effects are large (20 000 nets: ~0.5 s)."""
    depth, width, n = 3, 8, 20000
    ours = simulate(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=n, seed=6,
                    weights="orthogonal" if orthogonal else "gaussian")
    phi, dphi = PHI[spec]
    ref = naive_simulate(phi, dphi, sigma_w, sigma_b, depth=depth, width=width, n_nets=n,
                         orthogonal=orthogonal, rng=rng)
    for k, ours_mean, ours_se in (("q", ours.q, ours.q_se), ("c", ours.c, ours.c_se),
                                  ("grad_fwd", ours.grad, ours.grad_se),
                                  ("grad", ours.grad, ours.grad_se)):
        m, se = _mse(ref[k])
        if k == "grad":
            # Forward mode vs back-propagation: equal at the mean-field level, but at finite
            # width (h_i, t_i) are correlated through the shared row of W (Gaussian: via
            # a·u ≠ 0; Haar: a row has unit norm), an O(1/N) bias per layer (≈ 4 % per
            # layer for tanh at N = 8).  Allowed as in check(): (L − l)/N relative.
            se = np.sqrt(se ** 2 + ((depth - np.arange(depth + 1)) / width * m) ** 2)
        # q, c: layers 1..L (layer 0 is exact on both sides); grad: 0..L−1 (grad_L = 1).
        lay = slice(1, depth + 1) if k in ("q", "c") else slice(0, depth)
        z = _z(ours_mean[lay], ours_se[lay], m[lay], se[lay])
        assert z.shape == (depth,) and np.all(np.abs(z) < 4.5), (k, z)


# ---------------------------------------------------------------- simulate vs closed-form maps

def _relu_maps(q, c, sw2, sb2):
    """Arc-cosine kernel (Cho & Saul 2009): E[relu(u)relu(v)] = q/(2π)(sin θ + (π − θ) cos θ)."""
    th = math.acos(max(-1.0, min(1.0, c)))
    qn = sw2 * q / 2 + sb2
    e12 = q / (2 * math.pi) * (math.sin(th) + (math.pi - th) * math.cos(th))
    return qn, (sw2 * e12 + sb2) / qn, sw2 / 2


def _erf_maps(q, c, sw2, sb2):
    """Arcsin kernel (Williams 1997): E[erf(u)erf(v)] = (2/π) asin(2q12/√((1+2q11)(1+2q22)))."""
    e11 = 2 / math.pi * math.asin(2 * q / (1 + 2 * q))
    e12 = 2 / math.pi * math.asin(2 * c * q / (1 + 2 * q))
    qn = sw2 * e11 + sb2
    chi = sw2 * 4 / math.pi / math.sqrt(1 + 4 * q)       # E[(2/√π e^{−u²})²]
    return qn, (sw2 * e12 + sb2) / qn, chi


def _gauss_maps(q, c, sw2, sb2):
    """exp(−x²): E[e^{−u²−v²}] = det(I + 2Σ)^{−1/2}; E[φ'(u)²] = 4q(1 + 4q)^{−3/2}."""
    e11 = 1 / math.sqrt(1 + 4 * q)
    e12 = 1 / math.sqrt((1 + 2 * q) ** 2 - 4 * (c * q) ** 2)
    qn = sw2 * e11 + sb2
    return qn, (sw2 * e12 + sb2) / qn, sw2 * 4 * q * (1 + 4 * q) ** -1.5


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(80)
_GH_W = _GH_W / _GH_W.sum()


def _tanh_maps(q, c, sw2, sb2):
    """Gauss–Hermite (80 × 80 nodes) for tanh."""
    s = math.sqrt(q)
    u = s * _GH_X
    e11 = np.sum(_GH_W * np.tanh(u) ** 2)
    chi = sw2 * np.sum(_GH_W * (1 - np.tanh(u) ** 2) ** 2)
    z1, z2 = np.meshgrid(_GH_X, _GH_X, indexing="ij")
    w = np.outer(_GH_W, _GH_W)
    v = s * (c * z1 + math.sqrt(max(0.0, 1 - c * c)) * z2)
    e12 = np.sum(w * np.tanh(s * z1) * np.tanh(v))
    qn = sw2 * e11 + sb2
    return qn, (sw2 * e12 + sb2) / qn, chi


MAPS = {"relu": _relu_maps, "erf": _erf_maps, "exp(-x**2)": _gauss_maps, "tanh": _tanh_maps}


def _theory(maps, depth, sigma_w, sigma_b, q0=1.0, c0=0.5):
    q, c, chi = [q0], [c0], []
    for _ in range(depth):
        qn, cn, x = maps(q[-1], c[-1], sigma_w ** 2, sigma_b ** 2)
        chi.append(x)
        q.append(qn)
        c.append(cn)
    grad = np.ones(depth + 1)
    grad[:-1] = np.cumprod(np.array(chi)[::-1])[::-1]
    return np.array(q), np.array(c), grad


@pytest.mark.parametrize("spec, sigma_w, sigma_b, weights", [
    ("relu", math.sqrt(2), 0.0, "gaussian"),          # critical (χ1 = 1)
    ("relu", 1.2, 0.3, "gaussian"),                   # ordered
    ("relu", math.sqrt(2), 0.0, "orthogonal"),        # same q-map for orthogonal weights
    ("tanh", 1.0, 0.0, "gaussian"),                   # critical point (σb = 0, σw = 1)
    ("tanh", 2.5, 0.3, "gaussian"),                   # chaotic
    ("tanh", 1.5, 0.1, "orthogonal"),
    ("erf", 1.3, 0.05, "gaussian"),
    ("erf", 0.8, 0.0, "orthogonal"),
    ("exp(-x**2)", 1.5, 0.1, "gaussian"),
    ("exp(-x**2)", 2.0, 0.0, "orthogonal"),
])
def test_simulate_vs_closed_form_maps(spec, sigma_w, sigma_b, weights):
    """q_l, c_l, grad_l of a wide ensemble match the mean-field maps within
    4.5·√(se² + allowance²), allowance = l/N (relative) as in notes/simulation.md."""
    depth, width, n = 12, 512, 48
    sim = simulate(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=n, seed=2,
                   weights=weights)
    q, c, grad = _theory(MAPS[spec], depth, sigma_w, sigma_b)
    lay = np.arange(depth + 1)
    checks = (("q", sim.q, sim.q_se, q, lay / width * q),
              ("c", sim.c, sim.c_se, c, lay / width),
              ("grad", sim.grad, sim.grad_se, grad, (depth - lay) / width * grad))
    for name, m, se, th, allow in checks:
        z = (m - th) / np.sqrt(se ** 2 + allow ** 2 + 1e-300)
        assert np.all(np.abs(z) < 4.5), (name, z)
    assert np.all(sim.saturation >= 0) and np.all(sim.saturation <= 1)


def test_simulate_saturation_tanh_large_sigma_vs_gaussian_tail():
    """tanh at σw = 4, σb = 0: q* is large and the saturated fraction is
    P(|tanh'(√q z)| < 1e-3) = P(|z| > atanh(√(1 − 1e-3))/√q), from the q of the simulation."""
    from scipy.stats import norm
    sim = simulate("tanh", 4.0, 0.0, depth=20, width=512, n_nets=16, seed=4)
    x0 = math.atanh(math.sqrt(1 - 1e-3))
    expected = 2 * norm.sf(x0 / np.sqrt(sim.q[-1]))
    assert sim.saturation[-1] == pytest.approx(expected, abs=0.02)
    assert sim.saturation[-1] > 0.2


# ---------------------------------------------------------------- no silent garbage (issue 11.3)

@pytest.mark.parametrize("q0", [1e200, 1e-200])
def test_simulate_relu_homogeneous_in_q0(q0):
    """relu is homogeneous: scaling the inputs by √q0 scales every h and q by q0 and leaves c
    and grad unchanged.  c used to be all 0 at q0 = 1e200 (s11·s22 overflowed) and NaN with a
    'pre-activations are all zero' warning at q0 = 1e-200 (it underflowed)."""
    kw = dict(depth=5, width=64, n_nets=4, seed=2)
    ref = simulate("relu", 1.4, 0.0, q0=1.0, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sim = simulate("relu", 1.4, 0.0, q0=q0, **kw)
    np.testing.assert_allclose(sim.c, ref.c, rtol=1e-12)
    np.testing.assert_allclose(sim.q, q0 * ref.q, rtol=1e-12)
    np.testing.assert_allclose(sim.grad, ref.grad, rtol=1e-12)


def test_simulate_saturated_tanh_gradient_flagged_not_zero():
    """tanh at q0 = 1e300: φ' underflows to 0 on every unit, so the gradient is below float64.
    It used to come back as [0, nan, …] with first_nonfinite_layer = None and no warning."""
    with pytest.warns(VanishcalcWarning, match="grad"):
        sim = simulate("tanh", 1.5, 0.0, depth=5, width=32, n_nets=3, q0=1e300)
    assert sim.first_invalid_layer["grad"] == 0
    assert np.all(np.isnan(sim.grad[:-1]))          # never a silent 0


def test_simulate_vanishing_tanh_log_grad_finite_vs_theory():
    """σw = 1e-3, depth 400: grad per layer ≈ σw² E[tanh'²] → 1e-6 once q is tiny, so grad[l]
    ≈ 1e-6^(400−l) leaves float64 below layer ~350.  The gradient used to be NaN from layer 54
    with no warning; now the bad layers are flagged and log_grad (computed from per-layer
    renormalized tangents) stays finite and matches Σ log χ = (400 − l)·log 1e-6 (q ≈ 0 from
    layer 1 on, where E[tanh'(0)²] = 1)."""
    with pytest.warns(VanishcalcWarning, match="grad"):
        sim = simulate("tanh", 1e-3, 0.0, depth=400, width=64, n_nets=4, seed=1)
    assert sim.first_invalid_layer["grad"] == 0 and np.isnan(sim.grad[54])
    assert np.all(np.isfinite(sim.log_grad[1:]))
    for l in (54, 200, 399):
        assert sim.log_grad[l] == pytest.approx((400 - l) * math.log(1e-6), rel=1e-2)
    # q underflows too (q_l ≈ 1e-6^l): flagged per quantity, with c
    assert sim.first_invalid_layer["q"] is not None and sim.first_invalid_layer["q"] <= 52
    assert sim.first_invalid_layer["c"] == sim.first_invalid_layer["q"]
    assert np.isnan(sim.q[-1])


def test_simulate_dead_relu_nets_are_true_zeros_not_flagged():
    """A relu net whose units all die has a gradient that is exactly 0 — a true value, not
    an underflow: it must not be flagged as 'outside float64' (tanh's would be)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = simulate("relu", 1.2, 0.1, depth=3, width=2, n_nets=2000, seed=6, c0=1.0)
    dead = sim.raw["grad"][:, 0] == 0.0
    assert dead.any()                               # some nets died at width 2
    assert sim.first_invalid_layer["grad"] is None
