"""CUDA kernels for the dense mean-field simulation (``backend="cuda"``).

The only module of vanishcalc that imports ``numba.cuda``; it does so lazily, inside
functions, so importing this module never needs numba-cuda or a GPU.

One kernel, for every width: one block per net (grid-stride over nets), the whole depth in
**one launch**, ``min(next_pow2(width), MAX_THREADS)`` threads, unit ``u`` owned by thread
``u mod threads``.  No weight is ever drawn: with fresh weights every layer, the rows of
``W_l X``, ``X = [φ(h1), φ(h2), φ'(h1)⊙t̂1, φ'(h2)⊙t̂2]`` (N × 4), are i.i.d.
``N(0, σw²/N · XᵀX)`` given ``X``, so each layer reduces the 10 entries of ``XᵀX`` over the
block (float64), factors it (4 × 4 Cholesky, in every thread) and draws 4 normals (+ the bias)
per unit — O(N) work per layer instead of O(N²), the exact law of the explicit-weight net at
any width (as ``sim/cpu.py``).  Normals: xoroshiro128+ streams (one per thread) and Box–Muller
in float64.

Per net and layer ``l = 0..depth`` the kernel writes ``Σh1²``, ``Σh2²``, ``Σh1h2``,
``log F_l`` for each input's forward-mode tangent, the count of saturated units and a
non-finite count.  The tangent is renormalized to unit norm every layer (inside the Gram
matrix) and its log-norm accumulated, so ``grad[l] = F_depth / F_l`` neither overflows nor
underflows in float32.

See ``notes/cuda.md``.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import warnings

import numpy as np

from ..activation import activation
from ..errors import VanishcalcError, VanishcalcWarning
from ..validate import integer, real
from .seeds import seed_iv

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
#: Relative pivot below which a column of X is linearly dependent (as ``sim/cpu.py``).
PIVOT_RTOL = 1e-12
#: Saturation: |φ'(h)| below this fraction of max |φ'|.
SAT_FRACTION = 1e-3

_DTYPES = ("float32", "float64")

# ``numba.cuda``, bound by :func:`import_cuda` on first use.  A module global on purpose: the
# CUDA simulator swaps module globals that are ``numba.cuda`` for its fake per-launch module,
# so kernels must reach ``cuda.threadIdx`` etc. through a global, never through a closure.
cuda = None


class CudaUnavailableError(VanishcalcError):
    """``backend="cuda"`` was asked for, but neither a GPU nor the CUDA simulator is usable."""


class CudaOrthogonalError(VanishcalcError):
    """Orthogonal (Haar) weights are not implemented on the CUDA backend."""


# ---------------------------------------------------------------- availability


def import_cuda():
    """``numba.cuda``, or raise :class:`CudaUnavailableError` saying how to get it."""
    global cuda
    if cuda is not None:
        return cuda
    try:
        from numba import cuda as numba_cuda
    except ImportError as exc:   # numba-cuda not installed (numba ≥ 0.61 ships no CUDA target)
        raise CudaUnavailableError(
            "backend='cuda' needs numba-cuda: pip install 'vanishcalc[cuda]' (or numba-cuda); "
            "without a GPU, also set NUMBA_ENABLE_CUDASIM=1 before Python starts to run the "
            f"kernels in the (slow) CUDA simulator ({exc})") from exc
    cuda = numba_cuda
    return cuda


def _load_cuda_typing():
    """Import numba-cuda's array typing, which its first kernel compilation imports anyway.

    numba-cuda 0.30.4 registers ``np.row_stack`` there; numpy 2.5 removed it, so with that pair
    the import raises ``AttributeError`` — at the first compilation, after
    ``cuda.is_available()`` said yes.  Importing it here turns that into a clear error early.
    """
    import importlib
    importlib.import_module("numba.cuda.np.arrayobj")


def check_numba_cuda():
    """Raise :class:`CudaUnavailableError` if numba-cuda cannot compile with this numpy.

    Needed only for real compilation (a GPU or :func:`vanishcalc.sim.ptx.compile_ptx`): the
    simulator does not type kernels.  The message names both versions and the two fixes.
    """
    import_cuda()
    try:
        _load_cuda_typing()
    except AttributeError as exc:
        if "numpy" not in str(exc):
            raise
        try:
            from importlib.metadata import version
            ncuda = version("numba-cuda")
        except Exception:   # pragma: no cover - metadata missing
            ncuda = "(unknown version)"
        raise CudaUnavailableError(
            f"numba-cuda {ncuda} does not work with numpy {np.__version__}: compiling a CUDA "
            f"kernel fails with {exc!s} (numpy 2.5 removed it). Install numpy<2.5 "
            "(pip install 'numpy<2.5') or a newer numba-cuda that supports numpy "
            f"{np.__version__}; or use backend='cpu'.") from exc


def simulator_enabled() -> bool:
    """True when numba runs CUDA kernels in its Python simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        from numba import config
    except ImportError:   # pragma: no cover - numba is a dependency
        return False
    return bool(getattr(config, "ENABLE_CUDASIM", 0))


def cuda_available() -> bool:
    """True when a real CUDA GPU is usable through numba-cuda.

    The simulator does not count: ``backend="auto"`` must not pick a backend that is
    thousands of times slower than the CPU one.  :func:`run_dense` accepts the simulator too.
    A GPU with a numba-cuda that cannot compile under this numpy (:func:`check_numba_cuda`)
    does not count either: ``backend="auto"`` then warns, naming the fix, and uses the CPU.
    """
    if simulator_enabled():
        return False
    try:
        if not import_cuda().is_available():
            return False
    except Exception:   # a broken driver install must not break backend="auto"
        return False
    try:
        check_numba_cuda()
    except CudaUnavailableError as exc:
        warnings.warn(f"{exc} backend='auto' uses the CPU.", VanishcalcWarning, stacklevel=2)
        return False
    return True


def _patch_simulator_shared_arrays():
    """Make the CUDA simulator's ``cuda.shared.array`` allocation thread-safe (idempotent).

    numba-cuda's simulator (``simulator/kernelapi.py``, ``FakeCUDAShared.array``, checked in
    numba-cuda 0.30) finds a block's shared array by call site with an unlocked
    check-then-insert: a simulated thread preempted between the two gets a private array,
    and the block silently computes with torn shared memory (we saw irreproducible results
    for a fixed seed).  Same lookup, under a lock.  Only ever applied in simulator mode.
    """
    import sys
    import traceback

    from numba.cuda.simulator import kernelapi
    cls = kernelapi.FakeCUDAShared
    if getattr(cls, "_vanishcalc_locked", False):
        return
    original = cls.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:      # errors and dynamic memory: unchanged
            return original(self, shape, dtype, alignment)
        from numba.core import types
        from numba.np import numpy_support
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = tuple(traceback.extract_stack(sys._getframe(1), limit=1)[-1][0:2])
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = np.empty(shape, dtype)
                self._allocations[caller] = res
        return res

    cls.array = array
    cls._vanishcalc_locked = True


#: The name ``sim/api.py`` asks for when ``backend="auto"``.
is_available = cuda_available


def require_device():
    """``numba.cuda`` ready to launch (a GPU, or the simulator), else a clear error."""
    import_cuda()
    if simulator_enabled():
        _patch_simulator_shared_arrays()
        return cuda
    check_numba_cuda()
    try:
        ok = cuda.is_available()
    except Exception:   # pragma: no cover - driver errors
        ok = False
    if not ok:
        raise CudaUnavailableError(
            "backend='cuda' found no usable CUDA GPU. Install the 'cuda' extra "
            "(pip install 'vanishcalc[cuda]') on a machine with an NVIDIA GPU and driver, or set "
            "NUMBA_ENABLE_CUDASIM=1 in the environment before Python starts to run the kernels "
            "in numba's CUDA simulator (slow: tiny sizes only), or use backend='cpu'.")
    return cuda


# ---------------------------------------------------------------- kernel factory

_lock = threading.Lock()
_KERNELS: dict = {}


def device_functions(act):
    """φ and φ' as ``cuda.jit(device=True)`` functions, built from ``compile.python_source``.

    Fresh dispatchers on every call: a device function caches its compiled code per argument
    types only (not per compute capability), so :func:`vanishcalc.sim.ptx.compile_ptx` builds
    its own for each target instead of reusing the ones the running kernels use.
    """
    from .compile import python_source
    ns = {"math": math}
    exec(compile(python_source(act), f"<vanishcalc cuda {act.name}>", "exec"), ns)
    phi = cuda.jit(device=True)(ns["phi"])
    dphi = cuda.jit(device=True)(ns["dphi"])
    return phi, dphi


_U11 = np.uint64(11)
_U14 = np.uint64(14)
_U36 = np.uint64(36)
_U55 = np.uint64(55)
_U28 = np.uint64(64 - 36)
_U9 = np.uint64(64 - 55)
_TWO_M53 = 1.0 / 9007199254740992.0


def rng_device_functions():
    """``(next_u64, uniform, load_state, store_state)`` device functions: xoroshiro128+ on a thread's local state.

    A kernel copies its stream ``states[sid]`` (``xoroshiro128p_dtype``) into a local
    ``uint64[2]`` with :func:`load_state` once, draws from that, and stores it back with
    :func:`store_state` at the end.

    The generator and the [0, 1) conversion of ``numba.cuda.random`` (Blackman & Vigna 2018:
    rotations 55, 14, 36; the top 53 bits), so the streams are the same, but built fresh with
    the kernels: numba's are module-level device functions whose compiled code is shared by
    every target a process compiles for (see :func:`device_functions`).  ``uniform`` is
    float64 in both precisions: a float32 rounding of u < 1 can be 1.0, which Box–Muller's
    log(1 − u) turns into an infinite normal.
    """
    @cuda.jit(device=True)
    def next_u64(st):
        # ``st`` is a thread's local uint64[2] copy of its stream (``load_state``): kept in
        # registers, not re-read from and written back to global memory on every draw,
        # which made each draw a dependent global round trip.
        s0 = st[0]
        s1 = st[1]
        result = s0 + s1
        s1 ^= s0
        st[0] = ((s0 << _U55) | (s0 >> _U9)) ^ s1 ^ (s1 << _U14)
        st[1] = (s1 << _U36) | (s1 >> _U28)
        return result

    @cuda.jit(device=True)
    def uniform(st):
        return float(next_u64(st) >> _U11) * _TWO_M53

    return next_u64, uniform, cuda.jit(device=True)(load_state), cuda.jit(device=True)(store_state)


def load_state(states, sid, st):
    """Copy stream ``sid`` of ``states`` into the thread-local ``st`` (uint64[2])."""
    st[0] = states[sid]["s0"]
    st[1] = states[sid]["s1"]


def store_state(states, sid, st):
    """Write the thread-local ``st`` back to stream ``sid`` (a later launch continues it)."""
    states[sid]["s0"] = st[0]
    states[sid]["s1"] = st[1]


def kernels(act, dtype: str):
    """The compiled kernels for ``(act.key, dtype)``; built once per process and cached."""
    import_cuda()
    act = activation(act)
    key = (act.key, dtype, simulator_enabled())
    with _lock:
        k = _KERNELS.get(key)
        if k is None:
            k = compile_kernels(kernel_functions(act, dtype), act, dtype, seconds=5)
            k["npf"] = np.float32 if dtype == "float32" else np.float64
            _KERNELS[key] = k
    return k


def compile_kernels(funcs: dict, act, dtype: str, seconds: int) -> dict:
    """``{name: kernel}``: each ``(function, signature, _)`` of ``funcs`` compiled for this GPU.

    Compiled once per machine: numba-cuda's on-disk cache (``cache=True``) keys each kernel by
    its bytecode and its closure (φ, φ' and the helper device functions, pickled by value:
    a different φ or dtype is a different entry), the signature, the compute capability and
    the numba-cuda version; a second process loads the machine code instead of compiling.
    If the cache cannot be used (unwritable, unpicklable), the kernel is compiled in memory
    with a warning.  One line on stderr announces a compilation the first time this
    (φ, dtype, GPU, versions) is met on this machine (a marker file under
    ``compile.cache_dir()``: numba does not say beforehand whether its cache will hit).
    Under the simulator nothing is compiled or cached.
    """
    if simulator_enabled():
        return {name: cuda.jit(sig)(fn) for name, (fn, sig, _) in funcs.items()}
    marker = _compile_marker(act, dtype, sorted(funcs))
    if marker is None or not marker.exists():
        print(f"vanishcalc: compiling CUDA kernels for {act.name} ({dtype}): first use, "
              f"~{seconds} s", file=sys.stderr, flush=True)
    out = {}
    for name, (fn, sig, _) in funcs.items():
        try:
            out[name] = cuda.jit(sig, cache=True)(fn)
        except Exception as exc:   # cache I/O or pickling; a compile error re-raises below
            out[name] = cuda.jit(sig)(fn)
            warnings.warn(f"the on-disk cache of the CUDA kernel {name!r} is unusable "
                          f"({type(exc).__name__}: {exc}); compiled it in memory",
                          VanishcalcWarning, stacklevel=3)
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass
    return out


def _compile_marker(act, dtype, names):
    """The marker file for (φ, dtype, kernels, GPU, versions, kernel sources), or None."""
    import hashlib
    from importlib.metadata import version

    from .compile import cache_dir, python_source
    try:
        cc = cuda.get_current_device().compute_capability
        parts = [python_source(act), dtype, ",".join(names), repr(tuple(cc)),
                 version("numba-cuda")]
        for mod in ("cuda.py", "cuda_composed.py"):
            with open(os.path.join(os.path.dirname(__file__), mod), "rb") as fh:
                parts.append(hashlib.sha256(fh.read()).hexdigest())
    except Exception:   # no device answer or no metadata: always announce
        return None
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]
    return cache_dir() / "cuda-compiled" / digest


def kernel_functions(act, dtype: str) -> dict:
    """``{name: (python function, signature, most threads per launch block)}`` of the dense-net
    kernels for φ = ``act`` in ``dtype``; :func:`kernels` compiles them for the running device,
    :func:`vanishcalc.sim.ptx.compile_ptx` for a given compute capability."""
    import_cuda()
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


def rng_states(seed_seq, n):
    """``n`` xoroshiro128+ states (``numba.cuda.random.xoroshiro128p_dtype``) on the host.

    Each stream's 128-bit state is two raw words of ``PCG64(seed_seq)``: streams are
    independently seeded instead of 2⁶⁴-jumped (numba's ``create_xoroshiro128p_states``),
    which is vectorized, needs no numba compilation (seconds under the simulator) and gives
    the same streams on every GPU.  Overlap of two of ≤ 10⁹ streams of period 2¹²⁸ − 1 drawing
    ≤ 10¹² numbers each has probability < 10⁻¹⁶.
    """
    from numba.cuda.random import xoroshiro128p_dtype
    # PCG64's raw output: 2·10⁵ words in under a millisecond, ~30× faster than
    # SeedSequence.generate_state (which seeded them until 2026-11-30).
    words = np.random.PCG64(seed_seq).random_raw(2 * n).reshape(n, 2)
    zero = (words[:, 0] == 0) & (words[:, 1] == 0)
    words[zero, 0] = 1                                  # the all-zero state is a fixed point
    states = np.empty(n, dtype=xoroshiro128p_dtype)
    states["s0"] = words[:, 0]
    states["s1"] = words[:, 1]
    return states


def next_pow2(n: int) -> int:
    return 1 << (max(int(n), 1) - 1).bit_length()


@contextlib.contextmanager
def quiet_simulator():
    """In the simulator, numba's RNG is plain Python on uint64 scalars: silence its wraparound
    RuntimeWarnings and object-mode NumbaWarnings (on a GPU nothing is filtered)."""
    with warnings.catch_warnings():
        if simulator_enabled():
            warnings.filterwarnings("ignore", category=RuntimeWarning,
                                    message="overflow encountered")
            from numba.core.errors import NumbaWarning
            warnings.filterwarnings("ignore", category=NumbaWarning)
        yield


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
        ``compile.saturation_reference(act)`` (as the CPU backend).

    Returns
    -------
    dict
        ``q``, ``c``, ``grad``, ``sat`` float64 (n_nets, depth+1); ``nonfinite`` bool
        (n_nets, depth+1).  ``grad[l] = F_L / F_l`` averaged over the two inputs,
        ``F_l = ‖t^l‖²``; ``sat`` the fraction of units (both inputs) with
        ``|φ'(h)| < 1e-3 · max|φ'|``.

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
    from .compile import saturation_reference

    width, depth, n_nets, seed = int(width), int(depth), int(n_nets), int(seed)
    k = kernels(act, dtype)
    host_ss, dev_ss = _seed_sequences(seed)
    x0 = _inputs(np.random.default_rng(host_ss), n_nets, width, float(q0), float(c0))
    ref = saturation_reference(act) if sat_reference is None else sat_reference
    thr = SAT_FRACTION * float(ref)
    w_scale = float(sigma_w) / math.sqrt(width)
    b_scale = float(sigma_b)
    return _finish(_launch(k, x0, dev_ss, w_scale, b_scale, depth, thr), width)


def _launch(k, x0, dev_ss, w_scale, b_scale, depth, thr):
    """Run the kernel ``k`` from the layer-0 inputs ``x0`` (n_nets, 4, width): per-layer sums.

    ``x0`` holds h1, h2, t1, t2 per net; ``dev_ss`` seeds the RNG streams (one per thread:
    stream ``block · threads + tid``).  Returns the float64 array (n_nets, depth + 1, 7) of
    :data:`N_STATS` sums (see the module docstring); tests drive it with hand-made ``x0`` to
    check each input's layer-1 law separately.
    """
    n_nets, _, width = x0.shape
    threads = min(next_pow2(width), MAX_THREADS)
    blocks = min(n_nets, MAX_NET_BLOCKS)
    with quiet_simulator():
        # Statistic-major (7, nets, depth+1): each statistic comes back contiguous, so turning
        # the sums into q, c, grad on the host runs over plain arrays, not 7-strided views.
        out = cuda.device_array((N_STATS, n_nets, depth + 1), dtype=np.float64)
        d_x = cuda.to_device(np.ascontiguousarray(x0, dtype=k["npf"]))
        states = cuda.to_device(rng_states(dev_ss, blocks * threads))
        k["dense"][blocks, threads](d_x, states, float(w_scale), float(b_scale), depth, thr, out)
        sums = out.copy_to_host()
    return np.moveaxis(sums, 0, -1)


def _finish(sums, width):
    """Per-layer sums (n_nets, depth+1, 7) → the result dict of :func:`run_dense`."""
    s11, s22, s12, lf1, lf2, sat, bad = np.moveaxis(sums, -1, 0)
    with np.errstate(all="ignore"):
        q = (s11 + s22) / (2.0 * width)
        c = s12 / (np.sqrt(s11) * np.sqrt(s22))      # s11·s22 can overflow where each is finite
        g1 = np.exp(lf1[:, -1:] - lf1)
        g2 = np.exp(lf2[:, -1:] - lf2)
        # As the CPU backend: ½ Σ_a log(F^L_a / F^l_a), finite where grad leaves float64.
        log_grad = 0.5 * ((lf1[:, -1:] - lf1) + (lf2[:, -1:] - lf2))
    grad = 0.5 * (g1 + g2)
    nonfinite = (bad > 0) | ~np.isfinite(s11) | ~np.isfinite(s22)
    grad[nonfinite] = np.nan            # as the CPU backend: no gradient through a bad layer
    log_grad[nonfinite] = np.nan
    return {
        "q": np.ascontiguousarray(q, dtype=np.float64),
        "c": np.ascontiguousarray(c, dtype=np.float64),
        "grad": np.ascontiguousarray(grad, dtype=np.float64),
        "log_grad": np.ascontiguousarray(log_grad, dtype=np.float64),
        "sat": np.ascontiguousarray(sat / (2.0 * width), dtype=np.float64),
        "nonfinite": np.ascontiguousarray(nonfinite, dtype=bool),
    }


__all__ = ["run_dense", "cuda_available", "is_available", "simulator_enabled", "kernels",
           "kernel_functions", "check_numba_cuda", "CudaUnavailableError", "CudaOrthogonalError",
           "MAX_THREADS"]
