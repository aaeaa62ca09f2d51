"""DKS/TAT transform benchmark: vanishcalc.transform against DeepMind's ``dks`` in the same run.

    python benchmarks/transform.py [--depth 100] [--names tanh,softplus,...]

For each of dks's own activations and each method (DKS at ζ = 1.5, TAT at τ = 0.3 or, for
leaky ReLU, η = 0.9), a plain chain of ``depth`` nonlinear layers, prints

    case  ours_s  ours_first_s  ref_s  ratio  ours_resid  ref_resid  param_diff

* ``ref_s``: one dks solve (``_get_activations_params``; its Gauss–Legendre roots must already be
  cached, which takes minutes on first use).  ``ours_s``: best of 3 solves of
  ``vanishcalc.transform`` in the same process, ``ours_first_s`` the first one (lambdifying φ
  and its derivatives).  ``ratio`` = ref_s / ours_s.
* Both aim at dks's own local targets: dks finds ζ^{1/L} and τ/L by a 1e-8 bisection, and we
  are given the same numbers (ζ = t^L, τ = t·L), so the parameters are comparable.  TAT on
  leaky ReLU has no local target: both aim at η = 0.9 (dks bisects α to 1e-8 in C_f(0)).
* ``*_resid``: the largest |condition − target| of each parameter set, evaluated by our
  certified moments (adaptive Gauss–Kronrod, errors ≤ 1e-13 here) — dks's own residuals,
  measured more accurately than dks measures them.
* ``param_diff``: the largest relative difference of (a, b, c, s, α) after bringing dks's root
  to our canonical representative (a > 0; b ≥ 0 for a symmetric φ; see notes/transforms.md).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
import types
import warnings

# dks's activations as vanishcalc expressions (dks "gelu" is the tanh approximation)
DKS_NAMES = {
    "tanh": "tanh", "sigmoid": "sigmoid", "erf": "erf", "softplus": "softplus", "selu": "selu",
    "elu": "elu", "swish": "silu", "bentid": "(sqrt(x**2 + 1) - 1)/2 + x", "atan": "atan(x)",
    "asinh": "log(x + sqrt(x**2 + 1))", "softsign": "softsign", "gelu": "gelu_tanh",
    "gelu_exact": "gelu", "leaky_relu": "leaky_relu", "relu": "relu",
}


def import_dks():
    """dks's numpy transform module; absl (which dks uses only to log) is stubbed if absent."""
    try:
        import absl.logging  # noqa: F401
    except ImportError:
        stub, lg = types.ModuleType("absl"), types.ModuleType("absl.logging")
        for n in ("debug", "info", "warning", "error"):
            setattr(lg, n, lambda *a, **k: None)
        stub.logging = lg
        sys.modules.setdefault("absl", stub)
        sys.modules.setdefault("absl.logging", lg)
    from dks.base import activation_transform as at
    roots = at._ROOTS_CACHE_FILE.format(at._QUADRATURE_ORDER)
    if not os.path.exists(roots):
        sys.exit(f"dks's quadrature roots are not cached ({roots}); building them takes minutes")
    return at


def residual(spec, method, depth, params, local, target):
    """Max |condition − target| of a parameter set, by our certified moments."""
    from vanishcalc import activation
    from vanishcalc.solve import transform as T
    act = activation(spec)
    if params.get("negative_slope") is not None and method == "tat":
        import mpmath
        al = params["negative_slope"]
        with mpmath.workdps(40):
            c0 = float(T._network_c0(al, depth, mpmath))
        q1 = params["output_scale"] ** 2 * (1 + al * al) / 2
        return max(abs(c0 - target), abs(q1 - 1))
    full = dict(input_scale=1.0, input_shift=0.0, output_shift=0.0, negative_slope=None)
    full.update(params)
    if full["negative_slope"] is not None:
        fam = T._Family(None, slope=full["negative_slope"])
    else:
        fam = T._Family(act, need_d2=(method == "tat"))
    q_slope = not (method == "dks" and T.leaky_slope(act) == 0.0)
    conds = T._certify(fam, full, method, depth, local, target, q_slope)
    return max(c.residual for c in conds if c.tolerance == T.RESIDUAL_TOL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--names", default=",".join(DKS_NAMES))
    args = ap.parse_args()
    depth = args.depth
    warnings.simplefilter("ignore")
    at = import_dks()
    from vanishcalc import activation, transform
    from vanishcalc.solve import transform as T

    def chain(x, r):
        for _ in range(depth):
            x = r(x)
        return x
    local_slope = at._compute_local_c_slope_1_target(lambda x: x ** depth, 1.5)
    local_curv = at._compute_local_c_curv_target(lambda x: depth * x, 0.3)
    print(f"depth {depth}; dks's local targets: C'(1) = {local_slope!r}, C''(1) = {local_curv!r}")
    print(f"{'case':<16} {'ours_s':>8} {'first_s':>8} {'ref_s':>8} {'ratio':>7} "
          f"{'ours_resid':>10} {'ref_resid':>10} {'param_diff':>10}")
    for method in ("dks", "tat"):
        for name in args.names.split(","):
            spec = DKS_NAMES[name]
            if method == "tat" and name == "relu":
                continue
            leaky = name == "leaky_relu"
            t0 = time.perf_counter()
            try:
                if method == "dks":
                    ref = at._get_activations_params([name], "DKS",
                                                     max_slope_func=lambda x: x ** depth)[name]
                elif leaky:
                    ref = at._get_activations_params([name], "TAT", subnet_max_func=chain)[name]
                else:
                    ref = at._get_activations_params([name], "TAT",
                                                     max_curv_func=lambda x: depth * x)[name]
            except Exception as exc:           # dks's own failure, reported as such
                ref = exc
            ref_s = time.perf_counter() - t0
            if method == "dks":
                kw, local, target = dict(zeta=local_slope ** depth), local_slope, 1.5
            elif leaky:                         # η is the target itself (no local one)
                kw, local, target = dict(eta=0.9), None, 0.9
            else:
                kw, local, target = dict(tau=local_curv * depth), local_curv, 0.3
            times = []
            try:
                for _ in range(4):
                    t0 = time.perf_counter()
                    ours = transform(spec, method, depth=depth, **kw)
                    times.append(time.perf_counter() - t0)
            except Exception as exc:
                print(f"{method + '/' + name:<16} ours: {type(exc).__name__}: {str(exc)[:90]}"
                      f"  (dks: {ref_s:.3f} s)")
                continue
            first, best = times[0], min(times[1:])
            ours_params = {k: getattr(ours, k) for k in ("input_scale", "input_shift",
                                                         "output_shift", "output_scale",
                                                         "negative_slope")}
            ours_resid = residual(spec, method, depth, ours_params, local, target)
            if isinstance(ref, Exception):
                print(f"{method + '/' + name:<16} {best:8.4f} {first:8.4f} {ref_s:8.3f} "
                      f"{ref_s / best:7.1f} {ours_resid:10.1e}  dks failed: {str(ref)[:50]}")
                continue
            ref = {k: float(v) for k, v in ref.items()}
            ref_resid = residual(spec, method, depth, ref, local, target)
            refc = dict(ref)
            if "input_scale" in ref and not leaky and name != "relu":
                refc = T._canonical(dict(ref, negative_slope=None), T._symmetry(activation(spec)))
            diff = max(abs(ours_params[k] - v) / max(1.0, abs(v))
                       for k, v in refc.items() if v is not None)
            print(f"{method + '/' + name:<16} {best:8.4f} {first:8.4f} {ref_s:8.3f} "
                  f"{ref_s / best:7.1f} {ours_resid:10.1e} {ref_resid:10.1e} {diff:10.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
