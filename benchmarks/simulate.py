"""Benchmark of the CPU simulator (issue 5): ours vs a numpy loop, measured in one run.

Prints ``case ours_s ref_s ratio`` (ratio = ref_s / ours_s, > 1 means ours is faster).

* narrow: 256 nets × width 64 × depth 200, φ = tanh, two inputs per net.  Reference: numpy
  loop drawing fresh stacked (256, 64, 64) Gaussian weights each layer,
  ``h = W @ tanh(h) + b`` (forward only; ours also carries the gradient tangents and all
  per-layer statistics).
* wide: 8 nets × width 1024 × depth 20.  Reference A: numpy drawing a fresh (1024, 1024)
  matrix per net and layer and doing the matmul; reference B: matmul only with one
  pre-drawn matrix (pure BLAS throughput, not a valid simulation).
* torch (optional): the narrow case as a torch CPU loop, when ``import torch`` works.
* deep: depth 1 000, 10 000 and 100 000 × 64 nets × width 64, each in a fresh interpreter
  (``subprocess`` exec's a new python): wall time and that process's own peak RSS, read from
  ``VmHWM`` in ``/proc/self/status``.  ``ru_maxrss`` is printed too but is not the figure: it
  survives ``execve`` and so reports the benchmark process that forked the child.  The state
  is O(nets × width), but the per-layer statistics (and their temporaries while the summary
  is built, ≈ 100 bytes per net and layer) are O(nets × depth): memory grows with depth.

Run: ``python benchmarks/simulate.py``.  Timings are the best of ``REPEAT`` runs after a
warm-up call (numba compilation excluded).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

REPEAT = 3


def best(fn, repeat=REPEAT):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def ours(depth, width, n_nets):
    from vanishcalc.sim.api import simulate
    return lambda: simulate("tanh", 1.0, 0.05, depth=depth, width=width, n_nets=n_nets, seed=1)


def numpy_loop(depth, width, n_nets, seed=0):
    def run():
        rng = np.random.default_rng(seed)
        h = rng.standard_normal((n_nets, width, 2))
        s = 1.0 / np.sqrt(width)
        for _ in range(depth):
            w = rng.standard_normal((n_nets, width, width)) * s
            b = rng.standard_normal((n_nets, width, 1)) * 0.05
            h = w @ np.tanh(h) + b
        return h
    return run


def numpy_matmul_only(depth, width, n_nets, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((width, width)) / np.sqrt(width)

    def run():
        h = rng.standard_normal((n_nets, width, 2))
        for _ in range(depth):
            h = w @ np.tanh(h)
        return h
    return run


def torch_loop(depth, width, n_nets):
    import torch

    def run():
        g = torch.Generator().manual_seed(0)
        h = torch.randn(n_nets, width, 2, generator=g, dtype=torch.float64)
        for _ in range(depth):
            w = torch.randn(n_nets, width, width, generator=g, dtype=torch.float64) / width ** 0.5
            b = torch.randn(n_nets, width, 1, generator=g, dtype=torch.float64) * 0.05
            h = torch.bmm(w, torch.tanh(h)) + b
        return h
    return run


_CHILD = """
import json, resource, sys, time
def vm(key):
    # this process's own counters: VmHWM is the peak RSS of *this* address space, which a
    # fresh exec starts anew (ru_maxrss, by contrast, survives execve and reports the
    # forked parent's size: Linux keeps signal->maxrss across exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")
start_hwm = vm("VmHWM")
from vanishcalc.sim.api import simulate
simulate("tanh", 1.0, 0.05, depth=2, width=64, n_nets=64)          # compile / load cache
base = vm("VmHWM")
t = time.perf_counter()
sim = simulate("tanh", 1.0, 0.05, depth={depth}, width=64, n_nets=64, seed=1)
dt = time.perf_counter() - t
peak = vm("VmHWM")
out_mb = sum(v.nbytes for v in sim.raw.values()) / 2**20
ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(t=dt, start_mb=start_hwm, base_mb=base, peak_mb=peak, out_mb=out_mb,
                      ru_maxrss_mb=ru)))
"""


def deep(depth):
    """Run one case in a fresh interpreter (exec'd, so it shares no memory with this one)."""
    res = subprocess.run([sys.executable, "-c", _CHILD.replace("{depth}", str(depth))],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ours(2, 8, 2)()                                   # warm-up: compile / load the cache
    print(f"{'case':<44} {'ours_s':>9} {'ref_s':>9} {'ratio':>7}")
    rows = []
    o = best(ours(200, 64, 256))
    r = best(numpy_loop(200, 64, 256))
    rows.append(("narrow 256x64x200 vs numpy fresh weights", o, r))
    o = best(ours(20, 1024, 8))
    r = best(numpy_loop(20, 1024, 8), repeat=2)
    rows.append(("wide 8x1024x20 vs numpy fresh weights", o, r))
    r = best(numpy_matmul_only(20, 1024, 8))
    rows.append(("wide 8x1024x20 vs numpy matmul only", o, r))
    try:
        import torch  # noqa: F401
        r = best(torch_loop(200, 64, 256))
        rows.append(("narrow 256x64x200 vs torch CPU", best(ours(200, 64, 256)), r))
    except ImportError:
        print("# torch not installed: torch comparison skipped")
    for name, o, r in rows:
        print(f"{name:<44} {o:9.4f} {r:9.4f} {r / o:7.2f}")
    for depth in (1000, 10000, 100000):
        d = deep(depth)
        print(f"# deep 64x64 depth {depth}: {d['t']:.2f} s, peak RSS {d['peak_mb']:.0f} MiB "
              f"(after warm-up {d['base_mb']:.0f} MiB, so the run added "
              f"{d['peak_mb'] - d['base_mb']:.0f} MiB; per-layer outputs kept "
              f"{d['out_mb']:.1f} MiB; ru_maxrss {d['ru_maxrss_mb']:.0f} MiB)")


if __name__ == "__main__":
    main()
