"""init_spec against the formulas of torch.nn.init / Keras VarianceScaling / jax variance_scaling
and against the std of weights the real libraries draw with the numbers it gives."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from vanishcalc import VanishcalcError, init_spec
from vanishcalc.bridges.init_spec import TRUNCATED_NORMAL_STD


def _mc_tol(n):
    """Six standard errors of a sample std (normal: rel. s.e. 1/√(2n); uniform/truncated: less)."""
    return 6 / math.sqrt(2 * n)


def test_truncated_normal_constant_matches_mpmath_and_keras():
    mpmath.mp.dps = 40
    a = mpmath.mpf(2)
    mass = mpmath.erf(a / mpmath.sqrt(2))
    var = 1 - 2 * a * mpmath.npdf(a) / mass
    assert abs(TRUNCATED_NORMAL_STD - float(mpmath.sqrt(var))) < 1e-16
    assert abs(TRUNCATED_NORMAL_STD - 0.87962566103423978) < 1e-16     # Keras#8048, jax


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_formulas(mode):
    s = init_spec("relu", 300, 100, mode=mode)
    fan = {"fan_in": 300, "fan_out": 100, "fan_avg": 200}[mode]
    assert s.std == pytest.approx(math.sqrt(2 / fan), rel=1e-15)       # kaiming: gain/√fan
    assert s.limit == pytest.approx(math.sqrt(3 * 2 / fan), rel=1e-15)  # kaiming_uniform bound
    assert s.trunc_std == pytest.approx(math.sqrt(2 / fan) / 0.87962566103423978, rel=1e-15)
    assert s.scale == pytest.approx(2.0, rel=1e-15)                     # VarianceScaling scale
    # exp(-x²): gain 5^(1/4) exactly (E[exp(-2z²)] = 1/√5)
    g = init_spec("exp(-x**2)", 64, mode=mode)
    assert g.std == pytest.approx(5 ** 0.25 / 8, rel=1e-15)


def test_critical_uses_edge_of_chaos():
    s = init_spec("tanh", 100, sigma_b=0.3)
    assert s.method == "critical" and s.sigma_b == 0.3
    # χ1 = σw² E[tanh'(√q* z)²] = 1 and q* = σw² E[tanh(√q* z)²] + σb², by mpmath quadrature
    sw, q = float(s.sigma_w), float(s.q_star)
    mpmath.mp.dps = 30
    e = lambda f: mpmath.quad(lambda z: f(z) * mpmath.npdf(z), [-mpmath.inf, 0, mpmath.inf])
    chi = sw ** 2 * e(lambda z: mpmath.sech(mpmath.sqrt(q) * z) ** 4)
    qn = sw ** 2 * e(lambda z: mpmath.tanh(mpmath.sqrt(q) * z) ** 2) + 0.09
    assert abs(chi - 1) < 1e-10 and abs(qn - q) < 1e-10
    assert s.std == pytest.approx(sw / 10, rel=1e-15)


@pytest.mark.parametrize("kwargs, fix", [
    (dict(mode="fan_geo"), "fan_avg"), (dict(distribution="untruncated_normal"), "'normal' here"),
    (dict(method="gain", sigma_b=0.1), "critical"), (dict(distribution="orthogonal", mode="fan_out"), "fan_in"),
    (dict(method="edge"), "critical"), (dict(method="critical", convention="std"), "gain"),
])
def test_bad_input_names_the_fix(kwargs, fix):
    with pytest.raises(VanishcalcError, match=fix):
        init_spec("tanh", 10, **kwargs)


@pytest.mark.parametrize("fan", [0, -3, 2.5, True, "8"])
def test_bad_fan(fan):
    with pytest.raises(VanishcalcError, match="fan_in"):
        init_spec("tanh", fan)


def test_code_lines():
    s = init_spec("tanh", 128, sigma_b=0.05)
    assert "normal_(layer.bias, std=0.05)" in s.code("torch")
    assert "untruncated_normal" in s.code("keras")   # Keras's 'normal' means truncated
    assert "variance_scaling" in s.code("jax")
    with pytest.raises(VanishcalcError, match="torch, keras or jax"):
        s.code("mxnet")


# ---- sampled weights from the real libraries ------------------------------------------------

FAN_IN, FAN_OUT = 400, 500


@pytest.mark.parametrize("spec", ["relu", "exp(-x**2)", "tanh"])
def test_torch_samples(spec):
    torch = pytest.importorskip("torch", reason="torch is an optional extra (vanishcalc[torch])")
    gen = torch.manual_seed(0)
    n = FAN_IN * FAN_OUT
    w = torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)       # torch: (out, in)
    for dist, draw in [
        ("normal", lambda s: torch.nn.init.normal_(w, std=s.std, generator=gen)),
        ("uniform", lambda s: torch.nn.init.uniform_(w, -s.limit, s.limit, generator=gen)),
        ("truncated_normal", lambda s: torch.nn.init.trunc_normal_(
            w, std=s.trunc_std, a=-2 * s.trunc_std, b=2 * s.trunc_std, generator=gen)),
    ]:
        s = init_spec(spec, FAN_IN, FAN_OUT, distribution=dist)
        draw(s)
        assert float(w.std()) == pytest.approx(s.std, rel=_mc_tol(n)), dist
    # torch's own kaiming/xavier with its gains give our std for the φ it knows exactly
    torch.nn.init.kaiming_uniform_(w, nonlinearity="relu", generator=gen)
    assert float(w.std()) == pytest.approx(init_spec("relu", FAN_IN).std, rel=_mc_tol(n))
    torch.nn.init.xavier_normal_(w, generator=gen)
    assert float(w.std()) == pytest.approx(
        init_spec("linear", FAN_IN, FAN_OUT, mode="fan_avg").std, rel=_mc_tol(n))
    for shape in [(FAN_OUT, FAN_IN), (FAN_IN // 2, FAN_IN)]:       # tall and wide
        w2 = torch.empty(*shape, dtype=torch.float64)
        s = init_spec(spec, shape[1], shape[0], distribution="orthogonal")
        torch.nn.init.orthogonal_(w2, gain=s.orthogonal_gain, generator=gen)
        assert float(w2.pow(2).mean().sqrt()) == pytest.approx(s.std, rel=1e-10)
        x = torch.randn(shape[1], 2000, dtype=torch.float64, generator=gen)
        # each output unit's second moment = σw² × the input's (what the gain promises)
        ratio = float((w2 @ x).pow(2).mean() / x.pow(2).mean())
        assert ratio == pytest.approx(float(s.sigma_w) ** 2, rel=0.05)


@pytest.mark.parametrize("dist", ["normal", "truncated_normal", "uniform"])
def test_keras_samples(dist):
    keras = pytest.importorskip("keras", reason="keras 3 is an optional extra (vanishcalc[keras])")
    s = init_spec("exp(-x**2)", FAN_IN, FAN_OUT, mode="fan_avg", distribution=dist)
    kd = {"normal": "untruncated_normal"}.get(dist, dist)
    init = keras.initializers.VarianceScaling(scale=s.scale, mode=s.mode, distribution=kd, seed=1)
    w = np.asarray(init((FAN_IN, FAN_OUT), dtype="float32"))        # keras: (in, out)
    assert float(w.std()) == pytest.approx(s.std, rel=_mc_tol(w.size))


@pytest.mark.parametrize("dist", ["normal", "truncated_normal", "uniform"])
def test_jax_samples(dist):
    jax = pytest.importorskip("jax", reason="jax is an optional extra (vanishcalc[jax])")
    s = init_spec("tanh", FAN_IN, FAN_OUT, mode="fan_out", distribution=dist)
    init = jax.nn.initializers.variance_scaling(s.scale, s.mode, dist)
    w = np.asarray(init(jax.random.PRNGKey(0), (FAN_IN, FAN_OUT)))
    assert float(w.std()) == pytest.approx(s.std, rel=_mc_tol(w.size))
