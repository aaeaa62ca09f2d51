"""CUDA kernel of an RNN with normalization in the recurrence (recurrent BN / LN).

The CUDA twin of ``sim/cpu/rnn_norm.py``: the same model (recurrent BN with batch statistics
per time step, Cooijmans et al. 2017; LN of the summed input, Ba et al. 2016), the same
estimators and :class:`~vanishcalc.sim.program.ComposedTrace`, different random streams.
float64 only.  ``numba.cuda`` is reached through ``runtime.import_cuda``, never at import.

Layout: as ``sim/cuda/composed.py``'s RNN kernel — one block per net (grid-stride over nets),
thread ``tid`` owns the units ``i ≡ tid (mod threads)`` and draws everything of its rows from
its own stream (W, U, b, δa_1 row by row, then each step's inputs); W, U, the state and the
tangent (two buffers) live in global scratch, one slot per block.  Per step, each thread
forms its rows of W h, U x and W δh;

* bn: standardizes its own rows over the batch (``source.standardize_row``: per unit, no
  reduction) — U x with a zero tangent, W h with the tangent W δh;
* ln: every column (one input) over the units by block tree-reductions.

The block helpers (the RNN draws, the block reductions, the per-step statistics,
``layer_norm``) are ``composed.py``'s, built by ``blocks.block_device_functions``.
"""
from __future__ import annotations

import math

import numpy as np

from ...activation import activation
from ..program import rnn_norm_iv, trace, trace_buffers
from .. import limits
from .blocks import block_device_functions
# composed.py's launch limits, bound here as module globals (the tests lower
# ``rnn_norm.MAX_THREADS`` to force strided rows)
from .composed import MAX_NET_BLOCKS, MAX_THREADS, SCRATCH_BUDGET_BYTES
from .rng import rng_device_functions, rng_states
from .runtime import (KernelCache, compile_kernels, device_functions, import_cuda, next_pow2,
                      quiet_simulator, require_device, simulator_enabled)

#: Modes (as ``cpu/rnn_norm.py``).
MODE_BN, MODE_LN = 1, 2
#: The stream tag of this kernel (``SeedSequence([seed, tag])``).
STREAM_TAG = 0xC5A3

# ``numba.cuda``, bound on first use; a module global so that the simulator's per-launch fake
# module replaces it (as in ``composed.py``).
cuda = None

_KERNELS = KernelCache()


def _cuda():
    global cuda
    if cuda is None:
        cuda = import_cuda()
    return cuda


def kernels(act):
    """``{"rnn_norm": kernel}`` for φ = ``act``; compiled once per process."""
    _cuda()
    act = activation(act)
    return _KERNELS.get((act.key, simulator_enabled()), lambda: compile_kernels(
        kernel_functions(act), act, "float64", seconds=10))


def kernel_functions(act) -> dict:
    """``{"rnn_norm": (python function, signature, most threads per block)}`` for φ = ``act``
    (float64); compiled by :func:`kernels`, or by :func:`vanishcalc.sim.ptx.compile_ptx`."""
    _cuda()
    return _kernel_functions(*device_functions(activation(act)))


def _kernel_functions(phi, dphi):  # noqa: C901 - the kernel closes over φ, φ'
    from numba import float64, int8, int64, uint64, void
    from numba.cuda.random import xoroshiro128p_type

    _, uniform, load_dev, store_dev = rng_device_functions()
    MAXT = MAX_THREADS
    BN = MODE_BN

    # The RNN draws, the per-step statistics and LayerNorm: composed.py's (blocks.py)
    blk = block_device_functions(uniform)
    stats, record = blk["stats"], blk["record"]
    finite_positive = blk["finite_positive"]
    draw_rnn, draw_inputs = blk["draw_rnn"], blk["draw_inputs"]
    standardize_row, layer_norm = blk["standardize_row"], blk["layer_norm"]

    def rnn_norm_kernel(states, mode, steps, width, batch, sigma_w, sigma_u, sigma_b, x2, x_corr,
                        gamma_h, gamma_x, beta, WS, US, BS, HS, AS, XIN, ZS, DZ, DS, q, c, logF,
                        bad):
        """T steps of the normalized RNN; one block per net (module docstring).

        WS, US : (blocks, width, width); BS : (blocks, width); HS, AS, XIN, ZS, DZ : (blocks,
        width, batch); DS : (blocks, 2, width, batch).  Records q, c of a_t and log F_t."""
        red = cuda.shared.array((4, MAXT), float64)
        flag = cuda.shared.array(1, int64)
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
        Z = ZS[bx]
        DZr = DZ[bx]
        for net in range(bx, n_nets, cuda.gridDim.x):
            cur = 0
            D = DS[bx, 0]
            draw_rnn(st, W, U, bv, H, D, sigma_w, sigma_u, sigma_b, width, batch, tid, nthreads)
            if tid == 0:
                flag[0] = 0
            lf = 0.0
            for t in range(steps):
                draw_inputs(st, xs, ax, ex, width, batch, tid, nthreads)
                cuda.syncthreads()              # H, xs, D complete before the products
                D = DS[bx, cur]
                Dn = DS[bx, 1 - cur]
                for i in range(tid, width, nthreads):
                    for a in range(batch):
                        y = 0.0
                        z = 0.0
                        dy = 0.0
                        for j in range(width):
                            z += U[i, j] * xs[j, a]
                            if t > 0:
                                y += W[i, j] * H[j, a]
                                dy += W[i, j] * D[j, a]
                        DZr[i, a] = 0.0
                        if mode == BN:
                            Z[i, a] = z
                            A[i, a] = y
                        else:
                            A[i, a] = y + z + bv[i]
                        Dn[i, a] = dy
                if mode == BN:                  # own rows only: no reduction
                    for i in range(tid, width, nthreads):
                        if not standardize_row(Z, DZr, i, batch, gamma_x, beta):
                            flag[0] = 1
                        if t > 0:
                            if not standardize_row(A, Dn, i, batch, gamma_h, 0.0):
                                flag[0] = 1
                            for a in range(batch):
                                A[i, a] += Z[i, a]
                        else:
                            for a in range(batch):
                                A[i, a] = Z[i, a]
                    cuda.syncthreads()
                else:
                    cuda.syncthreads()          # every row of A before the column sums
                    if t > 0:
                        layer_norm(A, Dn, gamma_h, beta, width, batch, tid, nthreads, red, flag)
                    else:                       # δa_1 is the initial tangent: values only
                        layer_norm(A, DZr, gamma_h, beta, width, batch, tid, nthreads, red, flag)
                    cuda.syncthreads()
                ok = flag[0] == 0
                cuda.syncthreads()              # all have read the flag before it can change
                if t > 0:
                    cur = 1 - cur
                    D = DS[bx, cur]
                tot = 0.0
                ssq = 0.0
                f = 0.0
                if ok:
                    tot, ssq, f = stats(A, D, width, batch, tid, nthreads, red)
                    if tid == 0:
                        record(net, t, tot, ssq, width, batch, q, c)
                good = ok and finite_positive(tot, ssq, f)
                if not good:
                    if tid == 0:
                        for m in range(t, steps):
                            bad[net, m] = 1
                    break
                lf += math.log(f / nb)
                if tid == 0:
                    logF[net, t] = lf
                rs = math.sqrt(nb / f)
                for i in range(tid, width, nthreads):
                    for a in range(batch):
                        x = A[i, a]
                        D[i, a] = dphi(x) * D[i, a] * rs
                        H[i, a] = phi(x)
            cuda.syncthreads()                  # flag and scratch are reused by the next net
        store_dev(states, sid, st)

    stt = xoroshiro128p_type[::1]
    f2 = float64[:, ::1]
    f3 = float64[:, :, ::1]
    f4 = float64[:, :, :, ::1]
    sig = void(stt, int64, int64, int64, int64, float64, float64, float64, float64, float64,
               float64, float64, float64, f3, f3, f2, f3, f3, f3, f3, f3, f4, f2, f2, f2,
               int8[:, ::1])
    return {"rnn_norm": (rnn_norm_kernel, sig, MAX_THREADS)}


def simulate_rnn_norm_cuda(spec, sigma_w=1.0, sigma_u=1.0, sigma_b=0.0, *, norm, steps, width,
                           gamma=None, gamma_x=None, beta=0.0, x2=1.0, x_corr=0.0, batch=32,
                           n_nets=8, seed=0):
    """The normalized RNN on the GPU (``cpu/rnn_norm.simulate_rnn_norm``'s model, estimators
    and validation; different random streams); index t holds a_{t+1}.

    .. math:: a_t = γ_h\\mathrm{BN}(W h_{t-1}) + γ_x\\mathrm{BN}(U x_t) + β \\;\\text{(bn)},\\quad
              a_t = γ\\,\\mathrm{LN}(W h_{t-1} + U x_t + b) + β \\;\\text{(ln)},\\quad h_t = φ(a_t)

    Returns
    -------
    ComposedTrace

    Raises
    ------
    CudaUnavailableError
        no GPU and no simulator.
    VanishcalcError
        bad sizes, parameters or seed (the CPU function's messages).
    """
    model, steps, width, batch, n_nets, seed = rnn_norm_iv(
        spec, norm, gamma, gamma_x, beta, sigma_w, sigma_u, sigma_b, steps, width, x2, x_corr,
        batch, n_nets, seed)
    require_device()
    _cuda()
    k = kernels(model.act)
    per_block = limits.rnn_block_bytes(width, batch, norm=True)
    threads = min(next_pow2(width), MAX_THREADS)
    blocks = max(1, min(n_nets, MAX_NET_BLOCKS, SCRATCH_BUDGET_BYTES // per_block))
    q, c, logF, bad = trace_buffers(n_nets, steps, np.int8)
    s = model.step
    gx = model.gamma_x if norm == "bn" else 0.0
    with quiet_simulator():
        ss = np.random.SeedSequence([int(seed) & ((1 << 64) - 1), STREAM_TAG])
        states = cuda.to_device(rng_states(ss, blocks * threads))
        d_q, d_c, d_f, d_bad = (cuda.to_device(a) for a in (q, c, logF, bad))
        f64 = np.float64
        ws, us = (cuda.device_array((blocks, width, width), dtype=f64) for _ in range(2))
        bs = cuda.device_array((blocks, width), dtype=f64)
        hs, as_, xin, zs, dz = (cuda.device_array((blocks, width, batch), dtype=f64)
                                for _ in range(5))
        ds = cuda.device_array((blocks, 2, width, batch), dtype=f64)
        k["rnn_norm"][blocks, threads](
            states, MODE_BN if norm == "bn" else MODE_LN, int(steps), int(width), int(batch),
            s.sigma_w, s.sigma_u, s.sigma_b, s.x2, s.x_corr, model.gamma, gx, model.beta,
            ws, us, bs, hs, as_, xin, zs, dz, ds, d_q, d_c, d_f, d_bad)
        q, c, logF = d_q.copy_to_host(), d_c.copy_to_host(), d_f.copy_to_host()
        bad = d_bad.copy_to_host().astype(bool)
    return trace(q, c, logF, bad)


__all__ = ["simulate_rnn_norm_cuda", "kernels", "kernel_functions", "MAX_THREADS",
           "MAX_NET_BLOCKS", "MODE_BN", "MODE_LN"]
