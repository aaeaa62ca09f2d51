"""Recurrent BN / LN simulated (``sim/cpu/rnn_norm.py``) against independent references.

References: closed forms of notes/recurrent.md (φ = x: rate γ_h²/(γ_h² + γ_x²)·(B−2)/(B−3)),
exact identities of standardization (LN: q = γ² + β² for every net; BN: every unit's batch
mean is β), and a naive numpy RNN whose gradient growth is measured by finite differences of
two forward runs (no Jacobian code shared with the kernel).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tests.sim.cudasim import child_script, finish, start
from vanishcalc.errors import VanishcalcError
from vanishcalc.maps.rnn import RecurrentNormRNN
from vanishcalc.sim.api import simulate_rnn
from vanishcalc.sim.check import check_rnn

_SMALL = dict(steps=12, width=128, n_nets=32, seed=3)


@pytest.mark.parametrize("spec, norm, gamma, batch", [
    ("x", "bn", 1.0, 16),          # the seed's RNN: BN in place of tanh, no bias
    ("tanh", "bn", 0.1, 16),       # Cooijmans et al.'s γ = 0.1
    ("x", "ln", 1.0, 4),           # h_t = LN(W h + U x)
    ("tanh", "ln", 1.0, 4),
])
def test_check_rnn_norm_passes_with_power(spec, norm, gamma, batch):
    r = check_rnn(spec, 1.0, 1.0, norm=norm, gamma=gamma, batch=batch, **_SMALL)
    assert r.verdict == "PASSED", r.reasons
    assert all((r.scale[s] != "-").all() for s in ("q", "c", "grad"))


def test_check_rnn_infinite_batch_theory_fails_at_small_batch():
    # B = 6: each step multiplies the gradient by (B−2)/(B−3) = 4/3 beyond the B = ∞ rate;
    # a check that could not tell would pass the infinite-batch theory too
    wrong = RecurrentNormRNN("x", "bn", gamma=1.0).propagate(12)
    r = check_rnn("x", 1.0, 1.0, norm="bn", gamma=1.0, batch=6, theory=wrong, **_SMALL)
    assert r.verdict == "FAILED" and any(m.startswith("grad") for m in r.reasons)
    right = check_rnn("x", 1.0, 1.0, norm="bn", gamma=1.0, batch=6, **_SMALL)
    assert right.verdict == "PASSED", right.reasons


def test_check_rnn_bn_does_not_preserve_gradient():
    # the hope of the seed question — BN in place of tanh keeps ‖δh‖ constant — as a theory
    T = 12
    p = RecurrentNormRNN("x", "bn", gamma=1.0, batch=16).propagate(T)
    wrong = dict(q=p.q, c=p.c, grad=np.ones(T))
    r = check_rnn("x", 1.0, 1.0, norm="bn", gamma=1.0, batch=16, theory=wrong, **_SMALL)
    assert r.verdict == "FAILED"


def test_ln_q_exact_and_bn_batch_mean_exact():
    tr = simulate_rnn("tanh", 1.3, 0.7, 0.2, norm="ln", gamma=1.2, beta=0.3, steps=4, width=16,
                      batch=3, n_nets=3, seed=1)
    np.testing.assert_allclose(tr.per_net["q"], 1.2 ** 2 + 0.3 ** 2, rtol=1e-12)
    B, b = 8, 0.25
    tr = simulate_rnn("x", 1.0, 1.0, norm="bn", gamma=0.6, gamma_x=0.8, beta=b, steps=4,
                      width=16, batch=B, n_nets=3, seed=2)
    # Σ_b a_ib = Bβ for every unit: c = (Bβ² − q)/((B − 1) q) for each net's own q
    q = tr.per_net["q"]
    np.testing.assert_allclose(tr.per_net["c"], (B * b * b - q) / ((B - 1) * q), rtol=1e-9,
                               atol=1e-12)


def _naive_rates(spec, norm, gamma, gamma_x, steps, width, batch, n_nets, seed, eps=1e-6):
    """Per-net mean step rate of ‖δa‖² (steps ≥ 2) by finite differences, plain numpy."""
    phi = {"x": lambda a: a, "tanh": np.tanh}[spec]
    rng = np.random.default_rng(seed)

    def bn(y):
        m = y.mean(axis=1, keepdims=True)
        s = y.std(axis=1, keepdims=True)
        return (y - m) / s

    def ln(y):
        m = y.mean(axis=0, keepdims=True)
        s = y.std(axis=0, keepdims=True)
        return (y - m) / s
    out = []
    for _ in range(n_nets):
        W = rng.standard_normal((width, width)) / math.sqrt(width)
        U = rng.standard_normal((width, width)) / math.sqrt(width)
        xs = rng.standard_normal((steps, width, batch))
        d = rng.standard_normal((width, batch))
        runs = []
        for sign in (1.0, -1.0):
            h = np.zeros((width, batch))
            a_hist = []
            for t in range(steps):
                if norm == "bn":
                    a = gamma_x * bn(U @ xs[t]) + (gamma * bn(W @ h) if t > 0 else 0.0)
                else:
                    a = gamma * ln(W @ h + U @ xs[t])
                if t == 0:
                    a = a + sign * eps * d
                a_hist.append(a)
                h = phi(a)
            runs.append(np.array(a_hist))
        delta = (runs[0] - runs[1]) / (2 * eps)
        F = (delta ** 2).sum(axis=(1, 2))
        out.append(np.mean(F[2:] / F[1:-1]))
    return np.array(out)


@pytest.mark.parametrize("spec, norm, gamma, gamma_x, batch", [
    ("x", "bn", 1.0, 0.5, 8), ("tanh", "bn", 0.5, 0.5, 8), ("tanh", "ln", 1.3, None, 4)])
def test_rnn_norm_rate_vs_naive_finite_differences(spec, norm, gamma, gamma_x, batch):
    kw = dict(steps=10, width=32, batch=batch, n_nets=24)
    naive = _naive_rates(spec, norm, gamma, gamma_x or 0.0, seed=11, **kw)
    tr = simulate_rnn(spec, 1.0, 1.0, norm=norm, gamma=gamma, gamma_x=gamma_x, seed=12, **kw)
    ours, se = tr.mean_rate()
    se_naive = naive.std(ddof=1) / math.sqrt(len(naive))
    assert abs(ours - naive.mean()) <= 4 * math.hypot(se, se_naive), (ours, se, naive.mean())


def test_rnn_norm_bn_linear_rate_long_sequence():
    # T = 200 at small width/batch: the pooled step rate against γ_h²/(γ_h² + γ_x²)·(B−2)/(B−3)
    B = 8
    tr = simulate_rnn("x", 1.0, 1.0, norm="bn", gamma=1.0, steps=200, width=32, batch=B,
                      n_nets=8, seed=4)
    rate, se = tr.mean_rate()
    theory = 0.5 * (B - 2) / (B - 3)
    assert abs(rate - theory) <= 4 * se + 0.03 * theory, (rate, se, theory)
    # and the batch-free rate 1/2 is excluded
    assert rate - 0.5 > 4 * se


@pytest.mark.slow
def test_rnn_norm_bn_linear_rate_thousand_steps():
    B = 16
    tr = simulate_rnn("x", 1.0, 1.0, norm="bn", gamma=1.0, steps=1000, width=48, batch=B,
                      n_nets=4, seed=5)
    rate, se = tr.mean_rate()
    theory = 0.5 * (B - 2) / (B - 3)
    assert abs(rate - theory) <= 4 * se + 0.03 * theory, (rate, se, theory)
    assert np.isfinite(tr.rate).all()


@pytest.mark.parametrize("kwargs, word", [
    (dict(norm="bn", batch=3), "batch"),
    (dict(norm="bn", batch=2), "batch"),
    (dict(norm="ln", width=3), "width"),
    (dict(norm="bn", sigma_u=0.0), "sigma_u"),
    (dict(norm="bn", x_corr=1.0), "x_corr"),
    (dict(norm="gn"), "norm"),
    (dict(norm=None, gamma=0.1), "norm="),
    (dict(norm="ln", gamma_x=0.1), "gamma="),
])
def test_simulate_rnn_norm_bad_input_names_fix(kwargs, word):
    kw = dict(sigma_u=1.0, steps=3, width=8)
    kw.update(kwargs)
    with pytest.raises(VanishcalcError, match=word):
        simulate_rnn("tanh", 1.0, **kw)
    with pytest.raises(VanishcalcError, match=word):
        check_rnn("tanh", 1.0, n_nets=4, **kw)


# ---------------------------------------------------------------- CUDA (simulator), same streams

_CUDA_CHILD = child_script("""
from vanishcalc.sim.cuda import rnn_norm as rn
if group == "strided":          # more units than threads, more nets than blocks
    rn.MAX_THREADS, rn.MAX_NET_BLOCKS = 4, 2
out = {}
for name, kw in cases.items():
    kw = dict(kw)
    tr = rn.simulate_rnn_norm_cuda(kw.pop("spec"), **kw)
    out[name] = {k: [None if math.isnan(x) else x for x in getattr(tr, k).tolist()]
                 for k in ("q", "c", "grad", "rate")}
if group == "main":             # the front door routes backend="cuda" to this kernel
    from vanishcalc.sim.api import simulate_rnn
    kw = dict(norm="bn", gamma=1.0, steps=2, width=4, batch=4, n_nets=2, seed=5)
    a = simulate_rnn("x", 1.0, 1.0, backend="cuda", **kw)
    b = rn.simulate_rnn_norm_cuda("x", 1.0, 1.0, **kw)
    out["api_same"] = {"same": [float(a.q.tolist() == b.q.tolist() and
                                      a.grad.tolist() == b.grad.tolist())]}
print(json.dumps(out))
""")

_CUDA_CASES = {
    "bn_x": dict(spec="x", norm="bn", gamma=1.0, gamma_x=0.7, beta=0.2, steps=3, width=6,
                 batch=4, n_nets=3, seed=21, x_corr=0.3),
    "bn_tanh": dict(spec="tanh", norm="bn", gamma=0.1, steps=3, width=5, batch=5, n_nets=2,
                    seed=22),
    "ln_tanh": dict(spec="tanh", norm="ln", gamma=1.2, beta=0.1, sigma_w=1.3, sigma_u=0.8,
                    sigma_b=0.2, steps=3, width=6, batch=3, n_nets=3, seed=23, x_corr=0.4),
}


def _replay_rnn_norm(spec, *, norm, steps, width, batch, n_nets, seed, strided, gamma=None,
                     gamma_x=None, beta=0.0, sigma_w=1.0, sigma_u=1.0, sigma_b=0.0, x2=1.0,
                     x_corr=0.0):
    """The model in numpy on the kernel's streams (thread tid draws rows i ≡ tid mod threads)."""
    from tests.reference.replay import KernelStreams, standardize_rows, stats
    from vanishcalc.activation import activation
    from vanishcalc.sim.program import trace
    lim = dict(max_threads=4, max_blocks=2) if strided else {}
    rp = KernelStreams(seed, 0xC5A3, n_nets, width, **lim)
    act = activation(spec)
    phi, dphi = act.numpy, act.derivative(1).numpy
    if norm == "bn":
        gh = 0.1 if gamma is None else gamma
        gx = gh if gamma_x is None else gamma_x
    else:
        gh = 1.0 if gamma is None else gamma
    q, c, logF = (np.full((n_nets, steps), np.nan) for _ in range(3))
    NB = width * batch
    for n in range(n_nets):
        W, U, b, D = rp.rnn_weights(n, batch, sigma_w, sigma_u, sigma_b)
        H = np.zeros((width, batch))
        lf = 0.0
        for t in range(steps):
            xs = rp.rnn_inputs(n, batch, x2, x_corr)
            zero = np.zeros((width, batch))
            if norm == "bn":
                A, _ = standardize_rows(U @ xs, zero, gx, beta)
                if t > 0:
                    Y, D = standardize_rows(W @ H, W @ D, gh, 0.0)
                    A = A + Y
            else:
                Yt, Dt = standardize_rows((W @ H + U @ xs + b).T, (W @ D if t > 0 else zero).T, gh,
                                      beta)
                A = Yt.T
                if t > 0:
                    D = Dt.T
            q[n, t], c[n, t], f = stats(A, D)
            lf += math.log(f / NB)
            logF[n, t] = lf
            D = dphi(A) * D * math.sqrt(NB / f)
            H = phi(A)
    return trace(q, c, logF, np.zeros(q.shape, bool))


def _collect_cuda(group, cases):
    res = finish(start(_CUDA_CHILD, group, cases))
    return {name: {k: np.array([np.nan if x is None else x for x in v]) for k, v in val.items()}
            for name, val in res.items()}


@pytest.fixture(scope="module")
def cuda_runs():
    return {g: _collect_cuda(g, _CUDA_CASES) for g in ("main", "strided")}


@pytest.mark.cuda
@pytest.mark.parametrize("group", ["main", "strided"])
@pytest.mark.parametrize("name", sorted(_CUDA_CASES))
def test_cuda_rnn_norm_vs_naive_replay_same_streams(cuda_runs, group, name):
    kw = dict(_CUDA_CASES[name])
    ref = _replay_rnn_norm(kw.pop("spec"), strided=group == "strided", **kw)
    for key in ("q", "c", "grad", "rate"):
        np.testing.assert_allclose(cuda_runs[group][name][key], getattr(ref, key), rtol=1e-9,
                                   atol=1e-12, err_msg=f"{name} ({group}): {key}")


@pytest.mark.cuda
def test_cuda_rnn_norm_front_door_routes_to_kernel(cuda_runs):
    assert cuda_runs["main"]["api_same"]["same"][0] == 1.0
