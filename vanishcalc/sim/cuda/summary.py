"""The dense kernel's per-net sums reduced over nets on the device (``backend="cuda"``).

The dense kernel (``dense.py``) leaves per net and layer the 7 sums of ``N_STATS`` in a
``(7, nets, depth+1)`` float64 device array.  Copying that back and turning it into means on
the host took 56 of 63 ms for 1024 nets × depth 1000 on an H200 (``benchmarks/RESULTS.md``);
two small kernels do it on the device instead, and only O(depth) numbers come back:

* ``net_values`` (one block per net, threads over layers): turns the sums, in place, into the
  per-net values ``q, c, grad, log_grad, sat, nonfinite`` (rows 0–5; the arithmetic of the
  CPU backend's per-net arrays) and finds each net's first layer whose q float64 cannot carry
  (an ``int32`` per net: ``summary.invalid_masks``' q rule, which holds from that layer on);
* ``layer_sums`` (blocks of 32 layers × 8 net lanes): per layer, the
  :class:`~vanishcalc.sim.summary.LayerSums` of ``sim/summary.py`` — counts, totals and
  squared deviations from the mean (two passes), in float64, in a fixed order (a seeded run
  gives the same numbers on every GPU), with the same exclusions as
  ``summary.host_layer_sums``.

The host then forms means and standard errors with ``summary.mean_of_sums`` /
``se_of_sums``, as for the CPU backend.  The per-net values stay on the device in a
:class:`DeviceRaw` and are copied back only if ``Simulation.raw`` is read.
See ``notes/cuda.md`` ("Reducing on the device").
"""
from __future__ import annotations

import math
import threading
from collections.abc import Mapping

import numpy as np

from ..summary import LOG_RANGE, N_LAYER_SUMS, Q_TINY, LayerSums
from .runtime import (KernelCache, compile_kernels, import_cuda, next_pow2, quiet_simulator,
                      simulator_enabled)

#: Threads per block of ``net_values`` (layers strided over them).
VALUE_THREADS = 256
#: ``layer_sums`` blocks: this many consecutive layers (one warp reads 32 adjacent doubles)...
LAYERS_PER_BLOCK = 32
#: ... times this many lanes striding over nets.
NET_LANES = 8
#: The per-net values ``net_values`` leaves in rows 0–5 of the sums array, in this order.
VALUE_ROWS = ("q", "c", "grad", "log_grad", "sat", "nonfinite")
#: The kernels of this module (they close over no φ and no dtype).
SUMMARY_KERNELS = ("net_values", "layer_sums")
#: Largest x with exp(x) finite in float64 (log of the largest double).
EXP_MAX = 709.782712893384

cuda = None


def _cuda():
    global cuda
    if cuda is None:
        cuda = import_cuda()
    return cuda


def summary_kernel_functions() -> dict:
    """``{name: (python function, signature, most threads per block)}`` of the two reduction
    kernels (the same for every φ and dtype: they read float64 sums)."""
    _cuda()
    from numba import float64, int32, int64, void

    NAN = math.nan
    INF = math.inf
    TINY = Q_TINY
    LOGR = LOG_RANGE
    XMAX = EXP_MAX
    LANES = NET_LANES
    LPB = LAYERS_PER_BLOCK
    NACC = 14                                   # pass-1 accumulators (see layer_sums)

    @cuda.jit(device=True)
    def finite(x):
        return not (math.isnan(x) or math.isinf(x))

    @cuda.jit(device=True)
    def exp_or_inf(x):
        """exp(x); +inf above the float64 range (a GPU's exp does this by itself; the
        simulator's Python ``math.exp`` would raise OverflowError)."""
        if x > XMAX:
            return INF
        return math.exp(x)

    @cuda.jit(device=True)
    def ratio(a, b):
        """a / b with IEEE semantics also for b = 0 (the simulator's Python floats raise)."""
        if b != 0.0 or math.isnan(b):
            return a / b
        if a == 0.0 or math.isnan(a):
            return NAN
        return math.copysign(INF, a) * math.copysign(1.0, b)

    @cuda.jit(device=True)
    def mean_square(s, net, l, w2):
        return (s[0, net, l] + s[1, net, l]) / w2

    def net_values(s, width, first_q_bad):
        """s : (7, nets, depth+1) the dense kernel's sums, overwritten by the per-net values
        (rows ``VALUE_ROWS``); first_q_bad : (nets,) int32, depth+1 where q stays valid.

        As the host arithmetic of the CPU backend's per-net arrays: q = (Σh1² + Σh2²)/2N,
        c = Σh1h2/(√Σh1² √Σh2²), grad = ½ Σ_a exp(log F^L_a − log F^l_a), log_grad =
        ½ Σ_a (log F^L_a − log F^l_a), sat = #saturated/2N; a layer with a non-finite count or
        a non-finite Σh² is non-finite, and its grad and log_grad are NaN.  q's validity
        (``summary.invalid_masks``): the first layer with q < Q_TINY that is not an exact 0
        reached from a normal q.
        """
        first = cuda.shared.array(1, int32)
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        depth = s.shape[2] - 1
        w2 = 2.0 * width                        # divided by, as on the host (not × 1/w2)
        for net in range(cuda.blockIdx.x, s.shape[1], cuda.gridDim.x):
            if tid == 0:
                first[0] = depth + 1
            lf1_last = s[3, net, depth]
            lf2_last = s[4, net, depth]
            cuda.syncthreads()
            for l in range(tid, depth + 1, nthreads):          # read-only pass
                q = mean_square(s, net, l, w2)
                if q < TINY:
                    true_zero = (q == 0.0 and l > 0
                                 and mean_square(s, net, l - 1, w2) >= TINY)
                    if not true_zero:
                        cuda.atomic.min(first, 0, int32(l))
            cuda.syncthreads()                                  # all reads before any write
            for l in range(tid, depth + 1, nthreads):
                s11 = s[0, net, l]
                s22 = s[1, net, l]
                s12 = s[2, net, l]
                d1 = lf1_last - s[3, net, l]
                d2 = lf2_last - s[4, net, l]
                nonfinite = s[6, net, l] > 0.0 or not finite(s11) or not finite(s22)
                grad = 0.5 * (exp_or_inf(d1) + exp_or_inf(d2))
                log_grad = 0.5 * (d1 + d2)
                if nonfinite:
                    grad = NAN
                    log_grad = NAN
                s[0, net, l] = (s11 + s22) / w2
                s[1, net, l] = ratio(s12, math.sqrt(s11) * math.sqrt(s22))
                s[2, net, l] = grad
                s[3, net, l] = log_grad
                s[4, net, l] = s[5, net, l] / w2
                s[5, net, l] = 1.0 if nonfinite else 0.0
            if tid == 0:
                first_q_bad[net] = first[0]
            cuda.syncthreads()                                  # `first` is reset next net

    @cuda.jit(device=True)
    def lane_sum(red, k, lane, tx):
        """Sum red[k, :, tx] over the net lanes into red[k, 0, tx] (a fixed tree)."""
        step = LANES // 2
        while step > 0:
            if lane < step:
                red[k, lane, tx] += red[k, lane + step, tx]
            cuda.syncthreads()
            step //= 2

    def layer_sums(v, first_q_bad, flat_piece, out):
        """v : (7, nets, depth+1) per-net values (``net_values``); out : (N_LAYER_SUMS,
        depth+1) the :class:`~vanishcalc.sim.summary.LayerSums` rows, in field order.

        Block (32 layers × 8 lanes): lane ``ty`` visits nets ty, ty+8, ...; a warp reads 32
        adjacent layers of one net.  Pass 1 counts and totals, the lanes are added in a fixed
        tree, the means total/n are shared; pass 2 sums squared deviations from them.
        Exclusions as ``summary.host_layer_sums``: a non-finite net leaves every statistic;
        an invalid q leaves q and c; an invalid gradient ratio leaves grad; then any
        non-finite value is left out.
        """
        red = cuda.shared.array((NACC, LANES, LPB), float64)
        acc = cuda.local.array(NACC, float64)
        tx = cuda.threadIdx.x
        lane = cuda.threadIdx.y
        n_nets = v.shape[1]
        depth = v.shape[2] - 1
        l = cuda.blockIdx.x * LPB + tx
        live = l <= depth
        for k in range(NACC):
            acc[k] = 0.0
        if live:
            for net in range(lane, n_nets, LANES):
                q = v[0, net, l]
                c = v[1, net, l]
                g = v[2, net, l]
                lg = v[3, net, l]
                sat = v[4, net, l]
                if v[5, net, l] != 0.0:
                    acc[10] += 1.0                              # non-finite net
                    continue
                q_bad = l >= first_q_bad[net]
                died = not finite(lg) or not finite(g) or g == 0.0
                g_bad = (finite(lg) and abs(lg) > LOGR) or (died and flat_piece == 0)
                if q_bad:
                    acc[11] += 1.0
                else:
                    if finite(q):
                        acc[0] += 1.0
                        acc[1] += q
                    if finite(c):
                        acc[2] += 1.0
                        acc[3] += c
                    elif math.isnan(c):
                        acc[13] += 1.0                          # c undefined
                if g_bad:
                    acc[12] += 1.0
                elif finite(g):
                    acc[4] += 1.0
                    acc[5] += g
                if finite(sat):
                    acc[6] += 1.0
                    acc[7] += sat
                if finite(lg):
                    acc[8] += 1.0
                    acc[9] += lg
        for k in range(NACC):
            red[k, lane, tx] = acc[k]
        cuda.syncthreads()
        for k in range(NACC):
            lane_sum(red, k, lane, tx)
        # The means of pass 1 (total / n, as summary.mean_of_sums), the same in every lane.
        n_q = red[0, 0, tx]
        n_c = red[2, 0, tx]
        n_g = red[4, 0, tx]
        m_q = red[1, 0, tx] / n_q if n_q > 0.0 else 0.0
        m_c = red[3, 0, tx] / n_c if n_c > 0.0 else 0.0
        m_g = red[5, 0, tx] / n_g if n_g > 0.0 else 0.0
        if lane == 0 and live:
            out[0, l] = n_q
            out[1, l] = red[1, 0, tx]
            out[3, l] = n_c
            out[4, l] = red[3, 0, tx]
            out[6, l] = n_g
            out[7, l] = red[5, 0, tx]
            out[9, l] = red[6, 0, tx]
            out[10, l] = red[7, 0, tx]
            out[11, l] = red[8, 0, tx]
            out[12, l] = red[9, 0, tx]
            out[13, l] = red[10, 0, tx]
            out[14, l] = red[11, 0, tx]
            out[15, l] = red[12, 0, tx]
            out[16, l] = red[13, 0, tx]
        cuda.syncthreads()                                      # red is reused below
        d_q = 0.0
        d_c = 0.0
        d_g = 0.0
        if live:
            for net in range(lane, n_nets, LANES):
                if v[5, net, l] != 0.0:
                    continue
                q = v[0, net, l]
                c = v[1, net, l]
                g = v[2, net, l]
                lg = v[3, net, l]
                if l < first_q_bad[net]:
                    if finite(q):
                        d_q += (q - m_q) * (q - m_q)
                    if finite(c):
                        d_c += (c - m_c) * (c - m_c)
                died = not finite(lg) or not finite(g) or g == 0.0
                g_bad = (finite(lg) and abs(lg) > LOGR) or (died and flat_piece == 0)
                if not g_bad and finite(g):
                    d_g += (g - m_g) * (g - m_g)
        red[0, lane, tx] = d_q
        red[1, lane, tx] = d_c
        red[2, lane, tx] = d_g
        cuda.syncthreads()
        for k in range(3):
            lane_sum(red, k, lane, tx)
        if lane == 0 and live:
            out[2, l] = red[0, 0, tx]
            out[5, l] = red[1, 0, tx]
            out[8, l] = red[2, 0, tx]

    sums_t = float64[:, :, ::1]
    return {
        "net_values": (net_values, void(sums_t, int64, int32[::1]), VALUE_THREADS),
        "layer_sums": (layer_sums, void(sums_t, int32[::1], int64, float64[:, ::1]),
                       LAYERS_PER_BLOCK * NET_LANES),
    }


_KERNELS = KernelCache()


def summary_kernels() -> dict:
    """The compiled reduction kernels; built once per process (and cached on disk)."""
    _cuda()
    return _KERNELS.get(simulator_enabled(), lambda: compile_kernels(
        summary_kernel_functions(), None, "float64", seconds=2))


def reduce_on_device(d_sums, width: int, flat_piece: bool) -> "DeviceRaw":
    """The dense kernel's device sums (7, nets, depth+1) → :class:`DeviceRaw` (per-layer
    :class:`~vanishcalc.sim.summary.LayerSums` on the host, per-net values on the device)."""
    _cuda()
    k = summary_kernels()
    _, n_nets, n_layers = d_sums.shape
    with quiet_simulator():
        first_q_bad = cuda.device_array(n_nets, dtype=np.int32)
        out = cuda.device_array((N_LAYER_SUMS, n_layers), dtype=np.float64)
        blocks = min(n_nets, 65535)
        threads = min(VALUE_THREADS, next_pow2(n_layers))
        k["net_values"][blocks, threads](d_sums, int(width), first_q_bad)
        grid = (n_layers + LAYERS_PER_BLOCK - 1) // LAYERS_PER_BLOCK
        k["layer_sums"][grid, (LAYERS_PER_BLOCK, NET_LANES)](d_sums, first_q_bad,
                                                             int(bool(flat_piece)), out)
        sums = LayerSums.from_array(out.copy_to_host())
    return DeviceRaw(d_sums, sums)


class DeviceRaw(Mapping):
    """The per-net arrays of a CUDA run (``q, c, grad, log_grad, sat`` float64 and
    ``nonfinite`` bool, each (n_nets, depth+1)), left on the GPU until first read.

    ``layer_sums`` holds the per-layer sums over nets (host).  Reading any array copies all
    six back once and frees the device copy; pickling copies them too.
    """

    def __init__(self, d_values, layer_sums: LayerSums):
        self.layer_sums = layer_sums
        self._device = d_values
        self._host = None
        self._lock = threading.Lock()

    def _arrays(self) -> dict:
        with self._lock:
            if self._host is None:
                with quiet_simulator():
                    a = self._device.copy_to_host()
                self._host = {name: np.ascontiguousarray(a[i]) for i, name in
                              enumerate(VALUE_ROWS)}
                self._host["nonfinite"] = self._host["nonfinite"] != 0.0
                self._device = None
            return self._host

    @property
    def on_device(self) -> bool:
        """True until the arrays have been copied back."""
        return self._host is None

    def __getitem__(self, key):
        if key not in VALUE_ROWS:
            raise KeyError(key)
        return self._arrays()[key]

    def __contains__(self, key):
        return key in VALUE_ROWS

    def __iter__(self):
        return iter(VALUE_ROWS)

    def __len__(self):
        return len(VALUE_ROWS)

    def __reduce__(self):
        return dict, (dict(self._arrays()),)

    def __repr__(self):
        where = "on the GPU" if self.on_device else "copied to the host"
        return f"<per-net arrays {', '.join(VALUE_ROWS)} ({where})>"


__all__ = ["SUMMARY_KERNELS", "summary_kernel_functions", "summary_kernels", "reduce_on_device",
           "DeviceRaw",
           "VALUE_ROWS", "VALUE_THREADS", "LAYERS_PER_BLOCK", "NET_LANES"]
