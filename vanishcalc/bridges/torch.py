"""torch bridge: calculate_gain / compute_gamma drop-ins and a model walker (``init_``).

Importable without torch: torch is imported inside the functions that need it.  This module's
name never shadows the real torch: with absolute imports (Python 3) ``import torch`` inside
the package finds the top-level package, not ``vanishcalc.torch``.
Conventions: notes/bridges.md.
"""
from __future__ import annotations

import math

from ..errors import MissingDependencyError, VanishcalcError
from ..value import Value
from .common import (InitReport, LayerInit, NormInit, affine_inside, compose, layer_sigma,
                     unplaced)

# torch.nn.init.calculate_gain's names for layers without a nonlinearity: gain 1
_LINEAR_NAMES = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                 "conv_transpose2d", "conv_transpose3d")


def _torch():
    try:
        import torch
    except ImportError as exc:        # pragma: no cover - depends on the environment
        raise MissingDependencyError("this needs torch: pip install 'vanishcalc[torch]' "
                                     "(or pip install torch)") from exc
    return torch


def _spec_with_param(nonlinearity, param, where):
    if not isinstance(nonlinearity, str):
        return nonlinearity
    name = nonlinearity.strip()
    if name in _LINEAR_NAMES:
        return "linear"
    if name == "leaky_relu":          # torch: default negative slope 0.01, param overrides it
        param = 0.01 if param is None else param
    if param is None:
        return name
    if isinstance(param, bool) or not isinstance(param, (int, float)):
        raise VanishcalcError(f"{where}: param = {param!r} must be a number (e.g. the negative "
                              "slope of leaky_relu)")
    return f"{name}(x, {float(param)!r})"


def calculate_gain(nonlinearity, param=None) -> Value:
    """torch.nn.init.calculate_gain with the second-moment gain of *any* φ.

    ``gain = 1/√E[φ(z)²]``, z ~ N(0, 1): with W ~ N(0, gain²/fan_in) a layer fed by φ(h),
    h ~ N(0, 1), keeps E[h²] = 1.  It equals torch's value for linear/conv (1), relu (√2) and
    leaky_relu (√(2/(1+a²))).  It differs where torch's entries are not this gain:
    tanh (torch 5/3; ours 1.5925…), sigmoid (torch 1; ours 1.8462…) and selu (torch 3/4,
    which torch's docstring says "sacrifices the normalization effect for more stable gradient
    flow"; ours 1: E[selu(z)²] = 1 is SELU's self-normalizing fixed point, pytorch#54055).

    Parameters
    ----------
    nonlinearity : str, sympy.Expr or Activation
        A torch name, a vanishcalc zoo name or an expression in x ('exp(-x**2)').
    param : float, optional
        leaky_relu's negative slope (default 0.01, as torch), or the parameter of a
        parametric zoo φ (elu's α, celu's α).

    Examples
    --------
    >>> calculate_gain("relu")
    sqrt(2) ≈ 1.4142135623730951 (exact)
    >>> float(calculate_gain("selu"))
    1.0
    """
    from ..solve.gain import gain
    return gain(_spec_with_param(nonlinearity, param, "calculate_gain"))


# torch modules / functions -> vanishcalc φ (exact expressions of what torch computes)
def _module_spec(module):
    """The φ of a torch activation module, or None if ``module`` is not one we know."""
    torch = _torch()
    nn = torch.nn
    simple = {nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.ReLU: "relu", nn.SiLU: "silu",
              nn.SELU: "selu", nn.Mish: "mish", nn.Softsign: "softsign", nn.ReLU6: "relu6",
              nn.LogSigmoid: "log_sigmoid", nn.Identity: "linear",
              nn.Hardsigmoid: "min(max(x/6 + 1/2, 0), 1)",
              nn.Hardswish: "x*min(max(x/6 + 1/2, 0), 1)", nn.Tanhshrink: "x - tanh(x)"}
    for cls, spec in simple.items():
        if type(module) is cls:
            return spec
    if type(module) is nn.GELU:
        return "gelu_tanh" if module.approximate == "tanh" else "gelu"
    if type(module) is nn.LeakyReLU:
        return f"leaky_relu(x, {float(module.negative_slope)!r})"
    if type(module) is nn.ELU:
        return f"elu(x, {float(module.alpha)!r})"
    if type(module) is nn.CELU:
        return f"celu(x, {float(module.alpha)!r})"
    if type(module) is nn.Hardtanh:      # nn.Hardtanh(min_val, max_val)
        return f"min(max(x, {float(module.min_val)!r}), {float(module.max_val)!r})"
    if type(module) is nn.Softplus:
        # torch switches to x above β·x > threshold (20): a change of < e^-20 relative
        b = float(module.beta)
        return "softplus" if b == 1 else f"log(1 + exp({b!r}*x))/{b!r}"
    spec = getattr(module, "vanishcalc_spec", None)      # a user module can name its own φ
    return spec


_FUNCTION_NAMES = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "gelu": "gelu",
                   "silu": "silu", "selu": "selu", "elu": "elu", "softplus": "softplus",
                   "logsigmoid": "log_sigmoid", "mish": "mish", "softsign": "softsign",
                   "leaky_relu": "leaky_relu", "relu6": "relu6"}


def compute_gamma(fn) -> Value:
    """NFNets' γ for φ: 1/√Var[φ(z)], z ~ N(0, 1) (Brock et al. 2021, "std" convention).

    NFNets tabulated γ by Monte Carlo (1024×256 samples); this is the exact/certified value:
    e.g. softplus and log_sigmoid (log_sigmoid(x) = −softplus(−x)) have equal γ = 1.9191…,
    where the published table has 1.9203… for both.

    Parameters
    ----------
    fn : str, sympy.Expr, Activation, a torch activation module or torch function
        ``torch.tanh``, ``torch.nn.functional.gelu``, ``nn.SiLU()``, 'exp(-x**2)', ...

    Examples
    --------
    >>> round(float(compute_gamma("relu")), 10)
    1.7128585504
    """
    from ..solve.gain import gain
    return gain(_resolve_fn(fn), convention="std")


def _resolve_fn(fn):
    if isinstance(fn, str) or not callable(fn) or type(fn).__module__.startswith(("sympy", "vanishcalc")):
        return fn
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and isinstance(fn, torch.nn.Module):
        spec = _module_spec(fn)
        if spec is None:
            raise VanishcalcError(f"compute_gamma: {type(fn).__name__} is not an activation we "
                                  "know; pass its formula as a string, e.g. 'x*tanh(softplus(x))'")
        return spec
    name = getattr(fn, "__name__", "")
    if name in _FUNCTION_NAMES:
        return _FUNCTION_NAMES[name]
    raise VanishcalcError(f"compute_gamma: cannot read the formula of {fn!r} (vanishcalc never "
                          "calls or evaluates user code); pass it as a string, e.g. 'x*sigmoid(x)'")


# ---- the walker ------------------------------------------------------------------------------

def _weighted_kinds(nn):
    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _norm_kinds(nn):
    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm)


def _passive_kinds(nn):
    """Parameter-free modules that do not change a unit's statistics at init (Dropout in eval
    and, in expectation of the squared signal up to 1/(1−p), in training: reported)."""
    return (nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def _leaves(model):
    """(name, module) of the leaves in registration order, and the containers that are not
    nn.Sequential/ModuleList (their forward may not follow registration order)."""
    torch = _torch()
    nn = torch.nn
    leaves, opaque = [], []
    for name, mod in model.named_modules():
        children = list(mod.children())
        if not children:
            leaves.append((name or type(mod).__name__, mod))
        elif not isinstance(mod, (nn.Sequential, nn.ModuleList)):
            opaque.append(name or type(mod).__name__)
    return leaves, opaque


def init_(model, spec=None, *, method="gain", sigma_b=None, distribution="normal",
          convention="second_moment", norm=None, on_unknown="error", generator=None,
          assume_sequential=False, rnn_x2=1.0) -> InitReport:
    """Initialize a torch model's weights in place from vanishcalc's numbers; return a report.

    The walker reads the model's leaves in registration order as the data flow
    (Linear/Conv → [BatchNorm/LayerNorm] → activation → Linear/Conv → ...).  Each Linear and
    Conv1d/2d/3d gets W ~ N(0, σw²/fan_in) (or the uniform/truncated/orthogonal draw of that std)
    with σw chosen for the φ that *feeds* it: the activation module(s) between it and the
    previous weighted layer, composed with the affine of a norm layer before them.

    Parameters
    ----------
    model : torch.nn.Module
    spec : str, dict, optional
        Override φ: one spec for every activation module, or {module name: spec} for some
        (e.g. for a custom activation module; a module may also carry ``vanishcalc_spec``).
    method : {"gain", "critical"}
        "gain": σw = gain(φ) (the convention of ``convention``), biases zero.  "critical": the
        edge of chaos σw = critical_sigma_w(φ, σb), biases N(0, σb²); the first layer gets
        σw² = q* − σb² so the net starts at its fixed point (data of second moment 1).
    sigma_b : float, optional
        Bias std for method "critical" (default 0).
    distribution : {"normal", "truncated_normal", "uniform", "orthogonal"}
    convention : {"second_moment", "std", "backward"}
    norm : dict, optional
        Set every BatchNorm/LayerNorm's (γ, β) from ``vanishcalc.bn_affine(φ, **norm)``, φ the
        activation after it (e.g. ``norm={"rate": 1.05}``).  Without it norm layers are left
        as they are (reported as "left").
    on_unknown : {"error", "warn"}
        What to do with modules the walker cannot place (any module with parameters that is
        not Linear/Conv/norm, an activation it cannot read, a recurrent layer): raise a
        VanishcalcError listing them (default) or warn and leave them.
    generator : torch.Generator, optional
    rnn_x2 : float
        E[x²] of an nn.RNN's inputs (default 1: standardized data).  An nn.RNN (one layer,
        unidirectional) is set from the RNN mean field at the edge of chaos (method "critical"
        only): input weights N(0, 1/input_size) (σu = 1), b_ih ~ N(0, σb²), b_hh = 0 and W_hh
        ~ N(0, σw²/hidden) with σw = RNNMeanField(φ, σu=1, σb, x2).critical_sigma_w(), i.e.
        χ = 1 at the effective bias √(σb² + x2) (maps/rnn.py, notes/recurrent.md).  The layer
        after it is fed by the RNN's φ.
    assume_sequential : bool
        Containers other than nn.Sequential/ModuleList (custom modules with their own
        ``forward``) are assumed to call their children in registration order; without this
        flag the walker warns, naming them.

    Returns
    -------
    InitReport
        per weighted layer: name, kind, φ feeding it, fan_in, σw, std, σb, method; norms' γ, β.
    """
    import warnings

    from ..errors import VanishcalcWarning
    from ..solve.bn_affine import bn_affine
    torch = _torch()
    nn = torch.nn
    if not isinstance(model, nn.Module):
        raise VanishcalcError(f"init_: model must be a torch.nn.Module; got {type(model).__name__}")
    if distribution not in ("normal", "truncated_normal", "uniform", "orthogonal"):
        raise VanishcalcError(f"init_: distribution = {distribution!r}; use normal, "
                              "truncated_normal, uniform or orthogonal")
    if norm is not None and not isinstance(norm, dict):
        raise VanishcalcError("init_: norm must be a dict of bn_affine arguments, e.g. "
                              "{'rate': 1.05}, or None")
    if on_unknown not in ("error", "warn"):
        raise VanishcalcError(f"init_: on_unknown = {on_unknown!r}; use 'error' or 'warn'")
    overrides = spec if isinstance(spec, dict) else {}
    leaves, opaque = _leaves(model)
    if opaque and not assume_sequential:
        warnings.warn(f"init_: assuming {', '.join(opaque)} call their children in registration "
                      "order (pass assume_sequential=True if so; otherwise initialize per block)",
                      VanishcalcWarning, stacklevel=2)
    # pass 1: a plan of weighted layers, norms and the φ between them
    weighted, unknown, passed = [], [], []
    pending_phi, pending_norm = "linear", None          # φ since the last weighted layer
    plan = []                                            # (kind, name, module, data)
    for name, mod in leaves:
        if isinstance(mod, nn.RNN):
            if mod.num_layers != 1 or mod.bidirectional:
                unknown.append(f"{name} (RNN with num_layers > 1 or bidirectional: one "
                               "unidirectional nn.RNN per layer is supported)")
                continue
            plan.append(("r", name, mod, pending_phi, None))
            pending_phi, pending_norm = ("tanh" if mod.nonlinearity == "tanh" else "relu"), None
        elif isinstance(mod, _weighted_kinds(nn)):
            plan.append(("w", name, mod, pending_phi, pending_norm))
            pending_phi, pending_norm = "linear", None
        elif isinstance(mod, _norm_kinds(nn)):
            pending_norm = (name, mod)
        elif name in overrides or _module_spec(mod) is not None or (
                isinstance(spec, str) and not list(mod.parameters())
                and not isinstance(mod, _passive_kinds(nn))):
            phi = overrides.get(name, spec if isinstance(spec, str) else _module_spec(mod))
            if phi is None:
                unknown.append(f"{name} ({type(mod).__name__})")
                continue
            pending_phi = compose(phi, pending_phi)
            if pending_norm is not None:
                plan.append(("n", pending_norm[0], pending_norm[1], phi, None))
                pending_norm = None
        elif isinstance(mod, _passive_kinds(nn)):
            passed.append(f"{name} ({type(mod).__name__})")
        else:
            unknown.append(f"{name} ({type(mod).__name__})")
    if pending_norm is not None:
        plan.append(("n", pending_norm[0], pending_norm[1], "linear", None))
    unplaced("init_", unknown, on_unknown)
    if not any(p[0] in "wr" for p in plan):
        raise VanishcalcError("init_: the model has no Linear/Conv/RNN layer to initialize")
    # pass 2: norms' affine (it changes the φ the next layer sees), then the weights
    report = InitReport(passed=passed, skipped=list(unknown))
    affine = {}          # norm name -> (γ, β)
    last_w = ""
    from ..activation import activation
    with torch.no_grad():
        for kind, name, mod, phi, _ in plan:
            if kind == "r":
                report.layers.extend(_init_rnn(torch, name, mod, method, sigma_b, rnn_x2, generator))
                continue
            if kind == "w":
                last_w = name
                continue
            if norm is not None and mod.weight is not None:
                a = bn_affine(phi, **norm)
                mod.weight.fill_(a.gamma)
                mod.bias.fill_(a.beta)
                affine[name] = (a.gamma, a.beta)
                how = "bn_affine"
            else:
                g = 1.0 if mod.weight is None else mod.weight
                b = 0.0 if getattr(mod, "bias", None) is None else mod.bias
                gv, bv = (float(x.flatten()[0]) if torch.is_tensor(x) else x for x in (g, b))
                if torch.is_tensor(g) and not bool((g == gv).all()) or (
                        torch.is_tensor(b) and not bool((b == bv).all())):
                    raise VanishcalcError(f"init_: {name} has per-channel γ/β that differ; the "
                                          "walker needs one affine per layer (pass norm=...)")
                affine[name] = (gv, bv)
                how = "left"
            report.norms.append(NormInit(name, type(mod).__name__, activation(phi).name,
                                         affine[name][0], affine[name][1], how, after=last_w,
                                         act=activation(phi)))
        norm_before = {}     # weighted layer -> the norm+φ that feed it
        current = None
        for kind, name, mod, phi, pnorm in plan:
            if kind == "n":
                current = name
            else:
                norm_before[name] = current
                current = None
        ws = [p for p in plan if p[0] == "w"]
        for i, (_, name, mod, phi, pnorm) in enumerate(ws):
            nb = norm_before.get(name)
            if nb is not None:
                g, b = affine[nb]
                act = affine_inside(phi, g, b)
            else:
                act = activation(phi)
            next_phi = None
            if i == 0 and method == "critical" and len(ws) > 1:
                nxt = ws[1]
                nb1 = norm_before.get(nxt[1])
                next_phi = affine_inside(nxt[3], *affine[nb1]) if nb1 else activation(nxt[3])
            sw, sb, how = layer_sigma(act, method, sigma_b, convention, next_phi=next_phi)
            fan_in = mod.weight[0].numel()
            fan_out = mod.weight.shape[0] * (mod.weight[0, 0].numel() if mod.weight.dim() > 2 else 1)
            std = sw / math.sqrt(fan_in)
            _draw(torch, mod.weight, std, sw, fan_in, fan_out, distribution, generator)
            if mod.bias is not None:
                if sb:
                    mod.bias.normal_(0.0, sb, generator=generator)
                else:
                    mod.bias.zero_()
            elif sb:
                raise VanishcalcError(f"init_: {name} has no bias but sigma_b = {sb}")
            report.layers.append(LayerInit(name, type(mod).__name__, act.name, fan_in, fan_out,
                                           sw, std, sb, how, act=act))
    return report


def _init_rnn(torch, name, mod, method, sigma_b, x2, generator):
    """nn.RNN at the RNN mean field's edge of chaos (see init_'s rnn_x2)."""
    from ..activation import activation
    from ..maps.rnn import RNNMeanField
    from ..validate import real
    if method != "critical":
        raise VanishcalcError(f"init_: {name} is an nn.RNN: use method='critical' (its recurrent "
                              "scale comes from the RNN mean field's χ = 1; a gain alone lets the "
                              "input drive grow q step after step)")
    x2 = real("init_", "rnn_x2", x2, positive=True, why="(E[x²] of the RNN's inputs)")
    sb = float(sigma_b or 0.0)
    phi = "tanh" if mod.nonlinearity == "tanh" else "relu"
    sw = RNNMeanField(phi, sigma_w=1.0, sigma_u=1.0, sigma_b=sb, x2=x2).critical_sigma_w()
    hidden, n_in = mod.hidden_size, mod.input_size
    mod.weight_ih_l0.normal_(0.0, 1.0 / math.sqrt(n_in), generator=generator)
    mod.weight_hh_l0.normal_(0.0, sw / math.sqrt(hidden), generator=generator)
    if mod.bias:
        if sb:
            mod.bias_ih_l0.normal_(0.0, sb, generator=generator)
        else:
            mod.bias_ih_l0.zero_()
        mod.bias_hh_l0.zero_()          # one bias of std σb in all (two would add variances)
    elif sb:
        raise VanishcalcError(f"init_: {name} has no bias but sigma_b = {sb}")
    act = activation(phi)
    return [LayerInit(f"{name}.weight_ih_l0", "RNN", "linear", n_in, hidden, 1.0,
                      1.0 / math.sqrt(n_in), sb, "rnn-input (σu = 1)", act=activation("linear")),
            LayerInit(f"{name}.weight_hh_l0", "RNN", phi, hidden, hidden, sw, sw / math.sqrt(hidden),
                      0.0, "rnn-critical", act=act)]


def _draw(torch, w, std, sw, fan_in, fan_out, distribution, generator):
    from .init_spec import TRUNCATED_NORMAL_STD
    if distribution == "normal":
        w.normal_(0.0, std, generator=generator)
    elif distribution == "uniform":
        w.uniform_(-math.sqrt(3) * std, math.sqrt(3) * std, generator=generator)
    elif distribution == "truncated_normal":
        t = std / TRUNCATED_NORMAL_STD
        torch.nn.init.trunc_normal_(w, std=t, a=-2 * t, b=2 * t, generator=generator)
    else:
        torch.nn.init.orthogonal_(w, gain=sw * math.sqrt(max(1.0, fan_out / fan_in)),
                                  generator=generator)


def param_groups(model, lr, report=None, multipliers=None, rule="relative"):
    """torch optimizer parameter groups with per-layer learning rates.

    Each weighted layer of ``report`` (from :func:`init_`) gets its own group
    ``{"params": [weight, bias], "lr": lr·m_l, "name": layer}``; every other parameter (norm
    γ/β, ...) is in one last group at ``lr``.  ``multipliers``: a sequence (one per weighted
    layer) or an LRMultipliers; default ``vanishcalc.lr_multipliers`` of the report's mean-field
    chain (``report.maps_layers()``) with ``rule``.

    >>> # opt = torch.optim.SGD(param_groups(model, 0.01, report), momentum=0.9)
    """
    torch = _torch()
    if report is None:
        raise VanishcalcError("param_groups: pass the report init_ returned (it names the "
                              "weighted layers and their σw, σb, φ)")
    if multipliers is None:
        from ..solve.lr_multipliers import lr_multipliers
        multipliers = lr_multipliers(report.maps_layers(), depth=1, rule=rule)
    m = getattr(multipliers, "multipliers", multipliers)
    m = [float(x) for x in m]
    if len(m) != len(report.layers):
        raise VanishcalcError(f"param_groups: {len(m)} multipliers for {len(report.layers)} "
                              "weighted layers")
    if not all(math.isfinite(x) and x > 0 for x in m):
        raise VanishcalcError("param_groups: multipliers must be finite and > 0 (use "
                              "log_multipliers and a smaller depth if they leave float64)")
    modules = dict(model.named_modules())
    groups, seen = [], set()
    for layer, mult in zip(report.layers, m):
        mod = modules.get(layer.name)
        if mod is None:
            raise VanishcalcError(f"param_groups: the model has no module {layer.name!r} (was the "
                                  "report made for this model?)")
        params = [p for p in mod.parameters(recurse=False)]
        seen.update(id(p) for p in params)
        groups.append({"params": params, "lr": lr * mult, "name": layer.name})
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": lr, "name": "other"})
    del torch
    return groups
