"""Device functions shared by the op-program / RNN kernels (``composed.py``) and the recurrent
BN / LN kernel (``rnn_norm.py``): one block per net, thread ``tid`` owning rows ``i ≡ tid``.

:func:`block_device_functions` builds them fresh for each set of kernels (as
``rng.rng_device_functions`` does): a device function caches its compiled code per argument
types only, not per compute capability, so ``ptx.compile_ptx`` must get its own.

* ``normal(st)``: N(0, 1) by Box–Muller on two float64 uniforms of the thread's stream;
* ``block_sum4(red, a, b, c, d, tid, nthreads)``: block tree-reduction of four sums
  (``red`` a (4, ≥ nthreads) shared array; each component is reduced on its own, so unused
  components cost nothing in the others' rounding);
* ``stats(X, V, …)``: (Σx², Σ_i (Σ_b x_ib)², ‖V‖²) over the net; ``record`` turns them into
  q and c (as ``cpu/ops.stats``); ``finite_positive`` says whether a layer is usable;
* ``draw_rnn``, ``draw_inputs``: an RNN's W, U, b, h_0, δa_1 and one step's inputs, row by
  row from the row owner's stream;
* ``standardize_row``: ``source.standardize_row`` (BatchNorm, one unit over the batch);
* ``layer_norm``: every column standardized over the units by block reductions (see
  ``notes/sim-layout.md`` for why this is not ``standardize_row`` on the transpose).
"""
from __future__ import annotations

import math

from .. import source
from .runtime import import_cuda

# ``numba.cuda``, bound by :func:`block_device_functions`.  A module global on purpose: the
# simulator swaps a device function's module globals that are ``numba.cuda`` for its fake
# per-launch module, so ``cuda.syncthreads`` must be reached through a global.
cuda = None


def block_device_functions(uniform) -> dict:
    """``{name: device function}`` of the module docstring, drawing from ``uniform``
    (``rng.rng_device_functions``'s)."""
    global cuda
    cuda = import_cuda()
    TWO_PI = 2.0 * math.pi

    @cuda.jit(device=True)
    def normal(st):
        """N(0, 1) by Box–Muller from two float64 uniforms of the thread-local stream ``st``.

        Not ``numba.cuda.random.xoroshiro128p_normal_float64``: that one (numba-cuda 0.30)
        draws *float32* uniforms and takes log(u1), so u1 = 0 (probability 2⁻²⁴ per draw)
        gives an infinite weight, and its tails stop at ≈ 5.8σ.  Here 1 − u1 ∈ (0, 1].
        """
        u1 = uniform(st)
        u2 = uniform(st)
        return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(TWO_PI * u2)

    @cuda.jit(device=True)
    def block_sum4(red, a, b, c, d, tid, nthreads):
        """Block-wide sums of a, b, c, d (every thread calls it; all get the totals)."""
        red[0, tid] = a
        red[1, tid] = b
        red[2, tid] = c
        red[3, tid] = d
        cuda.syncthreads()
        s = nthreads // 2
        while s > 0:
            if tid < s:
                for k in range(4):
                    red[k, tid] += red[k, tid + s]
            cuda.syncthreads()
            s //= 2
        ra = red[0, 0]
        rb = red[1, 0]
        rc = red[2, 0]
        rd = red[3, 0]
        cuda.syncthreads()                  # red is rewritten by the next call
        return ra, rb, rc, rd

    @cuda.jit(device=True)
    def stats(X, V, width, batch, tid, nthreads, red):
        """(Σx², Σ_i (Σ_b x_ib)², ‖V‖²) over the whole net, as ``cpu/ops.stats``."""
        tot = 0.0
        ssq = 0.0
        f = 0.0
        for i in range(tid, width, nthreads):
            r = 0.0
            for b in range(batch):
                x = X[i, b]
                r += x
                tot += x * x
                f += V[i, b] * V[i, b]
            ssq += r * r
        tot, ssq, f, _ = block_sum4(red, tot, ssq, f, 0.0, tid, nthreads)
        return tot, ssq, f

    q_and_c = cuda.jit(device=True)(source.q_and_c)

    @cuda.jit(device=True)
    def record(net, col, tot, ssq, width, batch, q, c):
        q[net, col], c[net, col] = q_and_c(tot, ssq, width, batch)

    @cuda.jit(device=True)
    def finite_positive(tot, ssq, f):
        return (f > 0.0 and not math.isinf(f) and not math.isnan(tot) and not math.isinf(tot)
                and not math.isnan(ssq) and not math.isinf(ssq))

    standardize_row = cuda.jit(device=True)(source.standardize_row)

    @cuda.jit(device=True)
    def layer_norm(X, V, gamma, beta, width, batch, tid, nthreads, red, flag):
        """Standardize each input (column) over the units: block reductions per column."""
        for a in range(batch):
            sx = 0.0
            sv = 0.0
            for i in range(tid, width, nthreads):
                sx += X[i, a]
                sv += V[i, a]
            sx, sv, _, _ = block_sum4(red, sx, sv, 0.0, 0.0, tid, nthreads)
            m = sx / width
            mv = sv / width
            s2 = 0.0
            xv = 0.0
            for i in range(tid, width, nthreads):
                d = X[i, a] - m
                s2 += d * d
                xv += d * (V[i, a] - mv)
            s2, xv, _, _ = block_sum4(red, s2, xv, 0.0, 0.0, tid, nthreads)
            s = math.sqrt(s2 / width)
            if not s > 0.0:                   # the same totals in every thread: uniform
                if tid == 0:
                    flag[0] = 1
                continue
            uv = xv / s / width
            for i in range(tid, width, nthreads):
                u = (X[i, a] - m) / s
                V[i, a] = gamma * ((V[i, a] - mv) - u * uv) / s
                X[i, a] = gamma * u + beta

    @cuda.jit(device=True)
    def draw_rnn(st, W, U, bv, H, D, sigma_w, sigma_u, sigma_b, width, batch, tid, nthreads):
        """An RNN's own rows of W, U (σ²/N, interleaved per column), b, h_0 = 0 and δa_1."""
        sw = sigma_w / math.sqrt(width)
        su = sigma_u / math.sqrt(width)
        for i in range(tid, width, nthreads):
            for j in range(width):
                W[i, j] = sw * normal(st)
                U[i, j] = su * normal(st)
            bv[i] = sigma_b * normal(st)
            for a in range(batch):
                H[i, a] = 0.0
                D[i, a] = normal(st)

    @cuda.jit(device=True)
    def draw_inputs(st, xs, ax, ex, width, batch, tid, nthreads):
        """One step's own rows of the inputs x_b = ax·g + ex·e_b."""
        for i in range(tid, width, nthreads):
            g = normal(st)
            for a in range(batch):
                xs[i, a] = ax * g + ex * normal(st)

    return {"normal": normal, "block_sum4": block_sum4, "draw_rnn": draw_rnn,
            "draw_inputs": draw_inputs, "stats": stats, "record": record,
            "finite_positive": finite_positive, "standardize_row": standardize_row,
            "layer_norm": layer_norm}


__all__ = ["block_device_functions"]
