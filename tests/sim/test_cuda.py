"""CUDA kernels of ``vanishcalc/sim/cuda/`` against independent references.

The kernels run in numba's CUDA simulator: ``NUMBA_ENABLE_CUDASIM=1`` must be set before
numba is imported, so they run in child processes (two, in parallel, started once per
session) that print their results as JSON.  With ``VANISHCALC_TEST_REAL_GPU=1`` the children
run on the real GPU instead.  Sizes are tiny (width ≤ 16, depth ≤ 3, ≤ 10 nets): the
simulator runs every CUDA thread as a Python thread.

References, none of them our own earlier output:

* a naive numpy simulation written here with explicit weights (``_naive_dense``, φ and φ'
  from ``Activation.numpy`` and ``Activation.derivative``, not from ``sim/compile.py``),
  compared in standard errors: the kernel samples W·X from its exact law instead;
* an independent Python replay of the kernel's algorithm from the same random streams
  (``_replay_dense``), equal to rounding;
* exact conditional moments of layer 1 given the layer-0 inputs (Gaussian algebra);
* closed-form max |φ'| for the saturation threshold.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from scipy.stats import chi2

from tests.sim.cudasim import REAL_GPU, Stream, child_env, child_script, finish, start
from vanishcalc.activation import activation
from vanishcalc.errors import VanishcalcError
from vanishcalc.sim import cuda as vcuda   # importing it does not import numba.cuda
from vanishcalc.sim.summary import LayerSums, host_layer_sums

pytestmark = pytest.mark.cuda


# max |φ'| in closed form: tanh'(0) = 1, relu' = 1, |d/dx e^{-x²}| peaks at x = 1/√2.
_DPHI_MAX = {"relu": 1.0, "tanh": 1.0, "exp(-x**2)": math.sqrt(2.0) * math.exp(-0.5)}

# Cases compared in standard errors with the naive reference: spec, σw, σb, seed.
_STAT_CASES = {
    "relu": ("relu", math.sqrt(2.0), 0.0, 11),           # the critical point of relu
    "tanh": ("tanh", 3.0, 0.5, 12),                      # chaotic, partly saturated
    "gauss": ("exp(-x**2)", 2.0, 0.3, 13),
}
_STAT_SIZE = dict(depth=3, width=16, n_nets=12, q0=1.0, c0=0.5)
_L1_NARROW = dict(spec="tanh", sigma_w=1.7, sigma_b=0.4, depth=1, width=16, n_nets=12, q0=2.0,
                  c0=0.3, seed=21)
_L1_WIDE = dict(spec="tanh", sigma_w=2.0, sigma_b=0.2, depth=1, width=24, n_nets=12,
                q0=1.0, c0=-0.4, seed=22)

# σw = 0: every layer ≥ 1 is the bias alone, h¹₁ = h¹₂ = b, so c = 1 exactly and
# N·q/σb² ~ χ²_N.  The "in2" cases use hand-made layer-0 inputs (``_per_input_case``).
_BIAS_ONLY = dict(spec="tanh", sigma_w=0.0, sigma_b=0.7, depth=2, n_nets=6, q0=1.0, c0=0.2)
_PER_INPUT = dict(spec="tanh", sigma_w=0.6, sigma_b=1.2, depth=1, n_nets=12)


def _per_input_case(width, seed):
    """Layer-0 inputs on which each input's pre-activation and tangent have their own law.

    h⁰₁ ∈ ±[0, 0.3] (tanh' ≈ 1), h⁰₂ ∈ ±[3.5, 4.5] (tanh' ≈ 10⁻³, tanh² ≈ 1): input 2 losing
    its bias (σb² = 1.44 of s₂₂ ≈ 1.8) or taking φ'(h⁰₁) for its tangent (‖v₂‖² × ~10⁵)
    moves its layer-1 χ² statistic by many standard deviations.
    """
    rng = np.random.default_rng(seed)
    n = _PER_INPUT["n_nets"]
    x0 = np.empty((n, 4, width))
    x0[:, 0] = rng.uniform(-0.3, 0.3, (n, width))
    x0[:, 1] = rng.choice([-1.0, 1.0], (n, width)) * rng.uniform(3.5, 4.5, (n, width))
    x0[:, 2:] = rng.standard_normal((n, 2, width)) / math.sqrt(width)
    return dict(_PER_INPUT, seed=seed, x0=x0.tolist())


# Same-stream replay cases (``_replay_dense``): width 6 leaves 2 of 8 threads idle; relu with
# c0 = 1 makes X rank-deficient (two equal columns: the pivot rule); "strided" runs in the
# "wide" child (8 threads, width 13: some threads own two units) with σb = 0 (no bias draws).
_REPLAY = {
    "tanh": dict(spec="tanh", sigma_w=1.5, sigma_b=0.3, depth=3, width=6, n_nets=3, q0=1.0,
                 c0=0.4, seed=41),
    "rank": dict(spec="relu", sigma_w=1.4, sigma_b=0.2, depth=3, width=5, n_nets=2, q0=0.7,
                 c0=1.0, seed=42),
    "strided": dict(spec="exp(-x**2)", sigma_w=2.0, sigma_b=0.0, depth=3, width=13, n_nets=3,
                    q0=1.0, c0=-0.3, seed=43),
    # 64 threads = two warps: the reduction adds warp 1 into warp 0's lanes, then a tree.
    "two_warps": dict(spec="gelu", sigma_w=1.3, sigma_b=0.5, depth=2, width=40, n_nets=2,
                      q0=1.5, c0=0.2, seed=44),
}


# The device reduction (``sim/cuda/summary.py``) on hand-made per-net sums: 21 nets (three
# passes of the 8 net lanes, one partial), 70 layers (three blocks of 32, one partial); "mixed"
# strides the layers of a net over 16 threads.  _reduce_case_sums puts every exclusion rule in.
_REDUCE = {
    "mixed": dict(nets=21, layers=70, width=16, seed=51, flat=False, value_threads=16),
    "flat": dict(nets=21, layers=70, width=16, seed=52, flat=True, value_threads=256),
}
# The front door at the edges of float64 (backend="cuda"): q underflowing (invalid from layer
# 2; the gradient ratio out of range), a net whose units are all 0 (q a true 0, c undefined,
# the tangent exactly 0), and overflow to a non-finite layer.
_API_EDGES = {
    "underflow": dict(spec="tanh", sigma_w=1e-75, sigma_b=0.0, depth=3, width=8, n_nets=3,
                      seed=61),
    "dead": dict(spec="tanh", sigma_w=0.0, sigma_b=0.0, depth=2, width=8, n_nets=2, seed=62),
    "overflow": dict(spec="relu", sigma_w=1e200, sigma_b=0.0, depth=2, width=8, n_nets=2,
                     seed=63),
}


def _reduce_case_sums(nets, layers, width, seed, **_):
    """Per-net sums (7, nets, layers) as the dense kernel writes them, with special nets."""
    rng = np.random.default_rng(seed)
    s = np.zeros((7, nets, layers))
    s[0] = width * rng.uniform(0.5, 2.0, (nets, layers))
    s[1] = width * rng.uniform(0.5, 2.0, (nets, layers))
    s[2] = rng.uniform(-0.9, 0.9, (nets, layers)) * np.sqrt(s[0] * s[1])
    s[3] = np.cumsum(rng.normal(0.0, 0.3, (nets, layers)), axis=1)
    s[4] = np.cumsum(rng.normal(0.0, 0.3, (nets, layers)), axis=1)
    s[5] = rng.integers(0, 2 * width + 1, (nets, layers))
    s[0, 1, 40:], s[6, 1, 40:] = np.inf, 3.0     # net 1 overflows at layer 40
    s[6, 2, 50] = 1.0                            # net 2: a NaN unit at layer 50 only
    s[1, 7, 60] = np.nan                         # net 7: Σh2² NaN at layer 60 only
    s[:2, 3, 10:] = 1e-300 * width               # net 3: q underflows at 10 (subnormal) ...
    s[:3, 3, 12:] = 0.0                          # ... and is 0 from 12 on
    s[:3, 4, 20:] = 0.0                          # net 4: q an exact 0 from a normal q at 20
    s[3, 5, 30:] = -np.inf                       # net 5: tangent exactly 0 from layer 30
    s[3:5, 6, 25:] += 2000.0                     # net 6: log F jumps: ratio out of float64
    return s


def _values_from_sums(s, width):
    """Per-net q, c, grad, log_grad, sat, nonfinite from the kernel's sums, in numpy (the
    definitions of notes/cuda.md, written independently of the device code)."""
    s11, s22, s12, lf1, lf2, sat, bad = s
    with np.errstate(all="ignore"):
        q = (s11 + s22) / (2.0 * width)
        c = s12 / (np.sqrt(s11) * np.sqrt(s22))
        d1, d2 = lf1[:, -1:] - lf1, lf2[:, -1:] - lf2
        grad = 0.5 * (np.exp(d1) + np.exp(d2))
        log_grad = 0.5 * (d1 + d2)
    nonfinite = (bad > 0) | ~np.isfinite(s11) | ~np.isfinite(s22)
    grad[nonfinite] = np.nan
    log_grad[nonfinite] = np.nan
    return dict(q=q, c=c, grad=grad, log_grad=log_grad, sat=sat / (2.0 * width),
                nonfinite=nonfinite)


def _assert_layer_sums_equal(dev: LayerSums, host: LayerSums, per_net, label):
    """Counts exactly; totals and squared deviations to 1e-12 of the sum of magnitudes."""
    from dataclasses import fields
    n_nets = np.asarray(per_net["q"]).shape[0]
    for f in fields(LayerSums):
        a, b = getattr(dev, f.name), getattr(host, f.name)
        assert a.shape == b.shape, f"{label}: {f.name} shape"
        if f.name.startswith("n_"):
            np.testing.assert_array_equal(a, b, err_msg=f"{label}: {f.name}")
            continue
        stat = f.name.split("_", 1)[1]
        x = np.abs(np.asarray(per_net[stat], dtype=float))
        with np.errstate(all="ignore"):
            big = np.nanmax(np.where(np.isfinite(x), x, np.nan), axis=0, initial=0.0)
            tol = 1e-12 * n_nets * (big ** 2 if f.name.startswith("dev2") else big)
        diff = np.abs(a - b)
        assert np.all(diff <= tol), (f"{label}: {f.name} device vs host differ by up to "
                                     f"{np.max(diff - tol):.3g} beyond 1e-12 of the scale")


# The child script.  Group "narrow": one unit per thread; group "wide": several units per thread,
# forced at widths 10–24 by lowering MAX_THREADS to 8.
_CHILD = child_script("""
    from vanishcalc.sim import cuda as vcuda_pkg
    from vanishcalc.sim.cuda import dense as vc     # its globals are patched below
    if group == "wide":         # several units per thread (what widths > 256 do on a GPU)
        vc.MAX_THREADS = 8
        vc._KERNELS.clear()
    out = {"cuda_available": vcuda_pkg.cuda_available(),
           "simulator": vcuda_pkg.simulator_enabled()}
    for name, kw in cases.items():
        kw = dict(kw)
        spec = kw.pop("spec")
        if "x0" in kw:          # hand-made layer-0 inputs: the kernels' raw per-input sums
            import numpy as np
            vc.require_device()
            x0 = np.array(kw["x0"], dtype=np.float64)
            _, dev = vc._seed_sequences(kw["seed"])
            sums = vc._launch(vc.kernels(spec, "float64"), x0, dev,
                              kw["sigma_w"] / math.sqrt(x0.shape[2]), kw["sigma_b"], kw["depth"],
                              0.0)
            out[name] = {"sums": sums.tolist()}
            continue
        if spec == "reduce":    # hand-made per-net sums through the reduction kernels
            import numpy as np
            from numba import cuda as nc
            from vanishcalc.sim.cuda import summary as vs
            vs.VALUE_THREADS = kw.get("value_threads", vs.VALUE_THREADS)
            vs._KERNELS.clear()
            d = nc.to_device(np.load(kw["sums"]))
            r = vs.reduce_on_device(d, kw["width"], kw["flat"])
            out[name] = {"layer_sums": r.layer_sums.as_array().tolist(),
                         **{k: v.tolist() for k, v in r.items()}}
            continue
        if spec.startswith("api:"):     # the front door: Simulation and its warnings
            import warnings
            import numpy as np
            import vanishcalc
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                s = vanishcalc.simulate(spec[4:], backend="cuda", **kw)
            on_device = s.raw.on_device
            import pickle           # a pickled Simulation carries its per-net arrays
            copy = pickle.loads(pickle.dumps(s))
            out[name] = {"sim": s.to_dict(), "on_device": on_device,
                         "pickled_raw_equal": isinstance(copy.raw, dict) and all(
                             np.array_equal(copy.raw[k], s.raw[k], equal_nan=True)
                             for k in s.raw),
                         "warnings": [str(w.message) for w in caught
                                      if issubclass(w.category, vanishcalc.VanishcalcWarning)],
                         "raw": {k: v.tolist() for k, v in s.raw.items()}}
            continue
        r = vc.run_dense(spec, orthogonal=False, **kw)
        sums = r.layer_sums.as_array().tolist()
        out[name] = {k: [[None if (isinstance(x, float) and math.isnan(x)) else x
                          for x in row] for row in v.tolist()] for k, v in r.items()}
        out[name]["layer_sums"] = sums
    if group == "narrow":       # the public entry dispatches backend="cuda" here
        import vanishcalc
        s = vanishcalc.simulate("tanh", 1.5, 0.2, depth=2, width=8, n_nets=2, seed=7,
                                backend="cuda")
        out["api"] = {"q": s.raw["q"].tolist(), "backend": s.params["backend"]}
    print(json.dumps(out))
""")


def _start(group, cases):
    return start(_CHILD, group, cases)


def _collect(proc):
    res = finish(proc)
    for name, val in res.items():
        if isinstance(val, dict) and "sums" in val:
            res[name] = {"sums": np.array(val["sums"], dtype=float)}
        elif isinstance(val, dict) and "sim" in val:
            val["raw"] = {k: np.array(v, dtype=bool if k == "nonfinite" else float)
                          for k, v in val["raw"].items()}
        elif isinstance(val, dict) and name != "api":
            res[name] = {k: np.array([[np.nan if x is None else x for x in row] for row in v],
                                     dtype=bool if k == "nonfinite" else float)
                         for k, v in val.items()}
            if "layer_sums" in res[name]:
                res[name]["layer_sums"] = LayerSums.from_array(res[name]["layer_sums"])
    return res


@pytest.fixture(scope="session")
def cuda_runs(tmp_path_factory):
    """All kernel runs of this file, in two child processes running in parallel."""
    narrow = {name: dict(spec=spec, sigma_w=sw, sigma_b=sb, seed=seed, **_STAT_SIZE)
              for name, (spec, sw, sb, seed) in _STAT_CASES.items()}
    small = dict(spec="tanh", sigma_w=1.5, sigma_b=0.2, depth=2, width=8, n_nets=2)
    narrow.update(
        det_a=dict(small, seed=7), det_b=dict(small, seed=7), det_c=dict(small, seed=8),
        f32=dict(small, seed=7, dtype="float32"),
        odd=dict(small, width=7, n_nets=2, seed=9),
        l1_narrow=_L1_NARROW,
    )
    wide = dict(l1_wide=_L1_WIDE)
    # Per-input layer-1 laws from hand-made inputs (both kernel families; width 12 > 8 is
    # "wide" in that child) and σw = 0 (h¹ = b exactly, for both inputs).
    narrow["in2_narrow"] = _per_input_case(width=16, seed=31)
    wide["in2_wide"] = _per_input_case(width=12, seed=32)
    narrow["bias_narrow"] = dict(_BIAS_ONLY, width=8, seed=33)
    wide["bias_wide"] = dict(_BIAS_ONLY, width=10, seed=34)
    # exp(-x**2) runs in the "wide" child (width 16 > 8 threads: two units per thread): the
    # naive-reference test then covers both layouts, and balances the children.
    wide["gauss"] = narrow.pop("gauss")
    narrow.update({f"replay_{k}": v for k, v in _REPLAY.items() if k != "strided"})
    wide["replay_strided"] = _REPLAY["strided"]
    # The device reduction: hand-made sums (several layer blocks and net lanes, every
    # exclusion rule), and the front door at the edges of float64.
    for k, v in _REDUCE.items():     # as files: too long for the command line
        path = tmp_path_factory.mktemp("reduce") / f"{k}.npy"
        np.save(path, _reduce_case_sums(**v))
        wide[f"reduce_{k}"] = dict(spec="reduce", sums=str(path), width=v["width"],
                                   flat=v["flat"], value_threads=v["value_threads"])
    narrow.update({f"api_{k}": dict(spec=f"api:{v['spec']}", **{a: b for a, b in v.items()
                                                                 if a != "spec"})
                   for k, v in _API_EDGES.items()})
    procs = [_start("narrow", narrow), _start("wide", wide)]
    res = {}
    for p in procs:
        res.update(_collect(p))
    return res


# ---------------------------------------------------------------- independent references


def _naive_dense(spec, *, sigma_w, sigma_b, depth, width, n_nets, q0, c0, rng):
    """Plain numpy: fresh Gaussian W_l, b_l per layer, tangents pushed forward; stored W."""
    act = activation(spec)
    phi, dphi = act.numpy, act.derivative(1).numpy
    thr = 1e-3 * _DPHI_MAX[spec]
    n, N = n_nets, width
    u, v = rng.standard_normal((2, n, N))
    e1 = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = v - np.sum(v * e1, axis=1, keepdims=True) * e1
    e2 = v / np.linalg.norm(v, axis=1, keepdims=True)
    r = math.sqrt(q0 * N)
    h = np.stack([r * e1, r * (c0 * e1 + math.sqrt(1 - c0 * c0) * e2)], axis=1)   # (n, 2, N)
    t = rng.standard_normal((n, 2, N)) / math.sqrt(N)
    q, c, F, sat = [], [], [], []
    for layer in range(depth + 1):
        q.append(np.mean(h ** 2, axis=(1, 2)))
        c.append(np.sum(h[:, 0] * h[:, 1], 1)
                 / np.sqrt(np.sum(h[:, 0] ** 2, 1) * np.sum(h[:, 1] ** 2, 1)))
        F.append(np.sum(t ** 2, axis=2))
        d = np.asarray(dphi(h), dtype=float) * np.ones_like(h)
        sat.append(np.mean(np.abs(d) < thr, axis=(1, 2)))
        if layer == depth:
            break
        W = rng.standard_normal((n, N, N)) * (sigma_w / math.sqrt(N))
        b = rng.standard_normal((n, 1, N)) * sigma_b
        t = np.einsum("nij,naj->nai", W, d * t)
        h = np.einsum("nij,naj->nai", W, phi(h)) + b
    F = np.stack(F, axis=1)                                  # (n, depth+1, 2)
    return {"q": np.stack(q, 1), "c": np.stack(c, 1), "sat": np.stack(sat, 1),
            "grad": np.mean(F[:, -1:, :] / F, axis=2)}


def _replay_dense(spec, *, sigma_w, sigma_b, depth, width, n_nets, q0, c0, seed, max_threads):
    """The CUDA dense kernel's algorithm in plain Python/numpy, from the same random streams.

    Inputs: numpy ``default_rng`` of the first child of ``SeedSequence([seed, 0x5CDA])``
    (u, v then the tangents, as ``_naive_dense``); weights: one xoroshiro128+ stream per
    thread from raw PCG64 words of the second child.  Each layer: X = [φ(h1), φ(h2), φ'(h1) t̂1,
    φ'(h2) t̂2] with t̂ the unit-norm tangent, L = chol(XᵀX) (a column with pivot ≤ 1e-12 of its
    diagonal set to 0), and for each unit, in its thread's order, z ~ N(0, I₄) from two
    Box–Muller pairs, b = σb·(first of a third pair) if σb > 0; h_a = σw/√N (Lz)_a + b,
    t_a = σw/√N (Lz)_{2+a}.
    """
    act = activation(spec)
    phi, dphi = act.numpy, act.derivative(1).numpy
    host, dev = np.random.SeedSequence([seed, 0x5CDA]).spawn(2)
    rng = np.random.default_rng(host)
    n, N = n_nets, width
    u, v = rng.standard_normal((2, n, N))
    e1 = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = v - np.sum(v * e1, axis=1, keepdims=True) * e1
    nv = np.linalg.norm(v, axis=1, keepdims=True)
    e2 = np.divide(v, nv, out=np.zeros_like(v), where=nv > 0)
    r = math.sqrt(q0 * N)
    h = np.stack([r * e1, r * (c0 * e1 + math.sqrt(max(0.0, 1 - c0 * c0)) * e2)], axis=1)
    t = rng.standard_normal((n, 2, N)) / math.sqrt(N)
    threads = min(1 << (N - 1).bit_length(), max_threads)
    words = np.random.PCG64(dev).random_raw(2 * n * threads).reshape(-1, 2)
    streams = [Stream(a if (a or b) else 1, b) for a, b in words]
    s = sigma_w / math.sqrt(N)
    q = np.empty((n, depth + 1))
    c = np.empty((n, depth + 1))
    logF = np.zeros((n, 2, depth + 1))
    for net in range(n):
        hn, tn = h[net].copy(), t[net].copy()
        for layer in range(depth + 1):
            q[net, layer] = np.mean(hn ** 2)
            c[net, layer] = hn[0] @ hn[1] / math.sqrt((hn[0] @ hn[0]) * (hn[1] @ hn[1]))
            f = np.sum(tn ** 2, axis=1)
            logF[net, :, layer] = np.log(f) if layer == 0 else logF[net, :, layer - 1] + np.log(f)
            if layer == depth:
                break
            tn = tn / np.sqrt(f)[:, None]
            X = np.column_stack([phi(hn[0]), phi(hn[1]), dphi(hn[0]) * tn[0], dphi(hn[1]) * tn[1]])
            G = X.T @ X
            L = np.zeros((4, 4))
            for j in range(4):
                d = G[j, j] - L[j, :j] @ L[j, :j]
                if d <= 1e-12 * G[j, j] or d <= 0:
                    continue
                L[j, j] = math.sqrt(d)
                for i in range(j + 1, 4):
                    L[i, j] = (G[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
            new_h, new_t = np.empty_like(hn), np.empty_like(tn)
            for tid in range(threads):
                st = streams[net * threads + tid]
                for unit in range(tid, N, threads):
                    z = np.array(st.normal_pair() + st.normal_pair())
                    b = sigma_b * st.normal_pair()[0] if sigma_b > 0 else 0.0
                    y = s * (L @ z)
                    new_h[:, unit] = y[:2] + b
                    new_t[:, unit] = y[2:]
            hn, tn = new_h, new_t
    grad = np.mean(np.exp(logF[:, :, -1:] - logF), axis=1)
    return {"q": q, "c": c, "grad": grad}


def _layer1_moments(kw):
    """Exact mean and variance of q¹ and grad⁰ (depth 1) given the layer-0 inputs.

    Given h⁰, unit i of layer 1 is (wᵢ·φ(h⁰₁) + bᵢ, wᵢ·φ(h⁰₂) + bᵢ), Gaussian with covariance
    Σ_ab = σw² φ(h⁰_a)·φ(h⁰_b)/N + σb², independent over units; the tangent row wᵢ·vₐ,
    vₐ = φ'(h⁰ₐ) ⊙ t⁰ₐ, has covariance σw² v_a·v_b/N.  Fourth moments by Isserlis.
    """
    act = activation(kw["spec"])
    phi, dphi = act.numpy, act.derivative(1).numpy
    N, sw2, sb2 = kw["width"], kw["sigma_w"] ** 2, kw["sigma_b"] ** 2
    from vanishcalc.sim.cuda import dense
    host_ss, _ = dense._seed_sequences(kw["seed"])
    x0 = dense._inputs(np.random.default_rng(host_ss), kw["n_nets"], N, kw["q0"], kw["c0"])
    a, b = phi(x0[:, 0]), phi(x0[:, 1])
    s11 = sw2 * np.sum(a * a, 1) / N + sb2
    s22 = sw2 * np.sum(b * b, 1) / N + sb2
    s12 = sw2 * np.sum(a * b, 1) / N + sb2
    q_mean = (s11 + s22) / 2
    q_var = N * 2 * (s11 ** 2 + s22 ** 2 + 2 * s12 ** 2) / (2 * N) ** 2
    v1 = dphi(x0[:, 0]) * x0[:, 2]
    v2 = dphi(x0[:, 1]) * x0[:, 3]
    f01, f02 = np.sum(x0[:, 2] ** 2, 1), np.sum(x0[:, 3] ** 2, 1)
    k11, k22 = sw2 * np.sum(v1 * v1, 1) / N, sw2 * np.sum(v2 * v2, 1) / N
    k12 = sw2 * np.sum(v1 * v2, 1) / N
    g_mean = 0.5 * (N * k11 / f01 + N * k22 / f02)
    g_var = 0.25 * (2 * N * k11 ** 2 / f01 ** 2 + 2 * N * k22 ** 2 / f02 ** 2
                    + 2 * 2 * N * k12 ** 2 / (f01 * f02))
    return {"q": (q_mean, q_var), "grad": (g_mean, g_var)}


def _pooled_z(values, mean, var):
    return float(np.sum(values - mean) / math.sqrt(np.sum(var)))


def _assert_vs_naive(sim, ref, n_sim, width, label, z_max=5.0):
    depth = sim["q"].shape[1] - 1
    n_ref = ref["q"].shape[0]
    for key in ("q", "c", "grad", "sat"):
        for layer in range(1, depth + 1):
            col = ref[key][:, layer]
            sd = float(np.std(col, ddof=1))
            se = sd * math.sqrt(1.0 / n_sim + 1.0 / n_ref)
            floor = 1.0 / (2 * width * n_sim) if key == "sat" else 1e-9   # one unit of sat
            diff = abs(float(np.mean(sim[key][:, layer])) - float(np.mean(col)))
            assert diff <= z_max * se + floor, (
                f"{label}: {key}[{layer}] cuda mean {np.mean(sim[key][:, layer]):.6g} vs naive "
                f"{np.mean(col):.6g}: |diff| = {diff:.3g} > {z_max} SE ({se:.3g})")


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("case", sorted(_STAT_CASES))
def test_run_dense_vs_naive_numpy(cuda_runs, case):
    spec, sw, sb, _ = _STAT_CASES[case]
    sim = cuda_runs[case]
    kw = {k: _STAT_SIZE[k] for k in ("depth", "width", "q0", "c0")}
    ref = _naive_dense(spec, sigma_w=sw, sigma_b=sb, n_nets=4000, rng=np.random.default_rng(99),
                       **kw)
    n = _STAT_SIZE["n_nets"]
    for key in ("q", "c", "grad", "sat", "nonfinite"):
        assert sim[key].shape == (n, kw["depth"] + 1), key
    assert not sim["nonfinite"].any()
    np.testing.assert_allclose(sim["q"][:, 0], kw["q0"], rtol=1e-12)
    np.testing.assert_allclose(sim["c"][:, 0], kw["c0"], rtol=1e-12)
    np.testing.assert_allclose(sim["grad"][:, -1], 1.0, rtol=1e-12)
    _assert_vs_naive(sim, ref, n, kw["width"], case)
    if case == "relu":    # half the units of a relu net are off: the check has teeth
        assert 0.35 < np.mean(sim["sat"][:, 1:]) < 0.65
    if case == "tanh":    # σw = 3 saturates a visible fraction of tanh units
        assert np.mean(sim["sat"][:, 1:]) > 0.05


@pytest.mark.parametrize("case", sorted(_REPLAY))
def test_run_dense_replays_exact_law_from_same_streams(cuda_runs, case):
    """The kernel is the exact-law algorithm, draw for draw: an independent Python replay of it
    from the same streams gives the same q, c, grad to rounding (float64)."""
    kw = dict(_REPLAY[case])
    sim = cuda_runs[f"replay_{case}"]
    ref = _replay_dense(kw.pop("spec"), max_threads=8 if case == "strided" else 256, **kw)
    for key in ("q", "c", "grad"):
        np.testing.assert_allclose(sim[key], ref[key], rtol=1e-9, atol=1e-12, err_msg=key)
    if case == "rank":        # c = 1 stays exactly 1: the dependent column is dropped
        np.testing.assert_allclose(sim["c"], 1.0, rtol=1e-12)


@pytest.mark.parametrize("case", ["l1_narrow", "l1_wide"])
def test_run_dense_layer1_vs_exact_conditional_moments(cuda_runs, case):
    kw = _L1_NARROW if case == "l1_narrow" else _L1_WIDE
    sim = cuda_runs[case]
    m = _layer1_moments(kw)
    # q¹ tests σw, σb and the layer-0 inputs; grad⁰ = F¹/F⁰ tests the tangent pushed through
    # the same W.  Pooled over nets, z is N(0, 1) up to a small non-Gaussianity.
    for key, vals in (("q", sim["q"][:, 1]), ("grad", sim["grad"][:, 0])):
        z = _pooled_z(vals, *m[key])
        assert abs(z) < 4.5, f"{case}: {key} pooled z = {z:.2f} against exact conditional moments"
    assert np.all(np.abs(sim["c"][:, 1]) <= 1.0 + 1e-12)


def test_run_dense_seed_reproducible_and_seed_sensitive(cuda_runs):
    a, b, c = cuda_runs["det_a"], cuda_runs["det_b"], cuda_runs["det_c"]
    for key in ("q", "c", "grad", "sat", "nonfinite"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["q"][:, 1:], c["q"][:, 1:])


def test_simulate_backend_cuda_dispatches_to_run_dense(cuda_runs):
    api = cuda_runs["api"]
    assert api["backend"] == "cuda"
    np.testing.assert_array_equal(np.array(api["q"]), cuda_runs["det_a"]["q"])


def test_run_dense_float32_tracks_float64_same_streams(cuda_runs):
    f32, f64 = cuda_runs["f32"], cuda_runs["det_a"]
    for key in ("q", "c", "grad"):
        np.testing.assert_allclose(f32[key], f64[key], rtol=2e-3, atol=1e-5, err_msg=key)
    assert not np.array_equal(f32["q"][:, 1:], f64["q"][:, 1:])   # really float32 arithmetic


def test_run_dense_odd_width_exact_layer0(cuda_runs):
    sim = cuda_runs["odd"]
    assert sim["q"].shape == (2, 3)
    np.testing.assert_allclose(sim["q"][:, 0], 1.0, rtol=1e-12)
    assert np.all(np.isfinite(sim["grad"]))


def test_cuda_available_false_under_simulator(cuda_runs):
    if REAL_GPU:
        assert cuda_runs["cuda_available"] is True
    else:
        assert cuda_runs["simulator"] is True
        assert cuda_runs["cuda_available"] is False   # backend="auto" never picks the simulator


_BASE = dict(sigma_w=1.0, sigma_b=0.0, depth=2, width=8, n_nets=2, q0=1.0, c0=0.5,
             orthogonal=False, seed=0, dtype="float64")


@pytest.mark.parametrize("change, word", [
    (dict(width=0), "width"), (dict(depth=-1), "depth"), (dict(n_nets=0), "n_nets"),
    (dict(width=2.5), "width"), (dict(sigma_w=float("nan")), "sigma_w"),
    (dict(sigma_b=-1.0), "sigma_b"), (dict(q0=0.0), "q0"), (dict(c0=1.5), "c0"),
    (dict(seed=-3), "seed"), (dict(dtype="float16"), "dtype"), (dict(width=1), "width"),
])
def test_run_dense_bad_input_names_argument(change, word):
    with pytest.raises(VanishcalcError, match=word):
        vcuda.run_dense("tanh", **{**_BASE, **change})


def test_run_dense_orthogonal_refused_with_reason():
    with pytest.raises(vcuda.CudaOrthogonalError, match="QR") as info:
        vcuda.run_dense("tanh", **{**_BASE, "orthogonal": True})
    assert "backend='cpu'" in str(info.value)
    assert isinstance(info.value, ValueError)


_NO_GPU_CHILD = textwrap.dedent("""
    import json
    from vanishcalc.sim import cuda as vc
    if vc.cuda_available():
        print(json.dumps({"skip": "a real CUDA GPU is present"}))
    else:
        try:
            vc.run_dense("tanh", sigma_w=1.0, depth=1, width=4, n_nets=1, seed=0)
        except vc.CudaUnavailableError as exc:
            print(json.dumps({"msg": str(exc), "value_error": isinstance(exc, ValueError)}))
        else:
            print(json.dumps({"msg": None}))
""")


def test_run_dense_without_gpu_or_simulator_says_how():
    proc = subprocess.run([sys.executable, "-c", _NO_GPU_CHILD], capture_output=True, text=True,
                          env=child_env(simulate=False), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in res:
        pytest.skip(res["skip"])
    assert res["msg"] is not None, "run_dense ran without a GPU and without the simulator"
    assert "NUMBA_ENABLE_CUDASIM=1" in res["msg"]
    assert "vanishcalc[cuda]" in res["msg"]
    assert res["value_error"]


def _assert_chi2(total, dof, label, alpha=1e-6):
    """``total`` ~ χ²_dof: two-sided test at level ``alpha``."""
    p = 2.0 * min(chi2.cdf(total, dof), chi2.sf(total, dof))
    assert p > alpha, (f"{label}: χ² = {total:.4g} on {dof} dof (expected {dof} ± "
                       f"{math.sqrt(2 * dof):.3g}), two-sided p = {p:.2g}")


@pytest.mark.parametrize("case", ["in2_narrow", "in2_wide"])
def test_run_dense_layer1_each_input_vs_exact_chi2(cuda_runs, case):
    # Given h⁰, unit i of input a at layer 1 is wᵢ·φ(h⁰_a)σw/√N + bᵢ ~ N(0, s_aa),
    # s_aa = σw²‖φ(h⁰_a)‖²/N + σb², independent over units and nets: Σᵢ(h¹_a,i)²/s_aa ~ χ²_N.
    # The tangent t¹_a = σw/√N W(φ'(h⁰_a) ⊙ t⁰_a) gives ‖t¹_a‖² / (σw²‖v_a‖²/N) ~ χ²_N.
    # Each input separately, so a bias or a φ' taken from the wrong input is caught.
    width = 16 if case == "in2_narrow" else 12
    kw = _per_input_case(width, 31 if case == "in2_narrow" else 32)
    x0 = np.array(kw["x0"])
    sums = cuda_runs[case]["sums"]
    n, N = kw["n_nets"], width
    assert sums.shape == (n, 2, vcuda.N_STATS)
    act = activation(kw["spec"])
    phi, dphi = act.numpy, act.derivative(1).numpy
    sw2, sb2 = kw["sigma_w"] ** 2, kw["sigma_b"] ** 2
    for a in range(2):
        h0, t0 = x0[:, a], x0[:, 2 + a]
        # layer 0 is the input itself
        np.testing.assert_allclose(sums[:, 0, a], np.sum(h0 ** 2, 1), rtol=1e-12)
        np.testing.assert_allclose(sums[:, 0, 3 + a], np.log(np.sum(t0 ** 2, 1)), rtol=1e-12)
        s_aa = sw2 * np.sum(phi(h0) ** 2, 1) / N + sb2
        _assert_chi2(float(np.sum(sums[:, 1, a] / s_aa)), n * N, f"{case}: Σ(h¹_{a + 1})²")
        f_scale = sw2 * np.sum((dphi(h0) * t0) ** 2, 1) / N
        _assert_chi2(float(np.sum(np.exp(sums[:, 1, 3 + a]) / f_scale)), n * N,
                     f"{case}: ‖t¹_{a + 1}‖²")
    assert not sums[:, :, 6].any()


@pytest.mark.parametrize("case", ["bias_narrow", "bias_wide"])
def test_run_dense_bias_only_shared_by_inputs_exact(cuda_runs, case):
    # σw = 0: h^l = b_l for both inputs (one bias per layer, shared), so c^l = 1 exactly and
    # N q^l / σb² ~ χ²_N, independent over layers and nets.
    kw = dict(_BIAS_ONLY, width=8 if case == "bias_narrow" else 10)
    sim = cuda_runs[case]
    n, N, depth = kw["n_nets"], kw["width"], kw["depth"]
    np.testing.assert_allclose(sim["c"][:, 1:], 1.0, rtol=1e-14, atol=0)
    np.testing.assert_allclose(sim["q"][:, 0], kw["q0"], rtol=1e-12)
    _assert_chi2(float(np.sum(sim["q"][:, 1:] * N / kw["sigma_b"] ** 2)), n * N * depth,
                 f"{case}: N q/σb²")
    assert not sim["nonfinite"].any()


@pytest.mark.parametrize("case", sorted(_STAT_CASES))
def test_run_dense_vs_cpu_backend(cuda_runs, case):
    """Issue 6: the CUDA and CPU backends agree within standard errors on q, c, grad and
    saturation (different RNG streams and normal generators, both sampling W·X from its exact
    law; the naive explicit-weight reference above checks that law itself)."""
    from vanishcalc.sim import cpu
    spec, sw, sb, _ = _STAT_CASES[case]
    kw = {k: _STAT_SIZE[k] for k in ("depth", "width", "q0", "c0")}
    ref = cpu.run_dense(activation(spec), sigma_w=sw, sigma_b=sb, n_nets=4000, orthogonal=False,
                        seed=2024, dtype="float64", **kw)
    ref = {k: np.asarray(v, dtype=float) for k, v in ref.items() if k != "nonfinite"}
    _assert_vs_naive(cuda_runs[case], ref, _STAT_SIZE["n_nets"], kw["width"], f"{case} vs cpu")


# ---------------------------------------------------------------- the reduction on the device


def _run_cases(cuda_runs):
    return sorted(k for k, v in cuda_runs.items()
                  if isinstance(v, dict) and "layer_sums" in v and not k.startswith("reduce_"))


def test_device_layer_sums_equal_host_reduction_for_every_run(cuda_runs):
    """Every run_dense case: the per-layer sums reduced on the device equal
    ``summary.host_layer_sums`` (the CPU backend's reduction) of the same per-net arrays."""
    from vanishcalc.sim.summary import has_flat_piece
    names = _run_cases(cuda_runs)
    assert len(names) >= 10
    for name in names:
        res = cuda_runs[name]
        per_net = {k: v for k, v in res.items() if k != "layer_sums"}
        spec = _REPLAY.get(name[len("replay_"):], {}).get("spec") or \
            dict(_STAT_CASES).get(name, ("tanh",))[0]
        host = host_layer_sums(per_net, has_flat_piece(activation(spec)))
        _assert_layer_sums_equal(res["layer_sums"], host, per_net, name)


@pytest.mark.parametrize("case", sorted(_REDUCE))
def test_device_reduction_of_hand_made_sums(cuda_runs, case):
    """Hand-made sums with every exclusion rule: the device's per-net values equal their
    definitions (numpy, here) and its per-layer sums equal the host reduction of them."""
    kw = _REDUCE[case]
    res = cuda_runs[f"reduce_{case}"]
    sums = _reduce_case_sums(**kw)
    ref = _values_from_sums(sums, kw["width"])
    per_net = {k: np.array(res[k], dtype=bool if k == "nonfinite" else float) for k in ref}
    for k in ref:
        np.testing.assert_allclose(per_net[k], ref[k], rtol=1e-15, atol=0, equal_nan=True,
                                   err_msg=f"{case}: per-net {k}")
    dev = res["layer_sums"]
    _assert_layer_sums_equal(dev, host_layer_sums(ref, kw["flat"]), ref, case)
    # The rules have teeth here: the special nets of _reduce_case_sums are seen where placed.
    layers = np.arange(kw["layers"])
    np.testing.assert_array_equal(
        dev.n_nonfinite, (layers >= 40).astype(int) + (layers == 50) + (layers == 60))
    assert dev.n_invalid_q[9] == 0 and dev.n_invalid_q[10] == 1     # net 3 from layer 10
    assert dev.n_undefined_c[20] == 1                               # net 4's c at layer 20
    assert dev.n_invalid_grad[0] == (1 if kw["flat"] else 2)        # nets 5 (unless flat), 6
    assert dev.n_invalid_grad[kw["layers"] - 1] == (0 if kw["flat"] else 1)


@pytest.mark.parametrize("case", sorted(_API_EDGES))
def test_simulate_cuda_summary_and_warnings_as_host_reduction(cuda_runs, case):
    """The front door with backend="cuda" at the edges of float64: means, standard errors,
    non-finite and invalid layers and the warnings equal those the host reduction gives for
    the same per-net arrays; the per-net arrays stayed on the device until read."""
    import warnings
    from vanishcalc.sim import api
    from vanishcalc.sim.summary import has_flat_piece
    res = cuda_runs[f"api_{case}"]
    assert res["on_device"] is True
    assert res["pickled_raw_equal"] is True
    sim = res["sim"]
    params = dict(sim["params"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        host = api._summarize(res["raw"], params,
                              has_flat_piece(activation(_API_EDGES[case]["spec"])))
    ref = host.to_dict()
    from vanishcalc.errors import VanishcalcWarning
    assert [str(w.message) for w in caught
            if issubclass(w.category, VanishcalcWarning)] == res["warnings"]
    assert sim["first_nonfinite_layer"] == ref["first_nonfinite_layer"]
    assert sim["first_invalid_layer"] == ref["first_invalid_layer"]
    for k in ("q", "c", "grad", "q_se", "c_se", "grad_se", "saturation", "log_grad"):
        a = np.array(sim[k], dtype=float)
        np.testing.assert_allclose(a, np.array(ref[k], dtype=float), rtol=1e-12, atol=1e-300,
                                   equal_nan=True, err_msg=f"{case}: {k}")
    for k in ("nonfinite", "n_finite"):
        assert sim[k] == ref[k], k
    expected = {"underflow": "q (and c with it)", "dead": "correlation c is undefined",
                "overflow": "overflowed or became NaN"}[case]
    assert any(expected in w for w in res["warnings"]), res["warnings"]


# ---------------------------------------------------------------- numba-cuda vs numpy


def _numpy_removed_row_stack(*_):
    # What numba-cuda 0.30.4's typing import raises under numpy 2.5 (np.row_stack removed).
    raise AttributeError("module 'numpy' has no attribute 'row_stack'")


def test_incompatible_numpy_is_a_clear_error_for_backend_cuda(monkeypatch):
    pytest.importorskip("numba.cuda")
    if vcuda.simulator_enabled():
        pytest.skip("the simulator types nothing, so it is not affected")
    monkeypatch.setattr(vcuda.runtime, "_load_cuda_typing", _numpy_removed_row_stack)
    with pytest.raises(vcuda.CudaUnavailableError) as info:
        vcuda.run_dense("tanh", **_BASE)
    msg = str(info.value)
    assert "row_stack" in msg and np.__version__ in msg and "numba-cuda" in msg
    assert "numpy<2.5" in msg
    assert isinstance(info.value, VanishcalcError)


def test_incompatible_numpy_makes_auto_warn_and_use_the_cpu(monkeypatch):
    cuda_mod = pytest.importorskip("numba.cuda")
    if vcuda.simulator_enabled():
        pytest.skip("the simulator types nothing, so it is not affected")
    from vanishcalc.errors import VanishcalcWarning
    monkeypatch.setattr(vcuda.runtime, "_load_cuda_typing", _numpy_removed_row_stack)
    monkeypatch.setattr(cuda_mod, "is_available", lambda: True)      # as on a GPU machine
    with pytest.warns(VanishcalcWarning, match="numpy<2.5"):
        assert vcuda.cuda_available() is False


# ---------------------------------------------------------------- compile once per machine


class _FakeCuda:
    """Stands in for numba.cuda in ``compile_kernels``: records jit options, no GPU needed."""

    def __init__(self, cache_fails=False):
        self.calls = []
        self.cache_fails = cache_fails

    def jit(self, sig, **opts):
        def compile_(fn):
            self.calls.append(opts)
            if opts.get("cache") and self.cache_fails:
                raise OSError("read-only cache directory")
            return ("kernel", fn.__name__)
        return compile_

    def get_current_device(self):
        import types
        return types.SimpleNamespace(compute_capability=(9, 0))


def _fake_funcs():
    def dense_kernel():
        pass
    return {"dense": (dense_kernel, None, 256)}


def test_compile_kernels_announces_first_compilation_once_and_asks_for_disk_cache(
        monkeypatch, tmp_path, capsys):
    if vcuda.simulator_enabled():
        pytest.skip("the simulator compiles nothing")
    fake = _FakeCuda()
    monkeypatch.setattr(vcuda.runtime, "cuda", fake)
    monkeypatch.setenv("VANISHCALC_CACHE_DIR", str(tmp_path))
    act = activation("tanh")
    k = vcuda.compile_kernels(_fake_funcs(), act, "float32", seconds=5)
    assert k == {"dense": ("kernel", "dense_kernel")}
    assert fake.calls == [{"cache": True}]
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "vanishcalc: compiling CUDA kernels for tanh (float32): first use, ~5 s" in err
    vcuda.compile_kernels(_fake_funcs(), act, "float32", seconds=5)   # a later process
    assert capsys.readouterr().err == ""
    vcuda.compile_kernels(_fake_funcs(), act, "float64", seconds=5)   # another dtype
    assert "tanh (float64)" in capsys.readouterr().err


def test_compile_kernels_unusable_disk_cache_compiles_in_memory_with_warning(monkeypatch,
                                                                             tmp_path):
    if vcuda.simulator_enabled():
        pytest.skip("the simulator compiles nothing")
    from vanishcalc.errors import VanishcalcWarning
    fake = _FakeCuda(cache_fails=True)
    monkeypatch.setattr(vcuda.runtime, "cuda", fake)
    monkeypatch.setenv("VANISHCALC_CACHE_DIR", str(tmp_path))
    with pytest.warns(VanishcalcWarning, match="read-only cache"):
        k = vcuda.compile_kernels(_fake_funcs(), activation("relu"), "float64", seconds=5)
    assert k["dense"] == ("kernel", "dense_kernel")
    assert fake.calls == [{"cache": True}, {}]


# The index key numba-cuda's disk cache files a kernel under (``CUDACache._index_key``: the
# signature, the codegen's (toolkit, compute capability), the numba-cuda version, hashes of the
# bytecode and of the pickled closure), computed without a GPU: the codegen is a stand-in
# for an sm_90 device.  A key that changed from one process to the next would make every
# process compile again (numba would append a new entry each time and never hit).
_CACHE_KEY_CHILD = textwrap.dedent("""
    import json, sys, types
    try:
        from numba.cuda.dispatcher import CUDACache
    except ImportError as exc:
        print(json.dumps({"skip": f"numba.cuda cannot be imported: {exc}"}))
        raise SystemExit(0)
    from vanishcalc.sim import cuda as vc
    from vanishcalc.sim.ptx import kernel_functions      # every kernel: dense, reduction,
    vc.import_cuda()                                     # composed stack, RNN
    codegen = types.SimpleNamespace(magic_tuple=lambda: ("toolkit", (9, 0)))
    out = {}
    for spec, dtype in [("tanh", "float64"), ("tanh", "float32"), ("relu", "float64"),
                        ("x*erf(x)", "float64")]:
        for name, (fn, sig, _) in kernel_functions(spec, dtype).items():
            cache = CUDACache(fn)
            key = cache._index_key(sig.args, codegen)
            out[f"{spec}|{dtype}|{name}"] = {"key": repr(key), "path": cache.cache_path}
    print(json.dumps(out))
""")


def test_kernel_disk_cache_keys_stable_across_processes_and_keyed_by_phi_and_dtype(tmp_path):
    """What makes numba-cuda's disk cache (``compile_kernels``: ``cuda.jit(sig, cache=True)``)
    hit in a second process: the same key for the same (φ, dtype, kernel) in two fresh
    processes (string hashing randomized differently), different keys for another φ or
    dtype, one key for the reduction kernels whatever φ, and the files under
    ``NUMBA_CACHE_DIR`` when set.  Loading compiled code needs a GPU: not checked here."""
    env = child_env(simulate=False)
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", _CACHE_KEY_CHILD], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(env, PYTHONHASHSEED=str(seed)))
             for seed in (1, 2)]
    runs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        runs.append(json.loads(out.strip().splitlines()[-1]))
    if "skip" in runs[0]:
        pytest.skip(runs[0]["skip"])
    first, second = runs
    assert first == second                       # stable across processes
    keys = {name: v["key"] for name, v in first.items()}
    dense = {name.rsplit("|", 1)[0]: k for name, k in keys.items() if name.endswith("|dense")}
    assert len(set(dense.values())) == len(dense) == 4      # per φ and dtype
    for kernel in vcuda.SUMMARY_KERNELS:                   # the reduction: one for every φ
        assert len({k for name, k in keys.items() if name.endswith("|" + kernel)}) == 1
    for v in first.values():
        assert v["path"].startswith(str(tmp_path))


def test_compile_kernels_without_phi_announces_the_reduction(monkeypatch, tmp_path, capsys):
    # The reduction kernels close over no φ: compile_kernels(funcs, None, ...) names them.
    if vcuda.simulator_enabled():
        pytest.skip("the simulator compiles nothing")
    fake = _FakeCuda()
    monkeypatch.setattr(vcuda.runtime, "cuda", fake)
    monkeypatch.setenv("VANISHCALC_CACHE_DIR", str(tmp_path))
    k = vcuda.compile_kernels({"layer_sums": _fake_funcs()["dense"]}, None, "float64", seconds=2)
    assert k == {"layer_sums": ("kernel", "dense_kernel")} and fake.calls == [{"cache": True}]
    assert "compiling CUDA kernels for the per-layer reduction (layer_sums)" in \
        capsys.readouterr().err
    vcuda.compile_kernels({"layer_sums": _fake_funcs()["dense"]}, None, "float64", seconds=2)
    assert capsys.readouterr().err == ""
