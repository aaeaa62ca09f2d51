"""Residual blocks and dropout in the simulators (OP_SAVE / OP_ADD_SAVED / OP_DROPOUT).

CPU: the op bodies against naive numpy, the lowering, and the mean field through ``check``
(small widths here, width 512 in the slow test).  CUDA (simulator): the kernel against a
naive numpy replay of the same streams (``tests/sim/cudasim.py``).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.reference.replay import KernelStreams, standardize_rows, stats
from tests.sim.cudasim import child_script, finish, start
from vanishcalc.activation import activation
from vanishcalc.errors import VanishcalcError
from vanishcalc.maps import (Activation, Dense, Dropout, LayerNorm, Residual, post_norm_block,
                             pre_norm_block)
from vanishcalc.maps.meanfield import MeanField
from vanishcalc.sim.check import PASSED, check
from vanishcalc.sim.program import (OP_ACT, OP_ADD_SAVED, OP_DENSE, OP_DROPOUT, OP_LN, OP_SAVE,
                                    program, trace)


def test_program_lowers_residual_and_dropout():
    blk = [pre_norm_block("tanh", 0.3, sigma_w=1.2, sigma_b=0.1), Dropout(0.8)]
    _, ops, pars = program(blk, 8)
    assert ops.tolist() == [OP_SAVE, OP_LN, OP_DENSE, OP_ACT, OP_DENSE, OP_ADD_SAVED, OP_DROPOUT]
    assert pars[5, 0] == 0.3 and pars[6, 0] == 0.8


def test_program_refuses_nested_residual():
    inner = Residual([Dense(1.0), Activation("tanh"), Dense(1.0)], 0.5)
    with pytest.raises(VanishcalcError, match="nested residual"):
        program([Residual([inner, Dense(1.0)], 0.5)], 8)
    # the mean field accepts it
    assert math.isfinite(MeanField([Residual([inner, Dense(1.0)], 0.5)]).propagate(2).q[-1])


def test_program_refuses_batchless_batchnorm_in_a_branch():
    from vanishcalc.maps import BatchNorm
    with pytest.raises(VanishcalcError, match="batch=B"):
        program([Residual([Dense(1.0), BatchNorm(), Activation("relu"), Dense(1.0)], 0.5)], 8)
    _, ops, _ = program([Residual([Dense(1.0), BatchNorm(batch=8), Activation("relu"),
                                   Dense(1.0)], 0.5)], 8)
    assert ops[0] == OP_SAVE


def test_cpu_add_saved_and_dropout_bodies_vs_numpy(rng):
    from vanishcalc.sim.cpu.composed import _add_saved, _dropout
    from vanishcalc.sim.cpu.rng import seed_states
    X, V, SX, SV = (rng.normal(size=(64, 8)) for _ in range(4))
    X0, V0 = X.copy(), V.copy()
    _add_saved(X, V, SX, SV, 0.7)
    np.testing.assert_allclose(X, SX + 0.7 * X0, rtol=1e-14, atol=1e-15)   # FMA
    np.testing.assert_allclose(V, SV + 0.7 * V0, rtol=1e-14, atol=1e-15)
    X = np.ones((400, 50))
    V = 2 * np.ones((400, 50))
    st = seed_states(5, 1)[0]
    _dropout(st, X, V, 0.7)
    kept = X != 0
    assert np.all(X[kept] == 1 / 0.7) and np.all((V != 0) == kept)   # one mask for X and V
    n = kept.size
    assert abs(kept.mean() - 0.7) < 5 * math.sqrt(0.21 / n)
    # independent masks per input (column): the column-pair agreement is keep² + (1−keep)²
    k = kept.astype(float)
    agree = np.mean(k[:, :-1] * k[:, 1:] + (1 - k[:, :-1]) * (1 - k[:, 1:]))
    assert abs(agree - 0.58) < 0.02


_SMALL = dict(width=96, n_nets=16, batch=8, seed=11)


@pytest.mark.parametrize("name, block, depth, c0", [
    ("tanh-none", [Residual([Dense(1.2, 0.1), Activation("tanh"), Dense(1.0)], 0.5)], 4, 0.5),
    ("gauss-pre", [pre_norm_block("exp(-x**2)", 0.6, sigma_w=1.3)], 4, 0.5),
    ("tanh-post", [post_norm_block("tanh", 0.8, sigma_w=1.1)], 4, 0.5),
    ("tanh-dropout", [Activation("tanh"), Dropout(0.8), Dense(1.4, 0.3)], 4, 0.9),
])
def test_cpu_residual_and_dropout_check_small_width(name, block, depth, c0):
    rep = check(block, depth=depth, c0=c0, **_SMALL)
    assert rep.verdict == PASSED, rep.summary()


def test_sim_dropout_correlation_leaves_one_finite_xi_c():
    """c0 = 0.99 on tanh's critical line: with keep = 0.8 the simulated c falls to c* < 1
    within a few layers, as the map predicts (ξc finite)."""
    from vanishcalc.solve.criticality import critical_sigma_w
    sw = float(critical_sigma_w("tanh", 0.3).sigma_w)
    blk = [Activation("tanh"), Dropout(0.8), Dense(sw, 0.3)]
    mf = MeanField(blk)
    cs, xi = float(mf.c_star()), float(mf.xi_c())
    assert cs < 0.9 and xi < 5
    from vanishcalc.sim.composed import simulate_stack
    tr = simulate_stack(blk, depth=8, width=128, batch=8, n_nets=8, q0=float(mf.q_star()),
                        c0=0.99, seed=4)
    assert abs(tr.c[-1] - cs) < 5 * tr.c_se[-1] + 0.02


def test_sim_residual_growth_laws_closed_forms():
    """relu branches (closed forms, Yang & Schoenholz 2017): without a norm q grows
    geometrically, q_l = (1 + α²κ)^l q0; pre-LN linearly, q_l = q0 + l·α²κγ²; κ = σw₁²σw₂²/2."""
    from vanishcalc.sim.composed import simulate_stack
    a, s1, s2 = 0.6, 1.2, 1.1
    kappa = s1 * s1 * s2 * s2 / 2
    ls = np.arange(7)
    for blk, law in (([Residual([Dense(s1), Activation("relu"), Dense(s2)], a)],
                      (1 + a * a * kappa) ** ls),
                     ([pre_norm_block("relu", a, sigma_w=s1, sigma_w2=s2)],
                      1 + a * a * kappa * ls)):
        tr = simulate_stack(blk, depth=6, width=128, batch=8, n_nets=16, q0=1.0, c0=0.5, seed=6)
        # 5 standard errors plus the O(l/N) finite-width allowance of check
        assert np.all(np.abs(tr.q - law) <= 5 * tr.q_se + ls / 128 * law), (tr.q, law)


@pytest.mark.slow
@pytest.mark.parametrize("name, block, c0", [
    ("tanh-none", [Residual([Dense(1.2, 0.1), Activation("tanh"), Dense(1.0)], 0.5)], 0.5),
    ("gauss-none", [Residual([Dense(1.0), Activation("exp(-x**2)"), Dense(1.5)], 0.7)], 0.5),
    ("tanh-pre", [pre_norm_block("tanh", 0.5, sigma_w=1.4, sigma_b=0.1)], 0.5),
    ("gauss-post", [post_norm_block("exp(-x**2)", 0.6, sigma_w=1.2)], 0.5),
    ("gauss-dropout", [Activation("exp(-x**2)"), Dropout(0.7), Dense(1.5, 0.2)], 0.9),
])
def test_cpu_residual_and_dropout_check_width_512(name, block, c0):
    rep = check(block, depth=6, width=512, n_nets=24, batch=8, c0=c0, seed=12)
    assert rep.verdict == PASSED, rep.summary()


# ---------------------------------------------------------------- CUDA (simulator)

_CHILD = child_script("""
    from vanishcalc.maps import Activation, Dense, Dropout, LayerNorm, Residual
    from vanishcalc.sim.cuda import composed as cc
    if group == "strided":
        cc.MAX_THREADS, cc.MAX_NET_BLOCKS = 4, 2
    MAKE = {"dense": Dense, "ln": LayerNorm, "act": Activation, "drop": Dropout}

    def build(desc):
        out = []
        for l in desc:
            if l[0] == "res":
                out.append(Residual(build(l[2]), l[1]))
            else:
                out.append(MAKE[l[0]](*l[1:]))
        return out
    out = {}
    for name, kw in cases.items():
        kw = dict(kw)
        tr = cc.simulate_stack_cuda(build(kw.pop("block")), **kw)
        out[name] = {k: [None if math.isnan(x) else x for x in getattr(tr, k).tolist()]
                     for k in ("q", "c", "grad", "rate")}
    print(json.dumps(out))
""")

_RES = [("res", 0.6, [("ln", 1.0, 0.0), ("dense", 1.3, 0.1), ("act", "tanh"),
                      ("dense", 1.1, 0.0)]), ("drop", 0.75)]
_CASES = {
    "main": {"res_drop": dict(block=_RES, depth=2, width=8, batch=4, n_nets=2, seed=3)},
    "strided": {"res_drop": dict(block=_RES, depth=2, width=10, batch=4, n_nets=3, seed=5)},
}


def _replay(desc, *, depth, width, batch, n_nets, seed, strided, q0=1.0, c0=0.5):
    """The kernel's arithmetic in numpy, drawing from the kernel's streams row by row."""
    lim = dict(max_threads=4, max_blocks=2) if strided else {}
    rp = KernelStreams(seed, 0xC5A1, n_nets, width, **lim)
    flat = []
    for d in desc:
        flat += [("save",), *d[2], ("add", d[1])] if d[0] == "res" else [d]
    q, c, logF = (np.full((n_nets, depth + 1), np.nan) for _ in range(3))
    NB = width * batch
    for net in range(n_nets):
        X, V = rp.batch(net, batch, q0, c0)
        q[net, 0], c[net, 0], f = stats(X, V)
        logF[net, 0] = math.log(f / NB)
        V *= math.sqrt(NB / f)
        for layer in range(depth):
            for d in flat:
                if d[0] == "dense":
                    W, bias = rp.dense(net, d[1], d[2])
                    X, V = W @ X + bias, W @ V
                elif d[0] == "ln":
                    Xt, Vt = standardize_rows(X.T, V.T, d[1], d[2])
                    X, V = Xt.T, Vt.T
                elif d[0] == "act":
                    act = activation(d[1])
                    V = np.asarray(act.derivative(1).numpy(X), float) * V
                    X = np.asarray(act.numpy(X), float) * np.ones_like(X)
                elif d[0] == "save":
                    SX, SV = X.copy(), V.copy()
                elif d[0] == "add":
                    X, V = SX + d[1] * X, SV + d[1] * V
                else:                                       # dropout
                    M = np.empty((width, batch))

                    def mask(i, st, keep=d[1]):
                        M[i] = [1 / keep if st.uniform() < keep else 0.0 for _ in range(batch)]
                    rp.rows(net, mask)
                    X, V = X * M, V * M
            q[net, layer + 1], c[net, layer + 1], f = stats(X, V)
            logF[net, layer + 1] = logF[net, layer] + math.log(f / NB)
            V *= math.sqrt(NB / f)
    return trace(q, c, logF, np.zeros(q.shape, bool))


@pytest.mark.cuda
@pytest.mark.parametrize("group", ["main", "strided"])
def test_cuda_residual_dropout_vs_naive_replay_same_streams(group):
    proc = start(_CHILD, group, _CASES[group])
    res = finish(proc)
    for name, kw in _CASES[group].items():
        kw = dict(kw)
        ref = _replay(kw.pop("block"), strided=group == "strided", **kw)
        for key in ("q", "c", "grad", "rate"):
            got = np.array([np.nan if x is None else x for x in res[name][key]], float)
            np.testing.assert_allclose(got, getattr(ref, key), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{group}/{name}: {key}")
