"""DKS / TAT transforms: the conditions checked by 30-digit mpmath quadrature (independent of
both our solver's Gauss–Legendre rule and the certifier's Gauss–Kronrod), closed forms for
(leaky) ReLU, an mpmath root solve, a simulated network, and dks itself (slow)."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy

from vanishcalc import VanishcalcError, activation, transform
from vanishcalc.parse import X

DPS = 30


# ---------------------------------------------------------------- mpmath reference


def _mp_funcs(spec):
    act = activation(spec)
    expr = act.expr
    return (sympy.lambdify(X, expr, "mpmath"), sympy.lambdify(X, sympy.diff(expr, X), "mpmath"),
            sympy.lambdify(X, sympy.diff(expr, X, 2), "mpmath"), act.kinks)


def mp_conditions(spec, a, b, c, s):
    """Q(1), Q'(1), C'(1), C''(1) and E[φ̂] of φ̂ = s(φ(ax + b) + c) by mpmath.quad at 30
    digits, split at φ's kinks mapped to z."""
    f, df, d2f, kinks = _mp_funcs(spec)
    with mpmath.workdps(DPS):
        a, b, c, s = (mpmath.mpf(v) for v in (a, b, c, s))
        pts = sorted({(mpmath.mpf(k) - b) / a for k in kinks} | {mpmath.mpf(0)})
        edges = [mpmath.ninf, *pts, mpmath.inf]

        def E(g):
            return mpmath.quad(lambda z: g(z) * mpmath.npdf(z), edges)
        hat = lambda z: s * (f(a * z + b) + c)          # noqa: E731
        dhat = lambda z: s * a * df(a * z + b)         # noqa: E731
        q1 = E(lambda z: hat(z) ** 2)
        out = {"mean": E(hat), "Q": q1, "Qslope": E(lambda z: z * hat(z) * dhat(z)),
               "Cslope": E(lambda z: dhat(z) ** 2) / q1}
        if not kinks:
            out["Ccurv"] = E(lambda z: (s * a * a * d2f(a * z + b)) ** 2) / q1
        return {k: float(v) for k, v in out.items()}


def _params(t):
    return t.input_scale, t.input_shift, t.output_shift, t.output_scale


def _assert_certified(t, name, mp_value):
    """The mpmath value lies within the reported error, and meets the target to 1e-12."""
    cond = t.condition(name)
    assert abs(float(cond.value) - mp_value) <= cond.value.error, (name, cond, mp_value)
    assert abs(mp_value - cond.target) <= 1e-12, (name, mp_value, cond.target)
    assert cond.value.error <= 1e-12


C1 = "C'(1) = E[φ̂'(z)²]/Q(1)"
Q1 = "Q(1) = E[φ̂(z)²]"
QS = "Q'(1) = E[z φ̂(z) φ̂'(z)]"
C2 = "C''(1) = E[φ̂''(z)²]/Q(1)"


@pytest.mark.parametrize("spec, depth", [("tanh", 100), ("exp(-x**2)", 20),
                                         ("x*exp(-x**2/2)", 50), ("elu", 10), ("softplus", 3),
                                         ("selu", 100)])
def test_transform_dks_conditions_vs_mpmath(spec, depth):
    t = transform(spec, "dks", depth=depth)
    ref = mp_conditions(spec, *_params(t))
    assert abs(ref["mean"]) <= 1e-12
    _assert_certified(t, "E[φ̂(z)]", ref["mean"])
    _assert_certified(t, Q1, ref["Q"])
    _assert_certified(t, QS, ref["Qslope"])
    _assert_certified(t, C1, ref["Cslope"])
    assert abs(ref["Cslope"] - 1.5 ** (1 / depth)) <= 1e-12
    net = t.condition(f"C'_f(1) = C'(1)^{depth}")
    assert abs(ref["Cslope"] ** depth - 1.5) <= net.tolerance
    assert t.input_scale > 0


@pytest.mark.parametrize("spec, depth, tau", [("tanh", 100, 0.3), ("x*exp(-x**2/2)", 30, 0.3),
                                              ("softplus", 10, 0.5)])
def test_transform_tat_smooth_conditions_vs_mpmath(spec, depth, tau):
    t = transform(spec, "tat", depth=depth, tau=tau)
    ref = mp_conditions(spec, *_params(t))
    _assert_certified(t, Q1, ref["Q"])
    _assert_certified(t, QS, ref["Qslope"])
    _assert_certified(t, C1, ref["Cslope"])
    _assert_certified(t, C2, ref["Ccurv"])
    assert abs(depth * ref["Ccurv"] - tau) <= 1e-12 * depth
    assert t.input_scale * t.output_scale < 2      # dks's rejection of 'bad' roots


def test_transform_dks_tanh_root_vs_mpmath_findroot():
    """An mpmath Newton solve of the same two equations (a, b), from our root rounded to 6
    digits, lands on our root."""
    depth = 100
    t = transform("tanh", "dks", depth=depth)
    target = mpmath.mpf(1.5) ** (mpmath.mpf(1) / depth)
    with mpmath.workdps(25):
        def E(g):
            return mpmath.quad(lambda z: g(z) * mpmath.npdf(z), [mpmath.ninf, 0, mpmath.inf])

        def eqs(a, b):
            m = E(lambda z: mpmath.tanh(a * z + b))
            var = E(lambda z: (mpmath.tanh(a * z + b) - m) ** 2)
            d = lambda z: a * mpmath.sech(a * z + b) ** 2          # noqa: E731
            qs = E(lambda z: z * (mpmath.tanh(a * z + b) - m) * d(z)) / var
            return [qs - 1, E(lambda z: d(z) ** 2) / var - target]
        a, b = mpmath.findroot(eqs, (round(t.input_scale, 6), round(t.input_shift, 6)))
    assert abs(float(a) - t.input_scale) <= 1e-12 * t.input_scale
    assert abs(float(b) - t.input_shift) <= 1e-12


def test_transform_relu_dks_closed_form():
    """dks's ReLU rule (b = ±1, Q'(1) dropped): C'(1) of s(relu(az + b) + c) in closed form,
    E[relu(u)] = bΦ + aφ, E[relu(u)²] = (a² + b²)Φ + abφ, E[relu'(u)²] = Φ at u ~ N(b, a²)."""
    t = transform("relu", "dks", depth=5)
    a, b = mpmath.mpf(t.input_scale), mpmath.mpf(t.input_shift)
    with mpmath.workdps(DPS):
        Phi, phi = mpmath.ncdf(b / a), mpmath.npdf(b / a)
        m1 = b * Phi + a * phi
        var = (a * a + b * b) * Phi + a * b * phi - m1 ** 2
        cslope = a * a * Phi / var
    assert t.input_shift == 1.0
    assert abs(float(cslope) - 1.5 ** (1 / 5)) <= 1e-12
    assert abs(t.output_shift + float(m1)) <= 1e-12
    assert abs(t.output_scale - float(1 / mpmath.sqrt(var))) <= 1e-12 * t.output_scale
    assert all(c.name != QS for c in t.conditions)


def test_transform_leaky_relu_tat_closed_form():
    """TAT's η: the L-fold leaky ReLU c map (Cho & Saul arc-cosine kernel) at 0 equals η,
    and Q(1) = s²(1 + α²)/2 = 1."""
    depth, eta = 10, 0.5
    t = transform("leaky_relu", "tat", depth=depth, eta=eta)
    al = mpmath.mpf(t.negative_slope)
    with mpmath.workdps(DPS):
        c = mpmath.mpf(0)
        for _ in range(depth):
            c = ((1 - al) ** 2 * (mpmath.sqrt(1 - c * c) + (mpmath.pi - mpmath.acos(c)) * c)
                 / mpmath.pi + 2 * al * c) / (1 + al * al)
        q1 = mpmath.mpf(t.output_scale) ** 2 * (1 + al * al) / 2
    assert abs(float(c) - eta) <= 1e-12
    assert abs(float(q1) - 1) <= 1e-12
    assert (t.input_scale, t.input_shift, t.output_shift) == (1.0, 0.0, 0.0)
    assert 0 < t.negative_slope < 1


def test_transform_leaky_relu_dks_conditions_vs_mpmath():
    t = transform("leaky_relu", "dks", depth=100)
    spec = f"Max(x, {sympy.Rational(t.negative_slope)}*x)"
    ref = mp_conditions(spec, *_params(t))
    _assert_certified(t, QS, ref["Qslope"])
    _assert_certified(t, C1, ref["Cslope"])
    _assert_certified(t, Q1, ref["Q"])


def test_transform_expression_is_a_spec():
    """φ̂ goes wherever a spec goes: gain 1 (Q(1) = 1), MeanField's χ1 = C'(1) at q* = 1."""
    from vanishcalc import MeanField, gain
    t = transform("tanh", "dks", depth=30)
    for spec in (t, t.activation, t.expr):
        assert abs(float(gain(spec)) - 1.0) <= 1e-12
    assert t.condition("c_slope") is t.condition(C1)
    mf = MeanField(t, sigma_w=1.0)
    assert abs(float(mf.q_star()) - 1.0) <= 1e-10
    assert abs(float(mf.chi1()) - 1.5 ** (1 / 30)) <= 1e-12
    # the network's c map near c = 1 has slope ζ: 1 − c_L ≈ ζ·(1 − c_0)
    delta = 1e-6
    prop = mf.propagate(30, q0=1.0, c0=1 - delta)
    assert abs((1 - float(prop.c[-1])) / delta - 1.5) < 1e-3
    assert np.allclose(t(np.array([0.0, 1.0])),
                       [float(t.expr.subs(X, 0)), float(t.expr.subs(X, 1))], rtol=1e-14)


@pytest.mark.slow
def test_transform_dks_simulation_confirms_c_and_grad():
    """A width-256 depth-20 DKS tanh net started at c0 = 0.99: check() finds no disagreement
    with the theory, and the simulated net's c-map slope near 1, (1 − c_L)/(1 − c_0), and its
    gradient growth over the depth both agree with ζ = 1.5."""
    from vanishcalc import check
    depth, c0 = 20, 0.99
    t = transform("tanh", "dks", depth=depth)
    r = check(t, 1.0, 0.0, depth=depth, width=256, n_nets=24, q0=1.0, c0=c0, seed=3)
    assert r.verdict != "FAILED", r.reasons
    assert np.all(np.isfinite(r.z["c"][1:]))               # every c layer was resolved
    slope_mf = (1 - r.theory["c"][-1]) / (1 - c0)
    assert abs(slope_mf - 1.5) < 0.02                      # ζ up to the O(1 − c0) curvature
    slope_sim = (1 - r.sim["c"][-1]) / (1 - c0)
    assert abs(slope_sim - slope_mf) < 4 * r.se["c"][-1] / (1 - c0) + 0.05
    assert abs(r.theory["grad"][0] / r.theory["grad"][-1] - 1.5) < 1e-9
    sim_growth = r.sim["grad"][0] / r.sim["grad"][-1]
    assert abs(sim_growth - 1.5) < 4 * r.se["grad"][0] + 0.15


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("kwargs, match", [
    (dict(spec="relu", method="tat", depth=10), "leaky_relu"),
    (dict(spec="selu", method="tat", depth=10), "kink"),
    (dict(spec="Heaviside(x)", method="dks", depth=10), "jump|Dirac|infinite"),
    (dict(spec="tanh", method="dks", depth=0), "depth"),
    (dict(spec="tanh", method="dks", depth=2.5), "depth"),
    (dict(spec="tanh", method="dks", depth=10 ** 7), "depth"),
    (dict(spec="tanh", method="dks", depth=10, zeta=1.0), "zeta"),
    (dict(spec="tanh", method="dks", depth=10, zeta=0.5), "zeta"),
    (dict(spec="tanh", method="dks", depth=10, zeta=math.inf), "zeta"),
    (dict(spec="tanh", method="dks", depth=10, tau=0.3), "tau"),
    (dict(spec="tanh", method="tat", depth=10, tau=-0.3), "tau"),
    (dict(spec="tanh", method="tat", depth=10, eta=0.9), "eta"),
    (dict(spec="leaky_relu", method="tat", depth=10, eta=1.2), "eta"),
    (dict(spec="leaky_relu", method="tat", depth=10, tau=0.3), "tau"),
    (dict(spec="leaky_relu", method="tat", depth=1, eta=0.9), "no solution"),
    (dict(spec="tanh", method="foo", depth=10), "method"),
])
def test_transform_bad_input_names_the_problem(kwargs, match):
    with pytest.raises(VanishcalcError, match=match):
        transform(**kwargs)


def test_transform_unreachable_zeta_says_no_solution():
    with pytest.raises(VanishcalcError, match="no solution"):
        transform("tanh", "dks", depth=1, zeta=1e6)


# ---------------------------------------------------------------- dks itself (slow)


def _import_dks():
    """dks, with absl's logging stubbed when absl is not installed (dks only logs with it)."""
    import sys
    import types
    pytest.importorskip("autograd")
    try:
        import absl.logging  # noqa: F401
    except ImportError:
        stub = types.ModuleType("absl")
        lg = types.ModuleType("absl.logging")
        for n in ("debug", "info", "warning", "error"):
            setattr(lg, n, lambda *a, **k: None)
        stub.logging = lg
        sys.modules.setdefault("absl", stub)
        sys.modules.setdefault("absl.logging", lg)
    at = pytest.importorskip("dks.base.activation_transform")
    import os
    roots = at._ROOTS_CACHE_FILE.format(at._QUADRATURE_ORDER)
    if not os.path.exists(roots):
        pytest.skip("dks's Gauss–Legendre roots are not cached (minutes to build)")
    return at


@pytest.mark.slow
def test_transform_dks_tanh_and_tat_leaky_relu_vs_dks():
    """dks's own solves agree with ours to dks's accuracy, when both aim at dks's local
    targets (dks finds them by a 1e-8 bisection)."""
    import warnings
    at = _import_dks()
    depth = 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zeta = at._compute_local_c_slope_1_target(lambda x: x ** depth, 1.5) ** depth
        ref = at._get_activations_params(["tanh"], "DKS", max_slope_func=lambda x: x ** depth)
    ours = transform("tanh", "dks", depth=depth, zeta=zeta)
    for k in ("input_scale", "input_shift", "output_shift", "output_scale"):
        assert abs(getattr(ours, k) - float(ref["tanh"][k])) <= 1e-8 * max(1, abs(getattr(ours, k)))

    def chain(x, r):
        for _ in range(depth):
            x = r(x)
        return x
    ref = at._get_activations_params(["leaky_relu"], "TAT", subnet_max_func=chain)["leaky_relu"]
    from vanishcalc.solve.transform import _network_c0
    ours = transform("leaky_relu", "tat", depth=depth, eta=_network_c0(ref["negative_slope"], depth))
    assert abs(ours.negative_slope - ref["negative_slope"]) <= 1e-12
    assert abs(ours.output_scale - ref["output_scale"]) <= 1e-12


# ---------------------------------------------------------------- init_table's transform columns
# (here rather than in tests/report/test_table.py, which another helper edits in parallel)


def test_init_table_transform_columns_match_transform():
    import json
    from vanishcalc import init_table
    from vanishcalc.report.table import COLUMNS, TRANSFORM_COLUMNS
    t = init_table(["tanh", "leaky_relu", "relu"], transform="tat", depth=50)
    assert t.columns == COLUMNS + TRANSFORM_COLUMNS
    tanh, leaky, relu = t.rows
    ref = transform("tanh", "tat", depth=50)
    assert tanh["transform_input_scale"] == ref.input_scale
    assert tanh["transform_negative_slope"] is None
    assert leaky["transform_negative_slope"] == transform("leaky_relu", "tat", depth=50).negative_slope
    assert relu["transform_input_scale"] is None and "leaky_relu" in t.notes["relu.transform_input_scale"]
    data = json.loads(t.to_json())
    assert data["columns"][-5:] == list(TRANSFORM_COLUMNS)
    assert "transform a" in t.to_markdown() and "transform_output_scale" in t.to_csv()
    assert init_table(["relu"]).columns == COLUMNS          # unchanged without a transform


@pytest.mark.parametrize("kwargs, match", [
    (dict(transform="dks"), "depth"),
    (dict(depth=10), "depth"),
    (dict(transform="dks", depth=10, eta=0.9), "eta"),
    (dict(transform="tat", depth=10, zeta=1.5), "zeta"),
    (dict(transform="xyz", depth=10), "transform"),
])
def test_init_table_transform_bad_input(kwargs, match):
    from vanishcalc import init_table
    with pytest.raises(VanishcalcError, match=match):
        init_table(["tanh"], **kwargs)


def test_transform_search_has_a_time_budget(monkeypatch):
    from vanishcalc.errors import NotConvergedError
    from vanishcalc.solve import transform as T
    monkeypatch.setattr(T, "SEARCH_SECONDS", -1.0)
    with pytest.raises(NotConvergedError, match="budget"):
        transform("tanh", "dks", depth=10)
