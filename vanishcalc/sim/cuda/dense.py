"""CUDA kernels for the dense mean-field simulation (``backend="cuda"``).

``numba.cuda`` is reached through ``runtime.import_cuda``, never imported at module import.

One kernel, for every width: one block per net (grid-stride over nets), the whole depth in
**one launch**, ``min(next_pow2(width), MAX_THREADS)`` threads, unit ``u`` owned by thread
``u mod threads``.  No weight is ever drawn: with fresh weights every layer, the rows of
``W_l X``, ``X = [φ(h1), φ(h2), φ'(h1)⊙t̂1, φ'(h2)⊙t̂2]`` (N × 4), are i.i.d.
``N(0, σw²/N · XᵀX)`` given ``X``, so each layer reduces the 10 entries of ``XᵀX`` over the
block (float64), factors it (4 × 4 Cholesky, in every thread) and draws 4 normals (+ the bias)
per unit — O(N) work per layer instead of O(N²), the exact law of the explicit-weight net at
any width (as ``sim/cpu/dense.py``).  Normals: xoroshiro128+ streams (one per thread) and Box–Muller
in float64.

Per net and layer ``l = 0..depth`` the kernel writes ``Σh1²``, ``Σh2²``, ``Σh1h2``,
``log F_l`` for each input's forward-mode tangent, the count of saturated units and a
non-finite count.  The tangent is renormalized to unit norm every layer (inside the Gram
matrix) and its log-norm accumulated, so ``grad[l] = F_depth / F_l`` neither overflows nor
underflows in float32.

See ``notes/cuda.md``.
"""
from __future__ import annotations

import math

import numpy as np

from ...activation import activation
from ...errors import VanishcalcError
from ...validate import integer, real
from ..seeds import seed_iv
from .rng import rng_device_functions, rng_states
from ..summary import has_flat_piece
from .runtime import (KernelCache, compile_kernels, device_functions, import_cuda, next_pow2,
                      quiet_simulator, require_device, simulator_enabled)
from .summary import reduce_on_device

#: Most threads per block; wider nets have several units per thread (strided).
MAX_THREADS = 256
#: Most blocks launched over nets; more nets are handled by grid-stride loops.  A constant
#: (not a device query) so that the RNG stream layout, hence the result of a fixed seed,
#: does not depend on the GPU.
MAX_NET_BLOCKS = 2048
#: Statistics per layer: Σh1², Σh2², Σh1h2, log F1, log F2, saturated count, non-finite count.
N_STATS = 7
#: Entries of the 4×4 Gram matrix XᵀX reduced per layer (lower triangle).
N_GRAM = 10
#: Relative pivot below which a column of X is linearly dependent (as ``sim/cpu/dense.py``).
PIVOT_RTOL = 1e-12
#: Saturation: |φ'(h)| below this fraction of max |φ'|.
SAT_FRACTION = 1e-3

_DTYPES = ("float32", "float64")

# ``numba.cuda``, bound by :func:`_cuda` on first use.  A module global on purpose: the
# CUDA simulator swaps module globals that are ``numba.cuda`` for its fake per-launch module,
# so kernels must reach ``cuda.threadIdx`` etc. through a global, never through a closure.
cuda = None


class CudaOrthogonalError(VanishcalcError):
    """Orthogonal (Haar) weights are not implemented on the CUDA backend."""


def _cuda():
    global cuda
    if cuda is None:
        cuda = import_cuda()
    return cuda


# ---------------------------------------------------------------- kernel factory

_KERNELS = KernelCache()


def kernels(act, dtype: str):
    """The compiled kernels for ``(act.key, dtype)``; built once per process and cached."""
    _cuda()
    act = activation(act)

    def build():
        k = compile_kernels(kernel_functions(act, dtype), act, dtype, seconds=5)
        k["npf"] = np.float32 if dtype == "float32" else np.float64
        return k
    return _KERNELS.get((act.key, dtype, simulator_enabled()), build)

def kernel_functions(act, dtype: str) -> dict:
    """``{name: (python function, signature, most threads per launch block)}`` of the dense-net
    kernels for φ = ``act`` in ``dtype``; :func:`kernels` compiles them for the running device,
    :func:`vanishcalc.sim.ptx.compile_ptx` for a given compute capability."""
    _cuda()
    return _kernel_functions(*device_functions(activation(act)), dtype)


def _kernel_functions(phi, dphi, dtype: str):  # noqa: C901 - the kernel closes over φ, dtype
    """The dense-net kernel for one φ and one float type, as a Python function.

    The kernel closes over φ, φ' and the float type (numba freezes closure variables as
    compile-time constants), so each (activation, dtype) pair gets its own machine code.
    """
    from numba import float32, float64, int64, uint64, void
    from numba.cuda.random import xoroshiro128p_type

    f32 = dtype == "float32"
    nbf = float32 if f32 else float64
    TWO_PI = 2.0 * math.pi
    NEG_INF = -math.inf
    NAN = math.nan
    NR = N_STATS + N_GRAM
    PIVOT = PIVOT_RTOL
    _, uniform, load_dev, store_dev = rng_device_functions()

    @cuda.jit(device=True)
    def normal_pair(st):
        """Two independent N(0, 1) draws (float64) by Box–Muller from the local stream ``st``."""
        u1 = uniform(st)                    # [0, 1): 1 - u1 is in (0, 1]
        u2 = uniform(st)
        r = math.sqrt(-2.0 * math.log(1.0 - u1))
        th = TWO_PI * u2
        return r * math.cos(th), r * math.sin(th)

    @cuda.jit(device=True)
    def is_bad(x):
        return math.isnan(x) or math.isinf(x)

    @cuda.jit(device=True)
    def unit_sums(h1, h2, t1, t2, thr, acc):
        """Add one unit's terms to ``acc``: the 7 statistics, then the 10 Gram entries of
        X = [φ(h1), φ(h2), φ'(h1) t1, φ'(h2) t2] (lower triangle, row by row)."""
        d1 = dphi(h1)
        d2 = dphi(h2)
        acc[0] += float64(h1) * float64(h1)
        acc[1] += float64(h2) * float64(h2)
        acc[2] += float64(h1) * float64(h2)
        acc[3] += float64(t1) * float64(t1)
        acc[4] += float64(t2) * float64(t2)
        if abs(d1) < thr:
            acc[5] += 1.0
        if abs(d2) < thr:
            acc[5] += 1.0
        if is_bad(h1) or is_bad(h2) or is_bad(t1) or is_bad(t2):
            acc[6] += 1.0
        x0 = float64(phi(h1))
        x1 = float64(phi(h2))
        x2 = float64(d1 * t1)
        x3 = float64(d2 * t2)
        acc[7] += x0 * x0
        acc[8] += x1 * x0
        acc[9] += x1 * x1
        acc[10] += x2 * x0
        acc[11] += x2 * x1
        acc[12] += x2 * x2
        acc[13] += x3 * x0
        acc[14] += x3 * x1
        acc[15] += x3 * x2
        acc[16] += x3 * x3

    @cuda.jit(device=True)
    def block_sums(red, acc, tid, nthreads):
        """Replace every thread's ``acc[:NR]`` by the block's totals; all threads get the same
        values (same additions in the same order).

        ``red`` is (NR, 32): warps add their values into it one after another (thread
        ``tid`` into lane ``tid % 32``), then a tree sum over the lanes.  Shared memory of one
        warp's width, not the block's, keeps it at 4.3 KiB, so small blocks (width 64 → 64
        threads) are not limited to a few per SM by shared memory.
        """
        lane = tid % 32
        warp = tid // 32
        lanes = min(nthreads, 32)
        if warp == 0:
            for k in range(NR):
                red[k, lane] = acc[k]
        cuda.syncthreads()
        for w in range(1, (nthreads + 31) // 32):
            if warp == w:
                for k in range(NR):
                    red[k, lane] += acc[k]
            cuda.syncthreads()
        s = lanes // 2
        while s > 0:
            if tid < s:
                for k in range(NR):
                    red[k, tid] += red[k, tid + s]
            cuda.syncthreads()
            s //= 2
        for k in range(NR):
            acc[k] = red[k, 0]
        cuda.syncthreads()                      # red is rewritten by the next call

    @cuda.jit(device=True)
    def gram_cholesky(acc, r1, r2, G, L):
        """L (4×4 lower) with L Lᵀ = XᵀX of the renormalized X = [x0, x1, r1 x2, r2 x3].

        As ``cpu._gram_cholesky``: a column whose pivot is ≤ 1e-12 of its diagonal (or ≤ 0) is
        linearly dependent on the earlier ones (c = 1, a relu layer all off, width < 4) and
        gets a zero column.  A non-finite Gram matrix gives NaN, flagged the next layer.
        """
        k = 7
        for i in range(4):
            si = 1.0 if i < 2 else (r1 if i == 2 else r2)
            for j in range(i + 1):
                sj = 1.0 if j < 2 else (r1 if j == 2 else r2)
                G[i, j] = acc[k] * si * sj
                k += 1
        for i in range(4):
            for j in range(4):
                L[i, j] = 0.0
        for j in range(4):
            d = G[j, j]
            for m in range(j):
                d -= L[j, m] * L[j, m]
            if d <= PIVOT * G[j, j] or d <= 0.0:
                continue
            ljj = math.sqrt(d)
            L[j, j] = ljj
            for r in range(j + 1, 4):
                s = G[r, j]
                for m in range(j):
                    s -= L[r, m] * L[j, m]
                L[r, j] = s / ljj

    @cuda.jit(device=True)
    def log_norm(log_scale, n):
        """log F = log_scale + log n, with F = 0 → -inf and NaN kept (no log(0) call)."""
        if n > 0.0 and not math.isinf(n):
            return log_scale + math.log(n)
        if n == 0.0:
            return NEG_INF
        if math.isinf(n):
            return n
        return NAN

    @cuda.jit(device=True)
    def inv_norm(n):
        """1/√n for renormalizing the tangent; 1 when n is 0 or not finite (nothing to do)."""
        if n > 0.0 and not math.isinf(n):
            return 1.0 / math.sqrt(n)
        return 1.0

    def dense_kernel(x, states, w_scale, b_scale, depth, thr, out):
        """The whole depth of every net; one block per net, units strided over the threads.

        x : (n_nets, 4, width) h1, h2, t1, t2 at layer 0, overwritten layer by layer.
        out : (7, n_nets, depth + 1) float64 per-layer sums (see the module docstring),
        statistic-major.

        Each layer: one pass over the block's units adds the statistics and the Gram matrix
        XᵀX (one block reduction, float64); every thread factors the same 4×4 matrix; then
        each thread draws, for each of its units, z ~ N(0, I₄) (and the bias) and writes
        h_a = s (L z)_a + b, t_a = s (L z)_{2+a}, s = σw/√N — the exact law of the row
        (W X)_i given X (notes/cuda.md).  Units are only ever touched by their own thread, so
        the state needs no barrier; only the reduction buffer does.
        """
        red = cuda.shared.array((NR, 32), float64)
        acc = cuda.local.array(NR, float64)
        G = cuda.local.array((4, 4), float64)
        L = cuda.local.array((4, 4), float64)
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        sid = cuda.blockIdx.x * nthreads + tid          # this thread's RNG stream
        st = cuda.local.array(2, uint64)
        load_dev(states, sid, st)
        n_nets = x.shape[0]
        width = x.shape[2]
        for net in range(cuda.blockIdx.x, n_nets, cuda.gridDim.x):
            log_a1 = 0.0
            log_a2 = 0.0
            for layer in range(depth + 1):
                for k in range(NR):
                    acc[k] = 0.0
                for u in range(tid, width, nthreads):
                    unit_sums(x[net, 0, u], x[net, 1, u], x[net, 2, u], x[net, 3, u], thr, acc)
                block_sums(red, acc, tid, nthreads)
                n1 = acc[3]
                n2 = acc[4]
                lf1 = log_norm(log_a1, n1)
                lf2 = log_norm(log_a2, n2)
                if tid == 0:
                    out[0, net, layer] = acc[0]
                    out[1, net, layer] = acc[1]
                    out[2, net, layer] = acc[2]
                    out[3, net, layer] = lf1
                    out[4, net, layer] = lf2
                    out[5, net, layer] = acc[5]
                    out[6, net, layer] = acc[6]
                if layer == depth:
                    break
                r1 = inv_norm(n1)
                r2 = inv_norm(n2)
                if r1 != 1.0:
                    log_a1 = lf1
                if r2 != 1.0:
                    log_a2 = lf2
                gram_cholesky(acc, r1, r2, G, L)
                for u in range(tid, width, nthreads):
                    z0, z1 = normal_pair(st)
                    z2, z3 = normal_pair(st)
                    bias = 0.0
                    if b_scale > 0.0:
                        zb, _ = normal_pair(st)
                        bias = b_scale * zb
                    y0 = L[0, 0] * z0
                    y1 = L[1, 0] * z0 + L[1, 1] * z1
                    y2 = L[2, 0] * z0 + L[2, 1] * z1 + L[2, 2] * z2
                    y3 = L[3, 0] * z0 + L[3, 1] * z1 + L[3, 2] * z2 + L[3, 3] * z3
                    x[net, 0, u] = nbf(w_scale * y0 + bias)
                    x[net, 1, u] = nbf(w_scale * y1 + bias)
                    x[net, 2, u] = nbf(w_scale * y2)
                    x[net, 3, u] = nbf(w_scale * y3)
        store_dev(states, sid, st)

    arr3 = nbf[:, :, ::1]
    out3 = float64[:, :, ::1]
    states_t = xoroshiro128p_type[::1]
    sig = void(arr3, states_t, float64, float64, int64, float64, out3)
    return {"dense": (dense_kernel, sig, MAX_THREADS)}


# ---------------------------------------------------------------- host driver


def _run_dense_iv(act, sigma_w, sigma_b, depth, width, n_nets, q0, c0, orthogonal, seed, dtype):
    """Validate :func:`run_dense`'s arguments; messages name the argument and the fix."""
    act = activation(act)
    std = "(a standard deviation)"
    real("run_dense", "sigma_w", sigma_w, nonneg=True, why=std)
    real("run_dense", "sigma_b", sigma_b, nonneg=True, why=std)
    real("run_dense", "q0", q0, positive=True, why="(the input second moment)")
    real("run_dense", "c0", c0, lo=-1.0, hi=1.0, why="(the input correlation)")
    for name, val, lo in (("depth", depth, 0), ("width", width, 1), ("n_nets", n_nets, 1)):
        integer("run_dense", name, val, lo)
    if width < 2 and abs(float(c0)) != 1.0:
        raise VanishcalcError(f"width={width} cannot hold two inputs with correlation c0={c0}; "
                              "use width ≥ 2")
    seed_iv("run_dense", seed)
    name = getattr(np.dtype(dtype), "name", None) if _is_dtype_like(dtype) else None
    if name not in _DTYPES:
        raise VanishcalcError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if orthogonal:
        raise CudaOrthogonalError(
            "orthogonal weights are not implemented on backend='cuda': a Haar-orthogonal W_l "
            "needs a QR factorization of a fresh width×width Gaussian matrix every layer, which "
            "the one-launch kernels (rows drawn on the fly, never stored) cannot do. Use "
            "weights='gaussian' on CUDA, or backend='cpu' for orthogonal weights.")
    return act, name


def _is_dtype_like(dtype):
    try:
        np.dtype(dtype)
        return True
    except TypeError:
        return False


def _inputs(rng, n_nets, width, q0, c0):
    """Layer-0 pre-activations and tangents, (n_nets, 4, width) float64.

    h1, h2 have mean square exactly q0 and correlation exactly c0 (Gram–Schmidt of two
    Gaussian directions); tangents t_a ~ N(0, I/width).
    """
    u = rng.standard_normal((n_nets, width))
    v = rng.standard_normal((n_nets, width))
    e1 = u / np.linalg.norm(u, axis=1, keepdims=True)
    v = v - np.sum(v * e1, axis=1, keepdims=True) * e1
    nv = np.linalg.norm(v, axis=1, keepdims=True)
    e2 = np.divide(v, nv, out=np.zeros_like(v), where=nv > 0)
    r = math.sqrt(q0 * width)
    x = np.empty((n_nets, 4, width))
    x[:, 0] = r * e1
    x[:, 1] = r * (c0 * e1 + math.sqrt(max(0.0, 1.0 - c0 * c0)) * e2)
    x[:, 2:] = rng.standard_normal((n_nets, 2, width)) / math.sqrt(width)
    return x


def _seed_sequences(seed: int):
    """(host, device) ``SeedSequence`` children of ``seed``: inputs/tangents, weight streams."""
    return tuple(np.random.SeedSequence([int(seed), 0x5CDA]).spawn(2))


def run_dense(act, *, sigma_w, sigma_b=0.0, depth, width, n_nets=1, q0=1.0, c0=0.5,
              orthogonal=False, seed=0, dtype="float64", sat_reference=None) -> dict:
    """Simulate ``n_nets`` random dense networks on the GPU; per-layer statistics.

    .. math::

        h^{l+1} = W_l φ(h^l) + b_l, \\quad W_{ij} \\sim N(0, σ_w^2/N), \\; b_i \\sim N(0, σ_b^2),

    fresh ``W_l, b_l`` every layer, shared by the two inputs of a net.  Forward-mode
    tangents ``t^{l+1}_a = W_l (φ'(h^l_a) ⊙ t^l_a)``, ``t^0_a \\sim N(0, I/N)``.

    Parameters
    ----------
    act : Activation or str
        φ (anything :func:`vanishcalc.activation.activation` accepts).
    sigma_w, sigma_b : float
        σw, σb ≥ 0.
    depth, width, n_nets : int
        L ≥ 0 layers, N ≥ 1 units (N ≥ 2 unless |c0| = 1), nets ≥ 1.
    q0, c0 : float
        Layer-0 mean square q⁰ > 0 and correlation c⁰ ∈ [-1, 1] (both exact).
    orthogonal : bool
        Must be False on CUDA (see Raises).
    seed : int
        Seeds the host generator (inputs, tangents) and the device xoroshiro128+ streams.
        Same seed, sizes and dtype → identical results on any GPU and in the simulator
        (up to the GPU's rounding of math functions).
    dtype : {"float32", "float64"}
        Arithmetic of activations and weights; sums are accumulated in float64.
    sat_reference : float, optional
        The |φ'| scale of the saturation threshold; default
        ``source.saturation_reference(act)`` (as the CPU backend).

    Returns
    -------
    DeviceRaw
        A mapping of per-net arrays: ``q``, ``c``, ``grad``, ``log_grad``, ``sat`` float64
        (n_nets, depth+1); ``nonfinite`` bool (n_nets, depth+1).  ``grad[l] = F_L / F_l``
        averaged over the two inputs, ``F_l = ‖t^l‖²``; ``sat`` the fraction of units (both
        inputs) with ``|φ'(h)| < 1e-3 · max|φ'|``.  They stay on the GPU until first read;
        ``.layer_sums`` holds their per-layer sums over nets, reduced on the device
        (:class:`~vanishcalc.sim.summary.LayerSums`, ``sim/cuda/summary.py``).

    Raises
    ------
    CudaUnavailableError
        no GPU and no simulator (message: install the ``cuda`` extra or set
        ``NUMBA_ENABLE_CUDASIM=1``).
    CudaOrthogonalError
        ``orthogonal=True``.
    VanishcalcError
        bad sizes, parameters, seed or dtype.

    Notes
    -----
    See ``notes/cuda.md``: kernel layout, RNG streams, limits.
    """
    act, dtype = _run_dense_iv(act, sigma_w, sigma_b, depth, width, n_nets, q0, c0, orthogonal,
                               seed, dtype)
    require_device()
    _cuda()
    from ..source import saturation_reference

    width, depth, n_nets, seed = int(width), int(depth), int(n_nets), int(seed)
    k = kernels(act, dtype)
    host_ss, dev_ss = _seed_sequences(seed)
    x0 = _inputs(np.random.default_rng(host_ss), n_nets, width, float(q0), float(c0))
    ref = saturation_reference(act) if sat_reference is None else sat_reference
    thr = SAT_FRACTION * float(ref)
    w_scale = float(sigma_w) / math.sqrt(width)
    b_scale = float(sigma_b)
    d_sums = launch(k, x0, dev_ss, w_scale, b_scale, depth, thr)
    return reduce_on_device(d_sums, width, has_flat_piece(act))


def launch(k, x0, dev_ss, w_scale, b_scale, depth, thr):
    """Run the kernel ``k`` from the layer-0 inputs ``x0`` (n_nets, 4, width); the per-layer
    sums, left on the device: a float64 ``(7, n_nets, depth + 1)`` device array of
    :data:`N_STATS` sums (statistic-major; see the module docstring).

    ``x0`` holds h1, h2, t1, t2 per net; ``dev_ss`` seeds the RNG streams (one per thread:
    stream ``block · threads + tid``).
    """
    n_nets, _, width = x0.shape
    threads = min(next_pow2(width), MAX_THREADS)
    blocks = min(n_nets, MAX_NET_BLOCKS)
    with quiet_simulator():
        out = cuda.device_array((N_STATS, n_nets, depth + 1), dtype=np.float64)
        d_x = cuda.to_device(np.ascontiguousarray(x0, dtype=k["npf"]))
        states = cuda.to_device(rng_states(dev_ss, blocks * threads))
        k["dense"][blocks, threads](d_x, states, float(w_scale), float(b_scale), depth, thr, out)
    return out


def _launch(k, x0, dev_ss, w_scale, b_scale, depth, thr):
    """:func:`launch`, copied to the host as (n_nets, depth + 1, 7): tests drive it with
    hand-made ``x0`` to check each input's layer-1 law separately."""
    with quiet_simulator():
        sums = launch(k, x0, dev_ss, w_scale, b_scale, depth, thr).copy_to_host()
    return np.moveaxis(sums, 0, -1)


__all__ = ["run_dense", "launch", "kernels", "kernel_functions", "CudaOrthogonalError",
           "MAX_THREADS",
           "MAX_NET_BLOCKS", "N_STATS", "N_GRAM", "PIVOT_RTOL", "SAT_FRACTION"]
