"""Keras 3 bridge: VarianceScaling arguments / initializers and a model walker (``init_``).

keras is imported inside the functions (it needs a backend: KERAS_BACKEND=jax, torch or
tensorflow).  Conventions: notes/bridges.md.  Keras's distribution "normal" is its *truncated*
normal; the plain normal is "untruncated_normal" — :func:`variance_scaling_args` maps ours.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import MissingDependencyError, VanishcalcError
from .common import InitReport, LayerInit, NormInit, affine_inside, compose, layer_sigma, unplaced
from .init_spec import TRUNCATED_NORMAL_STD, init_spec

_KERAS_DIST = {"normal": "untruncated_normal", "truncated_normal": "truncated_normal",
               "uniform": "uniform"}


def _keras():
    try:
        import keras
    except ImportError as exc:
        raise MissingDependencyError(
            "this needs keras 3 with a backend: pip install 'vanishcalc[keras]' and set "
            "KERAS_BACKEND=jax (or torch/tensorflow) before importing keras") from exc
    except Exception as exc:           # keras without its backend fails with the backend's error
        raise MissingDependencyError(
            f"keras failed to import ({type(exc).__name__}: {exc}); keras 3 defaults to the "
            "tensorflow backend: set KERAS_BACKEND=jax (pip install jax) or KERAS_BACKEND=torch "
            "before importing keras") from exc
    return keras


def variance_scaling_args(spec, *, mode="fan_in", distribution="normal",
                          convention="second_moment", method=None, sigma_b=None) -> dict:
    """``keras.initializers.VarianceScaling(**args)`` arguments for a layer fed by φ.

    >>> args = variance_scaling_args("exp(-x**2)")          # scale = gain² = √5
    >>> round(args["scale"], 12), args["mode"], args["distribution"]
    (2.2360679775, 'fan_in', 'untruncated_normal')
    """
    if distribution == "orthogonal":
        raise VanishcalcError("variance_scaling_args: orthogonal is keras.initializers.Orthogonal"
                              "(gain=init_spec(...).orthogonal_gain), not VarianceScaling")
    s = init_spec(spec, 1, mode="fan_in", distribution=distribution, convention=convention,
                  method=method, sigma_b=sigma_b)
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise VanishcalcError(f"variance_scaling_args: mode = {mode!r}; use fan_in, fan_out or fan_avg")
    return {"scale": s.scale, "mode": mode, "distribution": _KERAS_DIST[distribution]}


def initializer(spec, **kwargs):
    """A ``keras.initializers.VarianceScaling`` for a layer fed by φ (arguments as
    :func:`variance_scaling_args`, plus ``seed``)."""
    seed = kwargs.pop("seed", None)
    return _keras().initializers.VarianceScaling(**variance_scaling_args(spec, **kwargs), seed=seed)


_ACT_NAMES = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "gelu": "gelu",
              "silu": "silu", "swish": "silu", "elu": "elu", "selu": "selu", "softplus": "softplus",
              "softsign": "softsign", "linear": "linear", "mish": "mish", "log_sigmoid": "log_sigmoid",
              "relu6": "relu6", "leaky_relu": "leaky_relu(x, 0.2)"}    # keras's default slope 0.2


def _activation_spec(keras, layer_or_fn):
    """φ of a keras activation function or layer; None when unknown."""
    spec = getattr(layer_or_fn, "vanishcalc_spec", None)
    if spec is not None:
        return spec
    L = keras.layers
    if isinstance(layer_or_fn, L.LeakyReLU):
        return f"leaky_relu(x, {float(layer_or_fn.negative_slope)!r})"
    if isinstance(layer_or_fn, L.ReLU) and not layer_or_fn.max_value and not layer_or_fn.negative_slope \
            and not layer_or_fn.threshold:
        return "relu"
    if isinstance(layer_or_fn, L.ELU):
        return f"elu(x, {float(layer_or_fn.alpha)!r})"
    if isinstance(layer_or_fn, L.Activation):
        return _activation_spec(keras, layer_or_fn.activation)
    if callable(layer_or_fn) and not isinstance(layer_or_fn, L.Layer):
        name = getattr(layer_or_fn, "__name__", "")
        if getattr(keras.activations, name, None) is layer_or_fn:
            return _ACT_NAMES.get(name)
    return None


def init_(model, spec=None, *, method="gain", sigma_b=None, distribution="normal",
          convention="second_moment", norm=None, on_unknown="error", seed=0) -> InitReport:
    """Set a built Keras model's Dense/Conv kernels (and biases, norms) from vanishcalc's numbers.

    The same rules as :func:`vanishcalc.torch.init_`: ``model.layers`` in order are the data
    flow; each Dense/Conv1D/2D/3D is scaled for the φ feeding it (the previous layer's own
    ``activation=``, Activation/LeakyReLU/ELU layers after it, composed with a
    BatchNormalization/LayerNormalization affine); the first is fed by the data ("linear").
    A φ after the last weighted layer (softmax) is not needed and ignored.  ``spec``: one φ
    for every activation, or {layer name: spec}.  Anything else with weights, or an activation
    it cannot read that feeds a weighted layer, is an error (on_unknown="warn": a warning).
    """
    keras = _keras()
    L = keras.layers
    if not isinstance(model, keras.Model):
        raise VanishcalcError(f"init_: model must be a keras.Model; got {type(model).__name__}")
    if not model.built:
        raise VanishcalcError("init_: build the model first (call it once, or give Input/input_shape)")
    from ..activation import activation
    from ..solve.bn_affine import bn_affine
    overrides = spec if isinstance(spec, dict) else {}
    weighted_kinds = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)
    norm_kinds = (L.BatchNormalization, L.LayerNormalization)
    passive = (L.InputLayer, L.Flatten, L.Dropout, L.Reshape)
    plan, unknown, passed = [], [], []
    pending_phi, pending_norm, pending_unknown = "linear", None, None

    def add_phi(phi, name):
        nonlocal pending_phi, pending_norm, pending_unknown
        if phi is None:
            pending_unknown = name
            return
        pending_phi = compose(phi, pending_phi)
        if pending_norm is not None:
            plan.append(("n", pending_norm[0], pending_norm[1], phi))
            pending_norm = None

    for layer in model.layers:
        name = layer.name
        if isinstance(layer, weighted_kinds):
            if pending_unknown:
                unknown.append(pending_unknown)
                pending_unknown = None
            plan.append(("w", name, layer, pending_phi))
            pending_phi, pending_norm = "linear", None
            act = layer.activation
            if act is not None and act is not keras.activations.linear:
                add_phi(overrides.get(name, spec if isinstance(spec, str) else
                                      _activation_spec(keras, act)), f"{name}.activation")
        elif isinstance(layer, norm_kinds):
            pending_norm = (name, layer)
        elif isinstance(layer, passive):
            if not isinstance(layer, L.InputLayer):
                passed.append(f"{name} ({type(layer).__name__})")
        elif not layer.weights and (name in overrides or isinstance(spec, str)
                                    or _activation_spec(keras, layer) is not None
                                    or isinstance(layer, L.Activation)):
            add_phi(overrides.get(name, spec if isinstance(spec, str) else
                                  _activation_spec(keras, layer)), f"{name} ({type(layer).__name__})")
        else:
            unknown.append(f"{name} ({type(layer).__name__})")
    unplaced("init_", unknown, on_unknown)
    ws = [p for p in plan if p[0] == "w"]
    if not ws:
        raise VanishcalcError("init_: the model has no Dense/Conv layer to initialize")
    rng = np.random.default_rng(seed)
    report = InitReport(passed=passed, skipped=list(unknown))
    affine, norm_before, current, last_w = {}, {}, None, ""
    for kind, name, layer, phi in plan:
        if kind == "w":
            norm_before[name], current, last_w = current, None, name
            continue
        current = name
        if norm is not None and getattr(layer, "gamma", None) is not None:
            a = bn_affine(phi, **norm)
            layer.gamma.assign(np.full(layer.gamma.shape, a.gamma, dtype="float32"))
            if getattr(layer, "beta", None) is not None:
                layer.beta.assign(np.full(layer.beta.shape, a.beta, dtype="float32"))
            affine[name], how = (a.gamma, a.beta), "bn_affine"
        else:
            g = np.asarray(layer.gamma) if getattr(layer, "gamma", None) is not None else np.ones(1)
            b = np.asarray(layer.beta) if getattr(layer, "beta", None) is not None else np.zeros(1)
            if np.ptp(g) or np.ptp(b):
                raise VanishcalcError(f"init_: {name} has per-channel γ/β that differ; pass norm=...")
            affine[name], how = (float(g.flat[0]), float(b.flat[0])), "left"
        report.norms.append(NormInit(name, type(layer).__name__, activation(phi).name,
                                     *affine[name], how, after=last_w, act=activation(phi)))
    for i, (_, name, layer, phi) in enumerate(ws):
        nb = norm_before.get(name)
        act = affine_inside(phi, *affine[nb]) if nb else activation(phi)
        next_phi = None
        if i == 0 and method == "critical" and len(ws) > 1:
            nb1 = norm_before.get(ws[1][1])
            next_phi = affine_inside(ws[1][3], *affine[nb1]) if nb1 else activation(ws[1][3])
        sw, sb, how = layer_sigma(act, method, sigma_b, convention, next_phi=next_phi)
        shape = tuple(layer.kernel.shape)                 # (*kernel, in, out)
        fan_in, fan_out = int(np.prod(shape[:-1])), int(np.prod(shape[:-2]) * shape[-1])
        std = sw / math.sqrt(fan_in)
        layer.kernel.assign(_draw(rng, shape, std, sw, fan_in, fan_out, distribution))
        if layer.bias is not None:
            layer.bias.assign(rng.normal(0.0, sb, layer.bias.shape).astype("float32") if sb
                              else np.zeros(layer.bias.shape, "float32"))
        elif sb:
            raise VanishcalcError(f"init_: {name} has no bias but sigma_b = {sb}")
        report.layers.append(LayerInit(name, type(layer).__name__, act.name, fan_in, fan_out,
                                       sw, std, sb, how, act=act))
    return report


def _draw(rng, shape, std, sw, fan_in, fan_out, distribution):
    if distribution == "normal":
        w = rng.normal(0.0, std, shape)
    elif distribution == "uniform":
        w = rng.uniform(-math.sqrt(3) * std, math.sqrt(3) * std, shape)
    elif distribution == "truncated_normal":
        t = std / TRUNCATED_NORMAL_STD
        w = rng.normal(0.0, 1.0, shape)
        bad = np.abs(w) > 2
        while bad.any():                       # redraw outside ±2 scales (Keras/JAX's law)
            w[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
            bad = np.abs(w) > 2
        w *= t
    elif distribution == "orthogonal":
        flat = rng.normal(size=(fan_in, fan_out))
        q, r = np.linalg.qr(flat if fan_in >= fan_out else flat.T)
        q *= np.sign(np.diag(r))
        q = q if fan_in >= fan_out else q.T
        w = (sw * math.sqrt(max(1.0, fan_out / fan_in)) * q).reshape(shape)
    else:
        raise VanishcalcError(f"init_: distribution = {distribution!r}; use normal, "
                              "truncated_normal, uniform or orthogonal")
    return w.astype("float32")
