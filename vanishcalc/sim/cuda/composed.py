"""CUDA kernels for composed stacks (Dense / BatchNorm / LayerNorm / Activation / RBF) and RNNs.

The CUDA twin of ``sim/cpu/composed.py``: the same model, the same estimators, the same
:class:`~vanishcalc.sim.program.ComposedTrace` (built by ``program.trace``), different
random streams.  float64 only.  Imported lazily; ``numba.cuda`` is reached through
``runtime.import_cuda``, never imported at module import.

Layout (see ``notes/cuda-composed.md``)
---------------------------------------
* **One block per net**, grid-stride over nets (at most :data:`MAX_NET_BLOCKS` blocks, fewer
  when the per-block scratch would exceed :data:`SCRATCH_BUDGET_BYTES`); the **whole depth
  (or all T steps) in one launch**.
* ``T = min(next_pow2(width), MAX_THREADS)`` threads per block; thread ``tid`` owns the
  units (rows) ``i ≡ tid (mod T)`` and draws everything of its rows from its own
  xoroshiro128+ stream (stream ``blockIdx·T + tid``).
* The per-net state X and tangent V (width × batch, row-major) live in **global scratch,
  one slot per block** (two buffers each, swapped by Dense), so width and batch are limited
  only by device memory, not by the 48 KiB of static shared memory.  Shared memory holds
  only a (4, MAX_THREADS) float64 reduction buffer and a failure flag (8 KiB).
* Dense: thread i draws row i of a fresh W (σw²/N) and b_i, and accumulates row i of
  W X and W V over all batch columns into the other buffer.  W is never stored.
* BatchNorm: per unit over the batch — thread i standardizes its own rows, no reduction.
* LayerNorm: per input over the units — for each column, two block tree-reductions
  (Σx, Σv; then Σ(x−m)², Σ(x−m)(v−m_v)), then each thread updates its rows.
* Activation: elementwise.
* RBF: as Dense — thread i draws center w_i coordinate by coordinate (never stored) and
  accumulates ‖x − w_i‖² and (x − w_i)·v into row i of the other buffer, then applies φ, φ'
  (``centers="matched"``: one block reduction for the input's mean and variance first).
* Residual: OP_SAVE copies each own row of (X, V) into the third scratch slot
  (``XS[bx, 2]``, ``VS[bx, 2]``); OP_ADD_SAVED sets X ← saved + α·X row by row.  Dropout:
  each thread draws the Bernoulli(keep) mask of its own rows from its own stream.
* ``cuda.syncthreads()`` after every op; after BN/LN the failure flag (a standard
  deviation that is 0 or NaN) is read by all threads and a second barrier is passed
  before it can change, so every thread leaves the depth loop together.
* After every block: Σx², Σ_i(Σ_b x_ib)², ‖V‖² by one block reduction; q, c, log F as in
  ``cpu/ops.stats``; V renormalized to ‖V‖² = N·B.

RNN: W, U (width × width) and b drawn once per net into global scratch (row i by the
owner of row i), reused for all steps; H, A, the step's inputs and the tangent D (two
buffers) in global scratch.

Kernels are compiled once per process per ``(act.key, simulator)`` (explicit signatures)
and cached; φ, φ' are ``runtime.device_functions`` built from ``source.python_source``.
"""
from __future__ import annotations

import math

import numpy as np

from ...activation import activation
# The validation and the trace are backend-neutral (sim/program.py); the runtime and the RNG
# are shared with the dense-net kernel (runtime.py, rng.py).
from ..program import (OP_BN, OP_DENSE, OP_LN, OP_RBF, ComposedTrace, rnn_iv, stack_iv, trace,
                       trace_buffers)
from ..program import OP_ADD_SAVED, OP_DROPOUT, OP_SAVE
from .. import limits
from .blocks import block_device_functions
from .rng import rng_device_functions, rng_states
from .runtime import (CudaUnavailableError, KernelCache, compile_kernels, device_functions,
                      import_cuda, next_pow2, quiet_simulator, require_device,
                      simulator_enabled)

#: Most threads per block (units are strided over threads beyond this).
MAX_THREADS = 256
#: Most blocks launched over nets (a constant: the stream layout must not depend on the GPU).
MAX_NET_BLOCKS = 2048
#: Global scratch allowed for all blocks together; fewer blocks (grid-stride over nets) when
#: ``blocks × per-block scratch`` would exceed it.  A constant, for the same reason.
SCRATCH_BUDGET_BYTES = 1 << 30

# ``numba.cuda``, bound by :func:`_cuda` on first use.  A module global on purpose (as in
# ``dense.py``): the simulator swaps module globals that are ``numba.cuda`` for its fake
# per-launch module, so the kernels must reach ``cuda.threadIdx`` through a global.
cuda = None

_KERNELS = KernelCache()


def _cuda():
    global cuda
    if cuda is None:
        cuda = import_cuda()
    return cuda


def kernels(act):
    """``{"stack": kernel, "rnn": kernel}`` for φ = ``act``; compiled once per process."""
    _cuda()
    act = activation(act)
    return _KERNELS.get((act.key, simulator_enabled()), lambda: compile_kernels(
        kernel_functions(act), act, "float64", seconds=10))


def kernel_functions(act) -> dict:
    """``{name: (python function, signature, most threads per launch block)}`` of the stack and
    RNN kernels for φ = ``act`` (float64); compiled by :func:`kernels` for the running device,
    by :func:`vanishcalc.sim.ptx.compile_ptx` for a given compute capability."""
    _cuda()
    return _kernel_functions(*device_functions(activation(act)))


def _kernel_functions(phi, dphi):  # noqa: C901 - the kernels close over φ, φ'
    from numba import float64, int8, int64, uint64, void
    from numba.cuda.random import xoroshiro128p_type

    _, uniform, load_dev, store_dev = rng_device_functions()

    MAXT = MAX_THREADS

    # Box–Muller, the block reduction, the per-layer statistics and the norms: shared with the
    # recurrent BN / LN kernel (blocks.py)
    blk = block_device_functions(uniform)
    normal, block_sum4, stats = blk["normal"], blk["block_sum4"], blk["stats"]
    record, finite_positive = blk["record"], blk["finite_positive"]
    draw_rnn, draw_inputs = blk["draw_rnn"], blk["draw_inputs"]
    standardize_row, layer_norm = blk["standardize_row"], blk["layer_norm"]

    @cuda.jit(device=True)
    def dense(st, X, V, Xn, Vn, sigma_w, sigma_b, width, batch, tid, nthreads):
        s = sigma_w / math.sqrt(width)
        for i in range(tid, width, nthreads):
            for b in range(batch):
                Xn[i, b] = 0.0
                Vn[i, b] = 0.0
            for j in range(width):
                w = s * normal(st)
                for b in range(batch):
                    Xn[i, b] += w * X[j, b]
                    Vn[i, b] += w * V[j, b]
            bi = 0.0
            if sigma_b > 0.0:
                bi = sigma_b * normal(st)
            for b in range(batch):
                Xn[i, b] += bi

    @cuda.jit(device=True)
    def batch_norm(X, V, gamma, beta, width, batch, tid, nthreads, flag):
        """Standardize each own row over the batch (exact JVP on V)."""
        for i in range(tid, width, nthreads):
            if not standardize_row(X, V, i, batch, gamma, beta):
                flag[0] = 1

    @cuda.jit(device=True)
    def rbf(st, X, V, Xn, Vn, sigma_c, mu_c, offset, scale, matched, width, batch, tid,
            nthreads, red):
        """RBF units (maps/rbf.py), as ``cpu/composed._rbf``: thread i draws center w_i one
        coordinate at a time (never stored) and accumulates ‖x_b − w_i‖² and (x_b − w_i)·v_b
        into row i of the other buffer; then φ(d), φ'(d)·2(x − w)·v/scale.  ``matched`` > 0:
        μc, σc² from a block reduction over all of X (every thread calls it)."""
        if matched > 0.0:
            s1 = 0.0
            s2 = 0.0
            for i in range(tid, width, nthreads):
                for b in range(batch):
                    s1 += X[i, b]
                    s2 += X[i, b] * X[i, b]
            s1, s2, _, _ = block_sum4(red, s1, s2, 0.0, 0.0, tid, nthreads)
            nb = width * batch
            mu_c = s1 / nb
            sigma_c = math.sqrt(max(s2 / nb - mu_c * mu_c, 0.0))
        for i in range(tid, width, nthreads):
            for b in range(batch):
                Xn[i, b] = 0.0
                Vn[i, b] = 0.0
            for j in range(width):
                w = mu_c + sigma_c * normal(st)
                for b in range(batch):
                    dx = X[j, b] - w
                    Xn[i, b] += dx * dx
                    Vn[i, b] += dx * V[j, b]
            for b in range(batch):
                d = (Xn[i, b] - offset) / scale
                Vn[i, b] = dphi(d) * 2.0 * Vn[i, b] / scale
                Xn[i, b] = phi(d)

    @cuda.jit(device=True)
    def act_rows(X, V, width, batch, tid, nthreads):
        for i in range(tid, width, nthreads):
            for b in range(batch):
                x = X[i, b]
                V[i, b] = dphi(x) * V[i, b]
                X[i, b] = phi(x)

    @cuda.jit(device=True)
    def save_rows(X, V, SX, SV, width, batch, tid, nthreads):
        """OP_SAVE: the residual block's input, own rows."""
        for i in range(tid, width, nthreads):
            for b in range(batch):
                SX[i, b] = X[i, b]
                SV[i, b] = V[i, b]

    @cuda.jit(device=True)
    def add_saved_rows(X, V, SX, SV, alpha, width, batch, tid, nthreads):
        """OP_ADD_SAVED: X ← saved + α·X, V ← saved_V + α·V, own rows."""
        for i in range(tid, width, nthreads):
            for b in range(batch):
                X[i, b] = SX[i, b] + alpha * X[i, b]
                V[i, b] = SV[i, b] + alpha * V[i, b]

    @cuda.jit(device=True)
    def dropout_rows(st, X, V, keep, width, batch, tid, nthreads):
        """OP_DROPOUT: x·m/keep, m ~ Bernoulli(keep) per entry from the row owner's stream."""
        inv = 1.0 / keep
        for i in range(tid, width, nthreads):
            for b in range(batch):
                m = 0.0
                if uniform(st) < keep:
                    m = inv
                X[i, b] *= m
                V[i, b] *= m

    @cuda.jit(device=True)
    def scale_rows(V, r, width, batch, tid, nthreads):
        for i in range(tid, width, nthreads):
            for b in range(batch):
                V[i, b] *= r

    def stack_kernel(states, ops, pars, depth, width, batch, q0, c0, XS, VS, q, c, logF, bad):
        """``depth`` blocks of the op program for every net; one block per net.

        XS, VS : (blocks, slots, width, batch) scratch (slots 0, 1: the state, swapped by
        Dense; slot 2, present when the program has OP_SAVE: the residual block's input); q, c, logF (n_nets, depth+1) float64,
        bad (n_nets, depth+1) int8 — the arrays of ``composed._stack_kernel``.
        """
        red = cuda.shared.array((4, MAXT), float64)
        flag = cuda.shared.array(1, int64)
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        bx = cuda.blockIdx.x
        sid = bx * nthreads + tid
        st = cuda.local.array(2, uint64)
        load_dev(states, sid, st)
        n_nets = q.shape[0]
        n_ops = ops.shape[0]
        nb = float(width * batch)
        ax = math.sqrt(q0 * c0)
        ex = math.sqrt(q0 * (1.0 - c0))
        for net in range(bx, n_nets, cuda.gridDim.x):
            cur = 0
            X = XS[bx, 0]
            V = VS[bx, 0]
            for i in range(tid, width, nthreads):
                g = normal(st)
                for b in range(batch):
                    X[i, b] = ax * g + ex * normal(st)
                    V[i, b] = normal(st)
            if tid == 0:
                flag[0] = 0
            tot, ssq, f = stats(X, V, width, batch, tid, nthreads, red)
            lf = math.log(f / nb)
            if tid == 0:
                record(net, 0, tot, ssq, width, batch, q, c)
                logF[net, 0] = lf
            scale_rows(V, math.sqrt(nb / f), width, batch, tid, nthreads)
            cuda.syncthreads()
            for layer in range(depth):
                ok = True
                for k in range(n_ops):
                    op = ops[k]
                    p0 = pars[k, 0]
                    p1 = pars[k, 1]
                    X = XS[bx, cur]
                    V = VS[bx, cur]
                    if op == OP_DENSE:
                        dense(st, X, V, XS[bx, 1 - cur], VS[bx, 1 - cur], p0, p1,
                              width, batch, tid, nthreads)
                        cur = 1 - cur
                    elif op == OP_BN:
                        batch_norm(X, V, p0, p1, width, batch, tid, nthreads, flag)
                    elif op == OP_LN:
                        layer_norm(X, V, p0, p1, width, batch, tid, nthreads, red, flag)
                    elif op == OP_RBF:
                        rbf(st, X, V, XS[bx, 1 - cur], VS[bx, 1 - cur], p0, p1, pars[k, 2],
                            pars[k, 3], pars[k, 4], width, batch, tid, nthreads, red)
                        cur = 1 - cur
                    elif op == OP_SAVE:
                        save_rows(X, V, XS[bx, 2], VS[bx, 2], width, batch, tid, nthreads)
                    elif op == OP_ADD_SAVED:
                        add_saved_rows(X, V, XS[bx, 2], VS[bx, 2], p0, width, batch, tid,
                                       nthreads)
                    elif op == OP_DROPOUT:
                        dropout_rows(st, X, V, p0, width, batch, tid, nthreads)
                    else:
                        act_rows(X, V, width, batch, tid, nthreads)
                    cuda.syncthreads()
                    if op == OP_BN or op == OP_LN:
                        ok = flag[0] == 0
                        cuda.syncthreads()      # all have read the flag before it can change
                        if not ok:
                            break
                X = XS[bx, cur]
                V = VS[bx, cur]
                good = ok
                if ok:
                    tot, ssq, f = stats(X, V, width, batch, tid, nthreads, red)
                    if tid == 0:
                        record(net, layer + 1, tot, ssq, width, batch, q, c)
                    good = finite_positive(tot, ssq, f)
                if not good:
                    if tid == 0:
                        for m in range(layer + 1, depth + 1):
                            bad[net, m] = 1
                    break
                lf += math.log(f / nb)
                if tid == 0:
                    logF[net, layer + 1] = lf
                scale_rows(V, math.sqrt(nb / f), width, batch, tid, nthreads)
                cuda.syncthreads()
            cuda.syncthreads()                  # flag and scratch are reused by the next net
        store_dev(states, sid, st)

    def rnn_kernel(states, steps, width, batch, sigma_w, sigma_u, sigma_b, x2, x_corr,
                   WS, US, BS, HS, AS, XIN, DS, q, c, logF, bad):
        """T steps of h_t = φ(W h_{t−1} + U x_t + b), W, U, b fixed per net; h_0 = 0.

        WS, US : (blocks, width, width); BS : (blocks, width); HS, AS, XIN : (blocks, width,
        batch); DS : (blocks, 2, width, batch).  Records q, c of a_t and log F_t, F_t = ‖δa_t‖².
        """
        red = cuda.shared.array((4, MAXT), float64)
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        bx = cuda.blockIdx.x
        sid = bx * nthreads + tid
        st = cuda.local.array(2, uint64)
        load_dev(states, sid, st)
        n_nets = q.shape[0]
        nb = float(width * batch)
        ax = math.sqrt(x2 * x_corr)
        ex = math.sqrt(x2 * (1.0 - x_corr))
        W = WS[bx]
        U = US[bx]
        bv = BS[bx]
        H = HS[bx]
        A = AS[bx]
        xs = XIN[bx]
        for net in range(bx, n_nets, cuda.gridDim.x):
            cur = 0
            D = DS[bx, 0]
            draw_rnn(st, W, U, bv, H, D, sigma_w, sigma_u, sigma_b, width, batch, tid, nthreads)
            lf = 0.0
            for t in range(steps):
                draw_inputs(st, xs, ax, ex, width, batch, tid, nthreads)
                cuda.syncthreads()              # H, xs, D complete before the products
                D = DS[bx, cur]
                Dn = DS[bx, 1 - cur]
                for i in range(tid, width, nthreads):
                    for a in range(batch):
                        acc = bv[i]
                        for j in range(width):
                            acc += W[i, j] * H[j, a] + U[i, j] * xs[j, a]
                        A[i, a] = acc
                        if t > 0:
                            dn = 0.0
                            for j in range(width):
                                dn += W[i, j] * D[j, a]
                            Dn[i, a] = dn
                if t > 0:
                    cur = 1 - cur
                    D = DS[bx, cur]
                tot, ssq, f = stats(A, D, width, batch, tid, nthreads, red)   # syncs first
                if tid == 0:
                    record(net, t, tot, ssq, width, batch, q, c)
                if not finite_positive(tot, ssq, f):
                    if tid == 0:
                        for m in range(t, steps):
                            bad[net, m] = 1
                    break
                lf += math.log(f / nb)
                if tid == 0:
                    logF[net, t] = lf
                r = math.sqrt(nb / f)
                for i in range(tid, width, nthreads):
                    for a in range(batch):
                        x = A[i, a]
                        D[i, a] = dphi(x) * D[i, a] * r
                        H[i, a] = phi(x)
            cuda.syncthreads()                  # scratch is reused by the next net
        store_dev(states, sid, st)

    st = xoroshiro128p_type[::1]
    f2 = float64[:, ::1]
    f3 = float64[:, :, ::1]
    f4 = float64[:, :, :, ::1]
    b2 = int8[:, ::1]
    sig_stack = void(st, int64[::1], f2, int64, int64, int64, float64, float64, f4, f4,
                     f2, f2, f2, b2)
    sig_rnn = void(st, int64, int64, int64, float64, float64, float64, float64, float64,
                   f3, f3, f2, f3, f3, f3, f4, f2, f2, f2, b2)
    return {"stack": (stack_kernel, sig_stack, MAX_THREADS), "rnn": (rnn_kernel, sig_rnn, MAX_THREADS)}


# ---------------------------------------------------------------- host drivers


def _device_streams(seed, tag, n):
    ss = np.random.SeedSequence([int(seed) & ((1 << 64) - 1), tag])
    return rng_states(ss, n)


def _layout(n_nets, width, per_block_bytes):
    threads = min(next_pow2(width), MAX_THREADS)
    blocks = max(1, min(n_nets, MAX_NET_BLOCKS, SCRATCH_BUDGET_BYTES // per_block_bytes))
    return blocks, threads


def simulate_stack_cuda(block, *, depth, width, batch=64, n_nets=8, q0=1.0, c0=0.5,
                        seed=0) -> ComposedTrace:
    """Simulate ``depth`` repetitions of ``block`` on the GPU (``composed.simulate_stack``'s
    model, estimators and validation; different random streams).

    .. math::

        X \\leftarrow \\text{op}_k(X),\\; V \\leftarrow J_k V \\quad (k \\text{ over the block}),
        \\qquad q^l = \\tfrac{1}{NB}\\textstyle\\sum X^2,\\; F^l = \\|V\\|^2

    Parameters
    ----------
    block : list of layers or a serial layer
        Dense / BatchNorm / LayerNorm / Activation (one φ per block).
    depth, width, batch, n_nets : int
        Blocks L, units N, batch B (≥ 2; ≥ 4 with BatchNorm), independent nets.
    q0, c0 : float
        Input second moment (> 0) and common pairwise correlation (in [0, 1)).
    seed : int
        Seeds the device xoroshiro128+ streams; same seed and sizes → identical result.

    Returns
    -------
    ComposedTrace

    Raises
    ------
    CudaUnavailableError
        no GPU and no simulator.
    VanishcalcError
        bad sizes, moments, layers or seed (messages as the CPU function's).

    Notes
    -----
    float64 only.  Layout and limits: ``notes/cuda-composed.md``.
    """
    act, ops, pars, depth, width, batch, n_nets, q0, c0, seed = stack_iv(
        block, depth, width, batch, n_nets, q0, c0, seed)     # the CPU function's checks
    require_device()
    _cuda()
    depth, width, batch, n_nets = int(depth), int(width), int(batch), int(n_nets)
    k = kernels(act)
    # X and V: two slots (swapped by Dense), and a third for a residual's saved input only
    # when the program has one (so the block count, hence the streams, of other programs
    # stay as they were); the sizes are limits.py's, which the memory check uses
    residual = OP_SAVE in ops
    slots = limits.stack_slots(residual)
    blocks, threads = _layout(n_nets, width, limits.stack_block_bytes(width, batch, residual))
    q, c, logF, bad = trace_buffers(n_nets, depth + 1, np.int8)
    with quiet_simulator():
        states = cuda.to_device(_device_streams(seed, 0xC5A1, blocks * threads))
        d_q, d_c, d_f, d_bad = (cuda.to_device(a) for a in (q, c, logF, bad))
        xs = cuda.device_array((blocks, slots, width, batch), dtype=np.float64)
        vs = cuda.device_array((blocks, slots, width, batch), dtype=np.float64)
        k["stack"][blocks, threads](states, np.ascontiguousarray(ops, dtype=np.int64),
                                    np.ascontiguousarray(pars, dtype=np.float64), depth, width,
                                    batch, float(q0), float(c0), xs, vs, d_q, d_c, d_f, d_bad)
        q, c, logF = d_q.copy_to_host(), d_c.copy_to_host(), d_f.copy_to_host()
        bad = d_bad.copy_to_host().astype(bool)
    return trace(q, c, logF, bad)


def simulate_rnn_cuda(spec, sigma_w, sigma_u=0.0, sigma_b=0.0, *, steps, width, x2=1.0,
                      x_corr=0.0, batch=2, n_nets=8, seed=0) -> ComposedTrace:
    """Simulate a vanilla RNN for ``steps`` steps on the GPU; index t is a_{t+1}.

    ``composed.simulate_rnn``'s model, estimators and validation (W, U, b drawn once per
    net and reused over time, h_0 = 0, inputs fresh per step); different random streams.

    .. math:: a_t = W h_{t-1} + U x_t + b,\\quad h_t = φ(a_t),\\quad
              δa_{t+1} = W(φ'(a_t) ⊙ δa_t)

    Returns
    -------
    ComposedTrace

    Raises
    ------
    CudaUnavailableError
        no GPU and no simulator.
    VanishcalcError
        bad sizes, parameters or seed.

    Notes
    -----
    float64 only; W and U are stored (2·N² floats per block).  ``notes/cuda-composed.md``.
    """
    act, step, steps, width, batch, n_nets, seed = rnn_iv(
        spec, sigma_w, sigma_u, sigma_b, steps, width, x2, x_corr, batch, n_nets, seed)
    require_device()
    _cuda()
    steps, width, batch, n_nets = int(steps), int(width), int(batch), int(n_nets)
    k = kernels(act)
    blocks, threads = _layout(n_nets, width, limits.rnn_block_bytes(width, batch))
    q, c, logF, bad = trace_buffers(n_nets, steps, np.int8)
    with quiet_simulator():
        states = cuda.to_device(_device_streams(seed, 0xC5A2, blocks * threads))
        d_q, d_c, d_f, d_bad = (cuda.to_device(a) for a in (q, c, logF, bad))
        f64 = np.float64
        ws = cuda.device_array((blocks, width, width), dtype=f64)
        us = cuda.device_array((blocks, width, width), dtype=f64)
        bs = cuda.device_array((blocks, width), dtype=f64)
        hs, as_, xin = (cuda.device_array((blocks, width, batch), dtype=f64) for _ in range(3))
        ds = cuda.device_array((blocks, 2, width, batch), dtype=f64)
        k["rnn"][blocks, threads](states, steps, width, batch, step.sigma_w, step.sigma_u,
                                  step.sigma_b, step.x2, step.x_corr, ws, us, bs, hs, as_, xin,
                                  ds, d_q, d_c, d_f, d_bad)
        q, c, logF = d_q.copy_to_host(), d_c.copy_to_host(), d_f.copy_to_host()
        bad = d_bad.copy_to_host().astype(bool)
    return trace(q, c, logF, bad)


__all__ = ["simulate_stack_cuda", "simulate_rnn_cuda", "kernels", "CudaUnavailableError",
           "MAX_THREADS", "MAX_NET_BLOCKS", "SCRATCH_BUDGET_BYTES"]
