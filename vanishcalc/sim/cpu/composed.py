"""Numba CPU kernels for composed stacks (Dense / BatchNorm / LayerNorm / Activation / RBF,
residual save / add, dropout) and RNNs.

Model (notes/normalization.md, notes/recurrent.md).  Per net, a batch of B inputs
X ∈ R^{N×B} (exchangeable: x_a = √q0(√c0 g + √(1−c0) e_a), g, e_a ~ N(0, I_N)) and a
forward tangent V ∈ R^{N×B} (i.i.d. N(0, 1)) go through the block ``depth`` times:

* Dense:      X ← W X + b 1ᵀ,  V ← W V        (W_ij ~ N(0, σw²/N), fresh per layer, explicit:
  BatchNorm couples the batch, so the 4-column conditional sampling of ``sim/cpu/dense.py`` does
  not apply);
* BatchNorm:  per unit i (row), u = (x − mean)/std over the batch (population std),
  X ← γu + β,  V ← γ (P v − u·⟨u, P v⟩/B)/std  — the exact Jacobian of standardization;
* LayerNorm:  the same per input a (column), over the units;
* Activation: V ← φ'(X) ⊙ V, X ← φ(X);
* RBF:        X_ib ← φ(d_ib), d_ib = (‖x_b − w_i‖² − offset)/scale, V_ib ← φ'(d_ib)·2(x_b − w_i)·v_b/scale
  (centers w_i fresh per layer, drawn row by row: notes/rbf.md).
* Residual (OP_SAVE … OP_ADD_SAVED): S ← (X, V) before the branch, then X ← S_X + αX,
  V ← S_V + αV after it (one saved copy per net: nested residuals are refused);
* Dropout: X, V ← (m/keep) ⊙ X, V with m ~ Bernoulli(keep) per entry, from the net's stream.

After every block: q = mean of X², c = mean pairwise covariance over the batch / q (what
``MomentState.c`` means for BatchNorm: the common correlation of an exchangeable batch),
and F = ‖V‖²; V is rescaled to ‖V‖² = N·B and log F accumulated, so deep exploding nets do
not overflow.  ``grad[l] = F_depth/F_l`` (forward-mode tangent, as in ``sim/cpu/dense.py``: under
the mean-field assumptions forward and backward norms grow at the same per-layer rate, the
normalized Frobenius norm of the layer Jacobian).

RNN: h_t = φ(W h_{t−1} + U x_t + b), W, U, b drawn once per net and reused over time,
h_0 = 0, inputs fresh per step (exchangeable over the batch, second moment x2, correlation
x_corr); records q, c of a_t and F_t = ‖δa_t‖² for δa_{t+1} = W(φ'(a_t) ⊙ δa_t).

Kernels are module-level ``@njit(cache=True, parallel=True)`` with ``prange`` over nets;
φ, φ' come in as first-class ``float64(float64)`` cfuncs (``compile.cpu_cfuncs``), each net
has its own xoroshiro128+ stream (``cpu.rng.seed_states``), so results do not depend on threads.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..compile import FASTMATH
from ..program import (OP_BN, OP_DENSE, OP_LN, OP_RBF, ComposedTrace, rnn_iv, stack_iv, trace,
                       trace_buffers)
from ..program import OP_ADD_SAVED, OP_DROPOUT, OP_SAVE
from .ops import draw_inputs, draw_rnn, rnn_step_out, standardize_rows, stats
from .rng import normal, seed_states
from .rng import uniform

# ---------------------------------------------------------------- per-op steps


@njit(cache=True, fastmath=FASTMATH)
def _init_batch(st, X, V, q0, c0):
    N, B = X.shape
    a = math.sqrt(q0 * c0)
    e = math.sqrt(q0 * (1.0 - c0))
    for i in range(N):
        g = normal(st)
        for b in range(B):
            X[i, b] = a * g + e * normal(st)
            V[i, b] = normal(st)


@njit(cache=True, fastmath=FASTMATH)
def _dense(st, W, X, V, sigma_w, sigma_b):
    N = W.shape[0]
    s = sigma_w / math.sqrt(N)
    for i in range(N):
        for j in range(N):
            W[i, j] = s * normal(st)
    Xn = W @ X
    Vn = W @ V
    B = X.shape[1]
    for i in range(N):
        bi = sigma_b * normal(st) if sigma_b > 0.0 else 0.0
        for b in range(B):
            X[i, b] = Xn[i, b] + bi
            V[i, b] = Vn[i, b]


@njit(cache=True, fastmath=FASTMATH)
def _activation(phi, dphi, X, V):
    R, C = X.shape
    for i in range(R):
        for b in range(C):
            x = X[i, b]
            V[i, b] = dphi(x) * V[i, b]
            X[i, b] = phi(x)


@njit(cache=True, fastmath=FASTMATH)
def _rbf(st, phi, dphi, X, V, sigma_c, mu_c, offset, scale, matched):
    """RBF units (maps/rbf.py): unit i draws its center w_i ~ N(μc, σc²)^N (one row at a time,
    never a matrix) and outputs φ(d), d = (‖x − w_i‖² − offset)/scale, with the tangent
    φ'(d)·2(x − w_i)·v/scale.  ``matched`` > 0: μc, σc² are the mean and variance of all
    entries of X (the input layer's own law, pooled over units and batch)."""
    N, B = X.shape
    if matched > 0.0:
        s1 = 0.0
        s2 = 0.0
        for j in range(N):
            for b in range(B):
                s1 += X[j, b]
                s2 += X[j, b] * X[j, b]
        mu_c = s1 / (N * B)
        sigma_c = math.sqrt(max(s2 / (N * B) - mu_c * mu_c, 0.0))
    w = np.empty(N)
    Xn = np.empty((N, B))
    Vn = np.empty((N, B))
    for i in range(N):
        for j in range(N):
            w[j] = mu_c + sigma_c * normal(st)
        for b in range(B):
            dist2 = 0.0
            dv = 0.0
            for j in range(N):
                dx = X[j, b] - w[j]
                dist2 += dx * dx
                dv += dx * V[j, b]
            d = (dist2 - offset) / scale
            Xn[i, b] = phi(d)
            Vn[i, b] = dphi(d) * 2.0 * dv / scale
    X[:, :] = Xn
    V[:, :] = Vn


@njit(cache=True, fastmath=FASTMATH)
def _save(X, V, SX, SV):
    """OP_SAVE: keep the residual block's input (values and tangent)."""
    SX[:, :] = X
    SV[:, :] = V


@njit(cache=True, fastmath=FASTMATH)
def _add_saved(X, V, SX, SV, alpha):
    """OP_ADD_SAVED: h' = h + α·branch(h), and its tangent v' = v + α·J_B v."""
    R, C = X.shape
    for i in range(R):
        for b in range(C):
            X[i, b] = SX[i, b] + alpha * X[i, b]
            V[i, b] = SV[i, b] + alpha * V[i, b]


@njit(cache=True, fastmath=FASTMATH)
def _dropout(st, X, V, keep):
    """OP_DROPOUT: x·m/keep, m ~ Bernoulli(keep) per unit and input; the tangent by the same m."""
    R, C = X.shape
    inv = 1.0 / keep
    for i in range(R):
        for b in range(C):
            m = inv if uniform(st) < keep else 0.0
            X[i, b] *= m
            V[i, b] *= m


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _stack_kernel(phi, dphi, rng, ops, pars, depth, width, batch, q0, c0, q, c, logF, bad):
    """``depth`` blocks of the op program (ops[k], pars[k, :2]) for every net, in parallel."""
    n_nets = rng.shape[0]
    n_ops = ops.shape[0]
    for n in prange(n_nets):
        st = rng[n]
        X = np.empty((width, batch))
        V = np.empty((width, batch))
        W = np.empty((width, width))
        # the residual block's saved input (OP_SAVE); allocated only when the program has one
        n_saved = 0
        for k in range(n_ops):
            if ops[k] == OP_SAVE:
                n_saved = 1
        SX = np.empty((width * n_saved, batch))
        SV = np.empty((width * n_saved, batch))
        _init_batch(st, X, V, q0, c0)
        f = stats(X, V, q[n], c[n], 0)
        logF[n, 0] = math.log(f / (width * batch))
        V *= math.sqrt(width * batch / f)
        for l in range(depth):
            ok = True
            for k in range(n_ops):
                op = ops[k]
                if op == OP_DENSE:
                    _dense(st, W, X, V, pars[k, 0], pars[k, 1])
                elif op == OP_BN:
                    ok = standardize_rows(X, V, pars[k, 0], pars[k, 1])
                elif op == OP_LN:
                    Xt = np.ascontiguousarray(X.T)
                    Vt = np.ascontiguousarray(V.T)
                    ok = standardize_rows(Xt, Vt, pars[k, 0], pars[k, 1])
                    X[:, :] = Xt.T
                    V[:, :] = Vt.T
                elif op == OP_RBF:
                    _rbf(st, phi, dphi, X, V, pars[k, 0], pars[k, 1], pars[k, 2], pars[k, 3],
                         pars[k, 4])
                elif op == OP_SAVE:
                    _save(X, V, SX, SV)
                elif op == OP_ADD_SAVED:
                    _add_saved(X, V, SX, SV, pars[k, 0])
                elif op == OP_DROPOUT:
                    _dropout(st, X, V, pars[k, 0])
                else:
                    _activation(phi, dphi, X, V)
                if not ok:
                    break
            f = stats(X, V, q[n], c[n], l + 1) if ok else np.nan
            if not (ok and f > 0.0 and math.isfinite(f)):
                for m in range(l + 1, depth + 1):
                    bad[n, m] = True
                break
            logF[n, l + 1] = logF[n, l] + math.log(f / (width * batch))
            V *= math.sqrt(width * batch / f)


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _rnn_kernel(phi, dphi, rng, steps, width, batch, sigma_w, sigma_u, sigma_b, x2, x_corr,
                q, c, logF, bad):
    """T steps of h_t = φ(W h_{t−1} + U x_t + b) with W, U, b fixed per net; h_0 = 0."""
    n_nets = rng.shape[0]
    for n in prange(n_nets):
        st = rng[n]
        W, U, b, D = draw_rnn(st, width, batch, sigma_w, sigma_u, sigma_b)
        H = np.zeros((width, batch))
        A = np.empty((width, batch))
        xs = np.empty((width, batch))
        for t in range(steps):
            draw_inputs(st, xs, x2, x_corr)
            A[:, :] = W @ H + U @ xs
            for i in range(width):
                for a in range(batch):
                    A[i, a] += b[i]
            if t > 0:
                D[:, :] = W @ D
            f = stats(A, D, q[n], c[n], t)
            if not rnn_step_out(phi, dphi, A, D, H, f, logF[n], bad[n], t):
                break


# ---------------------------------------------------------------- Python drivers


def by_net_chunks(n_nets, progress, run_chunk):
    """``run_chunk(a, b)`` over nets [a, b): in one call, or — when ``progress`` is a
    callable(done, total) — in ~20 chunks of at least one net per thread, reporting nets done
    after each.  Each net has its own random stream (``seed_states``) and its own rows of the
    buffers, so the chunked run gives bit-identical results."""
    if progress is None:
        run_chunk(0, n_nets)
        return
    from numba import get_num_threads
    step = max(get_num_threads(), -(-n_nets // 20))
    for a in range(0, n_nets, step):
        b = min(n_nets, a + step)
        run_chunk(a, b)
        progress(b, n_nets)


def simulate_stack(block, *, depth, width, batch=64, n_nets=8, q0=1.0, c0=0.5,
                   seed=0, progress=None) -> ComposedTrace:
    """Simulate ``depth`` repetitions of ``block`` (Dense/BatchNorm/LayerNorm/Activation).

    Parameters
    ----------
    block : list of layers or a serial layer
        e.g. ``[Activation("relu"), Dense(1.0), BatchNorm(1.0, 0.0)]``.
    depth, width, batch, n_nets : int
        Blocks, units N, batch size B (BatchNorm statistics, B ≥ 4 when BN is used; the
        batch also gives the pairwise correlation estimate, B ≥ 2), independent nets.
    q0, c0 : float
        Input second moment and common pairwise correlation (0 ≤ c0 < 1).
    seed : int
        Same seed → identical results (independent of the thread count).
    progress : callable(done_nets, n_nets), optional
        Called as nets finish (the kernel then runs in chunks of nets; same results).
    """
    from ..compile import cpu_cfuncs, run_guarded
    from .. import limits
    act, ops, pars, depth, width, batch, n_nets, q0, c0, seed = stack_iv(
        block, depth, width, batch, n_nets, q0, c0, seed)
    limits.require_stack("simulate_stack", depth=depth, width=width, batch=batch, n_nets=n_nets)
    phi, dphi = cpu_cfuncs(act)

    def run():
        rng = seed_states(int(seed), int(n_nets))
        q, c, logF, bad = trace_buffers(n_nets, depth + 1)
        by_net_chunks(n_nets, progress, lambda a, b: _stack_kernel(
            phi, dphi, rng[a:b], ops, pars, int(depth), int(width), int(batch), float(q0),
            float(c0), q[a:b], c[a:b], logF[a:b], bad[a:b]))
        return q, c, logF, bad
    return trace(*run_guarded(f"composed networks ({act.name})", run))


def simulate_rnn(spec, sigma_w, sigma_u=0.0, sigma_b=0.0, *, steps, width, x2=1.0, x_corr=0.0,
                 batch=2, n_nets=8, seed=0, progress=None) -> ComposedTrace:
    """Simulate a vanilla RNN for ``steps`` steps on the CPU; index t is the pre-activation a_{t+1}.

    Compare with ``RNNMeanField(spec, sigma_w, sigma_u, sigma_b, x2, x_corr).propagate(steps)``
    (or use :func:`vanishcalc.sim.check.check_rnn`).  The front door
    :func:`vanishcalc.sim.api.simulate_rnn` chooses between this and the CUDA kernel.
    """
    from .. import limits
    from ..compile import cpu_cfuncs, run_guarded
    act, step, steps, width, batch, n_nets, seed = rnn_iv(
        spec, sigma_w, sigma_u, sigma_b, steps, width, x2, x_corr, batch, n_nets, seed)
    limits.require_rnn("simulate_rnn", steps=steps, width=width, batch=batch, n_nets=n_nets)
    phi, dphi = cpu_cfuncs(act)

    def run():
        rng = seed_states(int(seed), int(n_nets))
        q, c, logF, bad = trace_buffers(n_nets, steps)
        by_net_chunks(n_nets, progress, lambda a, b: _rnn_kernel(
            phi, dphi, rng[a:b], int(steps), int(width), int(batch), step.sigma_w,
            step.sigma_u, step.sigma_b, step.x2, step.x_corr, q[a:b], c[a:b], logF[a:b],
            bad[a:b]))
        return q, c, logF, bad
    return trace(*run_guarded(f"RNNs ({act.name})", run))


def measure_rate(act, *, gamma, beta, batch, width, depth, n_nets, seed=0, norm="bn"):
    """(rate, standard error) of the per-block squared-gradient growth of
    [Activation(φ), Dense(1), BatchNorm(γ, β) or LayerNorm(γ, β)], layers ≥ 2 pooled."""
    from ...maps.activation import Nonlinearity
    from ...maps.dense import Dense
    from ...maps.norm import BatchNorm, LayerNorm
    norm_layer = BatchNorm(gamma, beta, batch) if norm == "bn" else LayerNorm(gamma, beta)
    tr = simulate_stack([Nonlinearity(act), Dense(1.0), norm_layer], depth=depth, width=width,
                        batch=batch, n_nets=n_nets, q0=gamma ** 2 + beta ** 2, c0=0.0, seed=seed)
    return tr.mean_rate()
