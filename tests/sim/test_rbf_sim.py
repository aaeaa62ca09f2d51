"""The RBF op of the simulator (sim/program.py OP_RBF; CPU body sim/cpu/composed.py ``_rbf``,
CUDA body sim/cuda/composed.py ``rbf``): against independent numpy arithmetic, the CUDA body
against a numpy replay of the same random streams (simulator), the mean field layer by layer
(``check``), a deep net at the solved scale against the naive one, and PTX for real GPUs.
notes/rbf.md.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tests.reference.replay import KernelStreams, standardize_rows, stats
from tests.sim.cudasim import child_script, finish, start
from vanishcalc.activation import activation
from vanishcalc.errors import VanishcalcError, VanishcalcWarning
from vanishcalc.maps import RBF, Dense, LayerNorm, serial
from vanishcalc.sim.program import trace as _trace
from vanishcalc.solve.rbf_scale import rbf_scale


# ---------------------------------------------------------------- the CPU body's arithmetic


def test_rbf_cpu_body_vs_numpy_deterministic_centers():
    """σc = 0 makes every center μc·1, so the body's distances and tangent are plain
    arithmetic: compared with numpy written from the definition."""
    from vanishcalc.sim.compile import cpu_cfuncs
    from vanishcalc.sim.cpu.composed import _rbf
    from vanishcalc.sim.cpu.rng import seed_states
    rng = np.random.default_rng(7)
    X, V = rng.standard_normal((9, 5)), rng.standard_normal((9, 5))
    phi, dphi = cpu_cfuncs(activation("exp(-x**2)"))
    Xs, Vs = X.copy(), V.copy()
    _rbf(seed_states(1, 1)[0], phi, dphi, Xs, Vs, 0.0, 0.3, 10.0, 4.0, 0.0)
    d = (((X - 0.3) ** 2).sum(0) - 10.0) / 4.0                 # one distance per input b
    exp_x = np.broadcast_to(np.exp(-d ** 2), X.shape)
    exp_v = np.broadcast_to(-2 * d * np.exp(-d ** 2) * 2 * ((X - 0.3) * V).sum(0) / 4.0, V.shape)
    assert np.allclose(Xs, exp_x, rtol=1e-13, atol=0)
    assert np.allclose(Vs, exp_v, rtol=1e-12, atol=1e-15)


def test_rbf_program_lowering_and_refusals():
    from vanishcalc.sim.program import OP_LN, OP_RBF, program
    layer = RBF(width=32, scale=7.0, offset=60.0, sigma_c=0.5, center_mean=0.2)
    act, ops, pars = program([LayerNorm(1.0, 0.1), layer], 8, 32)
    assert list(ops) == [OP_LN, OP_RBF] and act.name == "exp(-x**2)"
    assert list(pars[1]) == [0.5, 0.2, 60.0, 7.0, 0.0] and list(pars[0]) == [1.0, 0.1, 0, 0, 0]
    with pytest.raises(VanishcalcError, match="built for width 32.*simulation width is 16"):
        program([layer], 8, 16)
    from vanishcalc.maps import Activation
    with pytest.raises(VanishcalcError, match="share one φ"):
        program([layer, Activation("tanh")], 8, 32)


# ---------------------------------------------------------------- mean field vs simulation


@pytest.mark.parametrize("centers", ["gaussian", "matched"])
def test_rbf_check_cpu_layer_by_layer(centers):
    """[LayerNorm, RBF] at the solved scale: q, c, grad within Monte-Carlo error per layer."""
    from vanishcalc import check
    # LayerNorm(1.2, 0.3): matched centers are N(0.3, 1.2²), the law rbf_scale is told
    r = rbf_scale(width=64, sigma_c=1.2, center_mean=0.3, ln_gamma=1.2, ln_beta=0.3)
    layer = r.layer if centers == "gaussian" else RBF(width=64, scale=r.scale, offset=r.offset,
                                                      centers="matched")
    rep = check(serial(LayerNorm(1.2, 0.3), layer), depth=4, width=64, n_nets=12, batch=8,
                q0=1.0, c0=0.5, seed=3)
    assert rep.verdict == "PASSED", rep.summary()


def test_deep_rbf_solved_vs_naive_simulation():
    """Depth 12, width 64: the solved net keeps q at its fixed point, c < 1 and the gradient
    rate 1 per block, as the theory says; the naive one (scale 1, offset 0) outputs exact
    zeros from the first layer (every unit saturated: the signal is gone); centred but
    unscaled (offset n(q + σc²), scale 1) the gradient explodes by ≫ 1 per block."""
    from vanishcalc import simulate
    from vanishcalc.maps.meanfield import MeanField
    n = 64
    r = rbf_scale(width=n)
    sim = simulate(r.block, depth=12, width=n, n_nets=8, batch=8, seed=5)
    th = MeanField(r.block).propagate(12, q0=1.0, c0=0.5)
    assert sim.first_nonfinite_layer is None
    assert np.all(np.abs(sim.q[1:] - th.q[1:]) < 5 * sim.q_se[1:] + 0.02 * th.q[1:])
    assert np.all(sim.c[1:] < 0.99)
    rate, se = float(np.mean(sim.raw["rate"][2:])), float(np.max(sim.raw["rate_se"][2:]))
    assert abs(rate - 1.0) < 5 * se + 0.1
    naive = serial(LayerNorm(), RBF(width=n, scale=1.0, offset=0.0))
    with warnings.catch_warnings():                 # "nets became non-finite" (by design)
        warnings.simplefilter("ignore", VanishcalcWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        dead = simulate(naive, depth=3, width=n, n_nets=4, batch=8, seed=5)
    assert dead.first_nonfinite_layer == 1          # φ(d) = 0 and φ'(d) = 0 for every unit
    half = serial(LayerNorm(), RBF(width=n, scale=1.0, offset=2.0 * n))
    hot = simulate(half, depth=3, width=n, n_nets=4, batch=8, seed=5)
    assert np.all(hot.raw["rate"][1:] > 20)


def test_rbf_without_layernorm_collapses_in_simulation():
    """The documented limit of the map (notes/rbf.md, "The norm mode"): [Dense, RBF] at the
    solved scale has a fixed point the map computes but the finite net cannot hold — each
    input's norm fluctuation is amplified by ~√n per block, and q collapses by depth 5."""
    from vanishcalc import simulate
    q = 0.42168523712477557
    r = rbf_scale(width=256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VanishcalcWarning)
        sim = simulate(serial(Dense(1 / math.sqrt(q)), r.layer), depth=5, width=256, n_nets=4,
                       batch=8, q0=q, seed=2)
    assert sim.q[1] > 0.8 * q and sim.q[5] < 0.25 * q


# ---------------------------------------------------------------- CUDA body (simulator)


# Blocks as plain data for the child: ("ln", γ, β), ("rbf", {RBF keywords}).
_GAUSS = [("ln", 1.0, 0.0), ("rbf", dict(width=12, scale=5.0, offset=24.5, sigma_c=1.0,
                                          center_mean=0.1))]
_MATCHED = [("ln", 1.2, 0.3), ("rbf", dict(width=10, scale=4.0, offset=30.0,
                                            centers="matched"))]
_CASES = {
    "main": {"gauss": dict(block=_GAUSS, depth=2, width=12, batch=4, n_nets=2, seed=11)},
    "strided": {"matched": dict(block=_MATCHED, depth=2, width=10, batch=3, n_nets=3, seed=12)},
}

_CHILD = child_script("""
    from vanishcalc.maps import RBF, LayerNorm
    from vanishcalc.sim.cuda import composed as cc
    if group == "strided":
        cc.MAX_THREADS, cc.MAX_NET_BLOCKS = 4, 2
    out = {}
    for name, kw in cases.items():
        kw = dict(kw)
        block = [LayerNorm(*l[1:]) if l[0] == "ln" else RBF(**l[1]) for l in kw.pop("block")]
        tr = cc.simulate_stack_cuda(block, **kw)
        out[name] = {k: getattr(tr, k).tolist() for k in ("q", "c", "rate")}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def cuda_runs():
    procs = {g: start(_CHILD, g, cases) for g, cases in _CASES.items()}
    res = {}
    for g, p in procs.items():
        res.update(finish(p))
    return res


def _replay(block, *, depth, width, batch, n_nets, seed, strided, q0=1.0, c0=0.5):
    """The CUDA model in numpy: LayerNorm by the standardization of tests/reference/replay.py,
    RBF from ‖x − w‖² directly."""
    streams = KernelStreams(seed, 0xC5A1, n_nets, width, *((4, 2) if strided else (256, 2048)))
    act = activation("exp(-x**2)")
    f, df = act.numpy, act.derivative(1).numpy
    q, c, logF = (np.full((n_nets, depth + 1), np.nan) for _ in range(3))
    NB = width * batch
    for n in range(n_nets):
        X, V = streams.batch(n, batch, q0, c0)
        q[n, 0], c[n, 0], F = stats(X, V)
        logF[n, 0] = math.log(F / NB)
        V *= math.sqrt(NB / F)
        for layer in range(depth):
            for kind, *p in block:
                if kind == "ln":
                    Xt, Vt = standardize_rows(X.T, V.T, *p)
                    X, V = Xt.T, Vt.T
                else:
                    kw = p[0]
                    if kw.get("centers") == "matched":
                        mu, sc = X.mean(), math.sqrt(X.var())
                    else:
                        mu, sc = kw.get("center_mean", 0.0), kw.get("sigma_c", 1.0)
                    Xn, Vn = np.empty_like(X), np.empty_like(V)

                    def rbf(i, s, X=X, V=V, Xn=Xn, Vn=Vn, mu=mu, sc=sc, kw=kw):
                        w = np.array([mu + sc * s.normal() for _ in range(width)])
                        d = (((X - w[:, None]) ** 2).sum(0) - kw["offset"]) / kw["scale"]
                        Xn[i] = f(d)
                        Vn[i] = df(d) * 2 * ((X - w[:, None]) * V).sum(0) / kw["scale"]
                    streams.rows(n, rbf)
                    X, V = Xn, Vn
            q[n, layer + 1], c[n, layer + 1], F = stats(X, V)
            logF[n, layer + 1] = logF[n, layer] + math.log(F / NB)
            V *= math.sqrt(NB / F)
    return _trace(q, c, logF, np.zeros(q.shape, bool))


@pytest.mark.cuda
@pytest.mark.parametrize("group, name", [("main", "gauss"), ("strided", "matched")])
def test_rbf_cuda_body_vs_numpy_replay_same_streams(cuda_runs, group, name):
    kw = dict(_CASES[group][name])
    ref = _replay(kw.pop("block"), strided=group == "strided", **kw)
    got = cuda_runs[name]
    for k in ("q", "c", "rate"):
        assert np.allclose(got[k], getattr(ref, k), rtol=1e-9, atol=1e-12), k


# ---------------------------------------------------------------- PTX for real GPUs


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.parametrize("cc", [(9, 0), (8, 0)])
def test_rbf_stack_kernel_ptx_compiles_and_fits(cc):
    """The stack kernel with the RBF body compiles for sm_90/sm_80 and assembles without
    spills within one block's registers (as tests/sim/test_ptx.py for every kernel; its fast
    subset compiles the same stack kernel, RBF body included, for relu on sm_90).  Slow:
    ≈ 10 s per target on 2 cores."""
    import os
    if os.environ.get("NUMBA_ENABLE_CUDASIM"):
        pytest.skip("NUMBA_ENABLE_CUDASIM is set: the simulator compiles nothing")
    from vanishcalc.sim import ptx
    try:
        from numba.cuda.cudadrv.nvvm import NVVM
        NVVM()
    except Exception as exc:                    # the 'ptx' extra is absent
        pytest.skip(f"the 'ptx' extra is needed ({type(exc).__name__})")
    if ptx.find_ptxas() is None:
        pytest.skip("the 'ptx' extra is needed: ptxas not found")
    text = ptx.compile_ptx("exp(-x**2)", "float64", cc=cc, names=["stack"])["stack"]
    assert f".target sm_{cc[0]}{cc[1]}" in text and "3rbf" in text   # the RBF body is in it
    rep = ptx.assemble(text, cc)
    threads = ptx.kernel_functions("exp(-x**2)")["stack"][2]
    assert rep.spill_stores == 0 and rep.spill_loads == 0, rep.log
    assert rep.registers * threads <= 65536 and rep.shared_bytes <= 48 * 1024
