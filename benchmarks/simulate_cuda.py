"""Benchmark of the CUDA simulation kernels (``vanishcalc/sim/cuda/``) on a real GPU.

Cases (issue 6):

1. ``narrow``: 1024 nets × width 64 × depth 1000, tanh, two inputs and two tangents per net.
   Ours: one launch of the dense kernel (exact-law sampling of W·X: a 4×4 Cholesky of XᵀX
   per net and layer, 4 normals + bias per unit; notes/cuda.md).  Reference, on the same
   GPU: a per-layer loop in torch (CUDA) or, without torch, CuPy — fresh stacked weights
   ``(nets, 64, 64)`` every layer, ``bmm`` with the four stacked vectors, φ, φ' and the same
   per-layer statistics.  Goal: ratio ref/ours ≥ 10.
2. ``wide``: 16 nets × width 4096 × depth 100, the same kernel (units strided over 256
   threads) against the same reference loop.  Also printed: the multiply-add rate an
   explicit-weight simulation would need to match our time (``2·4·N²`` FLOP per net and
   layer) as a fraction of the GPU's peak FP32/FP64 rate (``--peak-tflops``, else estimated
   from the SM count and clock with 128 FP32 lanes/SM — a rough figure, say so when quoting).
   Ours does O(N) work per layer, so this "equivalent" rate can exceed the peak.

``ours_s`` is the whole front-door call ``simulate(..., backend="cuda")`` (inputs, stream
seeding, the dense kernel, the per-layer reduction on the device, the O(depth) copy back,
means and standard errors); comment lines give the dense kernel alone and the reduction
kernels alone (CUDA events), what reading ``Simulation.raw`` (the per-net arrays, copied
back on request) costs, and numba-cuda's disk-cache hits and misses for the first call (a
second process with the same ``NUMBA_CACHE_DIR`` should show hits only).

Prints ``case ours_s ref_s ratio`` as in the other benchmarks.  Run::

    pip install -e ".[cuda]"        # and torch with CUDA, or cupy, for the reference
    python benchmarks/simulate_cuda.py [--dtype float32] [--quick]

and record the figures with the device name and date in ``benchmarks/RESULTS.md``.
Without a GPU (or under ``NUMBA_ENABLE_CUDASIM=1``) it exits with status 2 and says so.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time


def _no_gpu(msg: str) -> None:
    print(f"simulate_cuda: {msg}\nNothing was measured; no figures to record.", file=sys.stderr)
    raise SystemExit(2)


def _reference_backend():
    try:
        import torch
        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        pass
    try:
        import cupy  # noqa: F401
        return "cupy"
    except ImportError:
        return None


def _ref_loop_torch(n_nets, width, depth, sigma_w, sigma_b, dtype, seed):
    """Per-layer framework loop: what a user would write in torch on the GPU."""
    import torch
    dt = torch.float32 if dtype == "float32" else torch.float64
    g = torch.Generator(device="cuda").manual_seed(seed)
    h = torch.randn(n_nets, width, 2, device="cuda", dtype=dt, generator=g)
    t = torch.randn(n_nets, width, 2, device="cuda", dtype=dt, generator=g) / math.sqrt(width)
    stats = torch.empty(n_nets, depth + 1, 5, device="cuda", dtype=torch.float64)
    scale = sigma_w / math.sqrt(width)

    def record(layer, h, t):
        stats[:, layer, 0] = (h * h).sum(dim=(1, 2))
        stats[:, layer, 1] = (h[:, :, 0] * h[:, :, 1]).sum(1)
        stats[:, layer, 2:4] = (t * t).sum(1)
        stats[:, layer, 4] = ((1 - torch.tanh(h) ** 2).abs() < 1e-3).sum(dim=(1, 2))

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    record(0, h, t)
    for layer in range(1, depth + 1):
        W = torch.randn(n_nets, width, width, device="cuda", dtype=dt, generator=g) * scale
        b = torch.randn(n_nets, width, 1, device="cuda", dtype=dt, generator=g) * sigma_b
        th = torch.tanh(h)
        n = torch.linalg.vector_norm(t, dim=1, keepdim=True)
        v = torch.cat([th, (1 - th * th) * (t / n)], dim=2)      # four vectors per net
        out = torch.bmm(W, v)
        h, t = out[:, :, :2] + b, out[:, :, 2:]
        record(layer, h, t)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def _ref_loop_cupy(n_nets, width, depth, sigma_w, sigma_b, dtype, seed):
    import cupy as cp
    dt = cp.float32 if dtype == "float32" else cp.float64
    rs = cp.random.RandomState(seed)
    h = rs.standard_normal((n_nets, width, 2), dtype=dt)
    t = rs.standard_normal((n_nets, width, 2), dtype=dt) / math.sqrt(width)
    stats = cp.empty((n_nets, depth + 1, 5))
    scale = sigma_w / math.sqrt(width)

    def record(layer, h, t):
        stats[:, layer, 0] = (h * h).sum(axis=(1, 2))
        stats[:, layer, 1] = (h[:, :, 0] * h[:, :, 1]).sum(1)
        stats[:, layer, 2:4] = (t * t).sum(1)
        stats[:, layer, 4] = (cp.abs(1 - cp.tanh(h) ** 2) < 1e-3).sum(axis=(1, 2))

    cp.cuda.Device().synchronize()
    t0 = time.perf_counter()
    record(0, h, t)
    for layer in range(1, depth + 1):
        W = rs.standard_normal((n_nets, width, width), dtype=dt) * scale
        b = rs.standard_normal((n_nets, width, 1), dtype=dt) * sigma_b
        th = cp.tanh(h)
        n = cp.linalg.norm(t, axis=1, keepdims=True)
        v = cp.concatenate([th, (1 - th * th) * (t / n)], axis=2)
        out = cp.matmul(W, v)
        h, t = out[:, :, :2] + b, out[:, :, 2:]
        record(layer, h, t)
    cp.cuda.Device().synchronize()
    return time.perf_counter() - t0


def _kernel_only(vcuda, act, *, sigma_w, sigma_b, depth, width, n_nets, q0, c0, dtype, seed,
                 repeat, **_):
    """Seconds of the dense kernel alone (CUDA events; inputs already on the device), so the
    rest of the call (inputs, stream seeding, the reduction, the copy back, means) can be read
    off as the difference."""
    import numpy as np
    from numba import cuda
    from vanishcalc.activation import activation
    act = activation(act)
    k = vcuda.kernels(act, dtype)
    from vanishcalc.sim.cuda import dense      # the host-side helpers of run_dense
    host_ss, dev_ss = dense._seed_sequences(seed)
    x0 = dense._inputs(np.random.default_rng(host_ss), n_nets, width, q0, c0)
    threads = min(vcuda.next_pow2(width), vcuda.MAX_THREADS)
    blocks = min(n_nets, vcuda.MAX_NET_BLOCKS)
    best = math.inf
    for _ in range(repeat):
        out = cuda.device_array((vcuda.N_STATS, n_nets, depth + 1), dtype=np.float64)
        d_x = cuda.to_device(np.ascontiguousarray(x0, dtype=k["npf"]))
        states = cuda.to_device(vcuda.rng_states(dev_ss, blocks * threads))
        start, stop = cuda.event(), cuda.event()
        start.record()
        k["dense"][blocks, threads](d_x, states, sigma_w / math.sqrt(width), sigma_b, depth,
                                   1e-3, out)
        stop.record()
        stop.synchronize()
        best = min(best, cuda.event_elapsed_time(start, stop) / 1e3)
    return best


def _reduction_only(vcuda, *, depth, width, n_nets, repeat, **_):
    """Seconds of the two reduction kernels alone (CUDA events) on stand-in sums."""
    import numpy as np
    from numba import cuda
    from vanishcalc.sim.cuda import summary
    from vanishcalc.sim.summary import N_LAYER_SUMS
    k = summary.summary_kernels()
    rng = np.random.default_rng(0)
    host = rng.uniform(1.0, 2.0, (vcuda.N_STATS, n_nets, depth + 1))
    host[6] = 0.0
    best = math.inf
    for _ in range(repeat):
        d = cuda.to_device(host)
        first = cuda.device_array(n_nets, dtype=np.int32)
        out = cuda.device_array((N_LAYER_SUMS, depth + 1), dtype=np.float64)
        threads = min(summary.VALUE_THREADS, vcuda.next_pow2(depth + 1))
        grid = (depth + summary.LAYERS_PER_BLOCK) // summary.LAYERS_PER_BLOCK
        start, stop = cuda.event(), cuda.event()
        start.record()
        k["net_values"][min(n_nets, 65535), threads](d, width, first)
        k["layer_sums"][grid, (summary.LAYERS_PER_BLOCK, summary.NET_LANES)](d, first, 0, out)
        stop.record()
        stop.synchronize()
        best = min(best, cuda.event_elapsed_time(start, stop) / 1e3)
    return best


def _cache_stats(k, names):
    """numba-cuda's disk-cache hits and misses of these kernels in this process."""
    parts = []
    try:
        for name in names:
            st = k[name].stats
            parts.append(f"{name} hits={sum(st.cache_hits.values())} "
                         f"misses={sum(st.cache_misses.values())}")
        path = k[names[0]].stats.cache_path      # None: compiled in memory (no disk cache)
    except AttributeError as exc:                # another numba-cuda: report, do not fail
        return f"not available ({exc})"
    return "; ".join(parts) + f" (cache: {path})"


def _peak_flops(device, dtype, peak_tflops):
    if peak_tflops:
        return peak_tflops * 1e12, "given"
    sms = device.MULTIPROCESSOR_COUNT
    clock_hz = device.CLOCK_RATE * 1e3                   # kHz → Hz
    lanes = 128                                          # FP32 lanes per SM (Ampere/Hopper)
    fp32 = 2 * sms * lanes * clock_hz                    # FMA = 2 FLOP
    if dtype == "float64":
        return fp32 / 2, "estimated: FP32/2 (datacenter parts; consumer GPUs are FP32/64)"
    return fp32, "estimated from SM count × clock × 128 lanes"


def _time(fn, repeat):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--quick", action="store_true", help="depth ÷ 10, for a smoke run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the GPU's peak rate for --dtype, from its data sheet")
    args = ap.parse_args(argv)

    if os.environ.get("NUMBA_ENABLE_CUDASIM") not in (None, "", "0"):
        _no_gpu("NUMBA_ENABLE_CUDASIM is set: the simulator would time Python, not a GPU. "
                "Unset it and run on a machine with an NVIDIA GPU.")
    from vanishcalc.sim import cuda as vcuda
    if not vcuda.cuda_available():
        _no_gpu("no CUDA GPU is usable here (install the 'cuda' extra, pip install "
                "'vanishcalc[cuda]', on a machine with an NVIDIA GPU and driver).")
    from numba import cuda
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else device.name
    div = 10 if args.quick else 1
    print(f"# device: {name}  dtype: {args.dtype}  numba-cuda kernels vs per-layer loop")
    print("case ours_s ref_s ratio")

    # 1. narrow: one launch vs a per-layer framework loop
    nets, width, depth = 1024, 64, 1000 // div
    kw = dict(sigma_w=1.5, sigma_b=0.05, depth=depth, width=width, n_nets=nets, q0=1.0,
              c0=0.5, orthogonal=False, dtype=args.dtype)
    import vanishcalc
    front = dict(sigma_w=kw["sigma_w"], sigma_b=kw["sigma_b"], depth=depth, width=width,
                 n_nets=nets, q0=1.0, c0=0.5, dtype=args.dtype, backend="cuda")

    def simulate(seed, **change):
        return vanishcalc.simulate("tanh", **{**front, **change}, seed=seed)

    t0 = time.perf_counter()
    simulate(0, depth=2, n_nets=2)                                       # compile outside
    # Run twice in fresh processes with the same NUMBA_CACHE_DIR: the second should load the
    # kernels from numba-cuda's disk cache (notes/cuda.md, "Compile once per machine").
    print(f"# first call (compile, or load from the disk cache): {time.perf_counter() - t0:.2f} s")
    from vanishcalc.sim.cuda import summary
    print("# disk cache, first call: "
          + _cache_stats(vcuda.kernels("tanh", args.dtype), ["dense"]) + "; "
          + _cache_stats(summary.summary_kernels(), list(summary.SUMMARY_KERNELS)))
    ours = _time(lambda: simulate(1), args.repeat)
    run_dense = _time(lambda: vcuda.run_dense("tanh", **kw, seed=1), args.repeat)
    sim = simulate(1)
    t0 = time.perf_counter()
    sim.raw["q"]                                     # the per-net arrays, copied on request
    raw_s = time.perf_counter() - t0
    backend = _reference_backend()
    if backend is None:
        print(f"narrow_{nets}x{width}x{depth} {ours:.4f} nan nan   # no torch CUDA / CuPy: "
              "install one for the reference")
    else:
        ref_fn = _ref_loop_torch if backend == "torch" else _ref_loop_cupy
        ref_fn(8, width, 3, 1.5, 0.05, args.dtype, 0)                     # warm up
        ref = min(ref_fn(nets, width, depth, 1.5, 0.05, args.dtype, s)
                  for s in range(args.repeat))
        print(f"narrow_{nets}x{width}x{depth}_vs_{backend} {ours:.4f} {ref:.4f} {ref / ours:.2f}")
    kern = _kernel_only(vcuda, "tanh", **kw, seed=1, repeat=args.repeat)
    red = _reduction_only(vcuda, **kw, repeat=args.repeat)
    print(f"# narrow: simulate {ours:.4f} s = dense kernel {kern:.4f} s + reduction kernels "
          f"{red:.4f} s + the rest {ours - kern - red:.4f} s (run_dense alone {run_dense:.4f} s); "
          f"reading Simulation.raw afterwards {raw_s:.4f} s")
    if backend is not None:
        print(f"# narrow: goal ref/ours >= 10: {'met' if ref / ours >= 10 else 'NOT met'} "
              f"({ref / ours:.1f}); ref/kernel {ref / kern:.0f}")

    # 2. wide: the same kernel, units strided over the block; the same reference loop
    nets, width, depth = 16, 4096, 100 // div
    kw = dict(kw, depth=depth, width=width, n_nets=nets)
    front.update(depth=depth, width=width, n_nets=nets)
    simulate(0, depth=1, n_nets=1)
    wide = _time(lambda: simulate(2), args.repeat)
    equivalent = 2.0 * 4 * width * width * depth * nets
    peak, how = _peak_flops(device, args.dtype, args.peak_tflops)
    note = (f"# explicit W would need {equivalent / wide / 1e12:.3f} TFLOP/s = "
            f"{equivalent / wide / peak:.1%} of peak ({peak / 1e12:.1f} TFLOP/s, {how})")
    if backend is None:
        print(f"wide_{nets}x{width}x{depth} {wide:.4f} nan nan   {note}")
    else:
        ref = min(ref_fn(nets, width, depth, 1.5, 0.05, args.dtype, s)
                  for s in range(args.repeat))
        print(f"wide_{nets}x{width}x{depth}_vs_{backend} {wide:.4f} {ref:.4f} {ref / wide:.2f}   "
              f"{note}")
    kern = _kernel_only(vcuda, "tanh", **kw, seed=2, repeat=args.repeat)
    print(f"# wide: kernel alone {kern:.4f} s; the rest of simulate {wide - kern:.4f} s")


if __name__ == "__main__":
    main()
