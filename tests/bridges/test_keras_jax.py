"""vanishcalc.keras (VarianceScaling arguments, walker) and vanishcalc.jax (initializers)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from vanishcalc import VanishcalcError, VanishcalcWarning, init_spec


def test_keras_without_backend_names_the_fix():
    code = ("import os; os.environ.pop('KERAS_BACKEND', None); import sys\n"
            "sys.modules['keras'] = None\n"
            "import vanishcalc.keras as vk\n"
            "print(vk.variance_scaling_args('tanh')['distribution'])\n"
            "try:\n    vk.initializer('tanh')\nexcept ImportError as e:\n    print('MISSING', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "untruncated_normal"
    assert "KERAS_BACKEND=jax" in out.stdout


def test_variance_scaling_args():
    from vanishcalc.keras import variance_scaling_args
    a = variance_scaling_args("exp(-x**2)", mode="fan_avg", distribution="truncated_normal")
    assert a == {"scale": pytest.approx(math.sqrt(5), rel=1e-15), "mode": "fan_avg",
                 "distribution": "truncated_normal"}
    with pytest.raises(VanishcalcError, match="Orthogonal"):
        variance_scaling_args("tanh", distribution="orthogonal")


def _keras_mlp(keras, depth, width, act, d_in=32):
    layers = [keras.Input((d_in,))]
    layers += [keras.layers.Dense(width, activation=act) for _ in range(depth)]
    layers += [keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential(layers)


def test_keras_initializer_and_walker():
    keras = pytest.importorskip("keras", reason="keras 3 is an optional extra (vanishcalc[keras])")
    from vanishcalc.keras import init_, initializer
    w = np.asarray(initializer("tanh", seed=3)((400, 500)))
    assert float(w.std()) == pytest.approx(init_spec("tanh", 400).std, rel=6 / math.sqrt(4e5))
    model = _keras_mlp(keras, 20, 512, "tanh")
    report = init_(model, seed=0)
    assert [r.phi for r in report.layers] == ["linear"] + ["tanh"] * 20
    x = np.random.default_rng(0).normal(size=(256, 32)).astype("float32")
    h = x
    for layer in model.layers[:-1]:
        pre = h @ np.asarray(layer.kernel) + np.asarray(layer.bias)
        h = np.tanh(pre)
    assert float((pre ** 2).mean()) == pytest.approx(1.0, rel=0.15)   # q = 1 kept
    for r, layer in zip(report.layers, model.layers):
        assert float(np.asarray(layer.kernel).std()) == pytest.approx(r.std, rel=0.1)


def test_keras_functional_norm_and_critical():
    keras = pytest.importorskip("keras", reason="keras 3 is an optional extra (vanishcalc[keras])")
    import vanishcalc
    from vanishcalc.keras import init_
    L = keras.layers
    inp = keras.Input((8, 8, 3))
    h = L.Conv2D(16, 3)(inp)
    h = L.BatchNormalization()(h)
    h = L.Activation("tanh")(h)
    h = L.Flatten()(h)
    out = L.Dense(4)(h)
    model = keras.Model(inp, out)
    report = init_(model, norm={"rate": 1.05})
    assert [r.fan_in for r in report.layers] == [27, 6 * 6 * 16]
    a = vanishcalc.bn_affine("tanh", rate=1.05)
    assert report.norms[0].gamma == pytest.approx(a.gamma)
    assert float(np.asarray(model.layers[2].gamma)[0]) == pytest.approx(a.gamma, rel=1e-6)
    mlp = _keras_mlp(keras, 3, 16, "sigmoid")
    rep = init_(mlp, method="critical", sigma_b=0.1)
    assert rep.layers[1].sigma_w == pytest.approx(float(vanishcalc.critical_sigma_w("sigmoid", 0.1).sigma_w))


def test_keras_walker_refuses_unknown():
    keras = pytest.importorskip("keras", reason="keras 3 is an optional extra (vanishcalc[keras])")
    from vanishcalc.keras import init_
    L = keras.layers
    model = keras.Sequential([keras.Input((4,)), L.Dense(4, activation="hard_shrink"),
                              L.Dense(4), L.Embedding(3, 4)])
    with pytest.raises(VanishcalcError, match=r"hard_shrink.*Embedding|activation.*Embedding"):
        init_(model)
    with pytest.warns(VanishcalcWarning, match="cannot place 2"):
        init_(model, on_unknown="warn")
    with pytest.warns(VanishcalcWarning, match="cannot place 1"):     # only the Embedding left
        rep = init_(model, spec={next(l.name for l in model.layers): "tanh"}, on_unknown="warn")
    assert rep.layers[1].phi == "tanh"


@pytest.mark.parametrize("dist", ["normal", "truncated_normal", "uniform", "orthogonal"])
def test_jax_initializer(dist):
    jax = pytest.importorskip("jax", reason="jax is an optional extra (vanishcalc[jax])")
    from vanishcalc.jax import bias_initializer, initializer
    s = init_spec("exp(-x**2)", 400, 500 if dist != "orthogonal" else 300, distribution=dist)
    w = np.asarray(initializer("exp(-x**2)", distribution=dist)(jax.random.PRNGKey(0), (400, s.fan_out)))
    tol = 1e-5 if dist == "orthogonal" else 6 / math.sqrt(2 * w.size)
    assert float(np.sqrt((w ** 2).mean())) == pytest.approx(s.std, rel=tol)
    b = np.asarray(bias_initializer(sigma_b=0.3)(jax.random.PRNGKey(1), (20000,)))
    assert float(b.std()) == pytest.approx(0.3, rel=0.03)
    assert not np.asarray(bias_initializer()(jax.random.PRNGKey(1), (3,))).any()


def test_flax_dense_uses_it():
    pytest.importorskip("jax", reason="jax is an optional extra (vanishcalc[jax])")
    flax = pytest.importorskip("flax", reason="flax is an optional extra (vanishcalc[jax])")
    import jax
    from vanishcalc.jax import bias_initializer, initializer
    layer = flax.linen.Dense(300, kernel_init=initializer("tanh", method="critical", sigma_b=0.2),
                             bias_init=bias_initializer(sigma_b=0.2))
    params = layer.init(jax.random.PRNGKey(0), np.zeros((1, 400), "float32"))["params"]
    s = init_spec("tanh", 400, sigma_b=0.2)
    assert float(np.asarray(params["kernel"]).std()) == pytest.approx(s.std, rel=0.02)
