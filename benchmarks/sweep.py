"""Sweep benchmark: the same ≥ 1,000-point grid run serially and on 2 local worker processes.

    python benchmarks/sweep.py [--workers 2] [--points-scale 1]

Prints `case points serial_s pool_s ratio` rows (ratio = serial / pool, > 1 when the pool wins)
and checks that the pool's records equal the serial ones:
  chi1_meanfield   χ1 of MeanField(φ, σw, σb) for 4 φ × 25 σw × 10 σb = 1,000 points
                   (tens of ms a point: the work dominates, the pool should approach `workers`×)
  gain_cheap       gain(φ, q) for 4 φ × 250 q = 1,000 points of ~1 ms (scheduling and pickling
                   dominate: what chunking buys)
Both runs start from a process where vanishcalc is imported but no point has been computed;
the pool is created (and its workers forked) inside the timed region.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from vanishcalc import sweep  # noqa: E402
from vanishcalc.report.commands.sweep import chi1, gain  # noqa: E402  (module level: picklable)

CASES = {
    "chi1_meanfield": (chi1, lambda s: {"spec": ["tanh", "erf", "sigmoid", "gelu"],
                                        "sigma_w": list(np.linspace(0.8, 2.4, 25 * s)),
                                        "sigma_b": list(np.linspace(0.05, 0.5, 10))}),
    "gain_cheap": (gain, lambda s: {"spec": ["relu", "tanh", "erf", "exp(-x**2)"],
                                    "convention": ["second_moment"],
                                    "q": list(np.linspace(0.1, 5.0, 250 * s))}),
}


def clear_caches():
    """Forget every cached moment so the serial run and the workers start equally cold."""
    import gc
    import functools
    for obj in gc.get_objects():
        if isinstance(obj, functools._lru_cache_wrapper):
            obj.cache_clear()


def timed(fn, grid, executor):
    clear_caches()
    t = time.perf_counter()
    out = sweep(fn, grid, executor, progress=False)
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--points-scale", type=int, default=1)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    print(f"cpus {os.cpu_count()}, workers {args.workers}")
    print(f"{'case':<16} {'points':>6} {'serial_s':>9} {'pool_s':>9} {'ratio':>6}  same")
    for name in args.cases:
        fn, make = CASES[name]
        grid = make(args.points_scale)
        serial_s, serial = timed(fn, grid, None)
        clear_caches()
        t = time.perf_counter()
        with cf.ProcessPoolExecutor(args.workers) as ex:
            pooled = sweep(fn, grid, ex, progress=False)
        pool_s = time.perf_counter() - t
        print(f"{name:<16} {len(serial):>6} {serial_s:>9.2f} {pool_s:>9.2f} "
              f"{serial_s / pool_s:>6.2f}  {pooled == serial}", flush=True)


if __name__ == "__main__":
    main()
