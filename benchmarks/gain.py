"""Gain benchmarks, each a ratio against a reference measured in the same run.

    python benchmarks/gain.py

Prints `case ours_s ref_s ratio goal` rows:
  cold_start     `python -c "from vanishcalc import gain; gain('exp(-x**2)')"` vs `python -c "import sympy"`
  zoo_cached     gain() on the whole zoo, second call (caches warm) vs scipy.quad gains (uncached)
  zoo_uncached   gain() on the whole zoo with every cache cleared (process warmed on another
                 expression) vs scipy.quad gains
and the worst relative error of the zoo's second-moment gains against mpmath at 40 digits.
"""
from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time

import mpmath
import numpy as np
import scipy.integrate
import sympy


def best_of(fn, n=5):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cold(cmd):
    return statistics.median(best_of(lambda: subprocess.run([sys.executable, "-c", cmd], check=True), 1)
                             for _ in range(5))


def clear_caches():
    import importlib
    # importlib, not `from vanishcalc import parse`: the package binds the *function* there.
    mod = importlib.import_module
    mod("vanishcalc.parse").parse.cache_clear()
    mod("vanishcalc.activation")._activation_from_expr.cache_clear()
    mod("vanishcalc.gaussian.expect")._expect_cached.cache_clear()
    mod("vanishcalc.solve.gain")._gain_cached.cache_clear()
    mod("vanishcalc.gaussian.tails")._log_abs.cache_clear()       # tail-probe values
    mod("vanishcalc.gaussian.bivariate")._square.cache_clear()


def main():
    from vanishcalc import gain, zoo
    from vanishcalc.activation import activation
    names = zoo.names()
    rows = []

    ours = cold("from vanishcalc import gain; gain('exp(-x**2)')")
    ref = cold("import sympy")
    rows.append(("cold_start", ours, ref, "<= 2.5"))

    numeric = {n: activation(n).numpy for n in names}

    def quad_gains():
        for n in names:
            f = numeric[n]
            val, _ = scipy.integrate.quad(lambda z: float(f(np.array([z]))[0]) ** 2 * math.exp(-z * z / 2),
                                          -np.inf, np.inf, points=None, epsabs=0, epsrel=1e-12, limit=200)
            1 / math.sqrt(val / math.sqrt(2 * math.pi))
    ref_quad = best_of(quad_gains, 3)

    def zoo_gains():
        for n in names:
            gain(n)

    # "Warm, uncached": the process has used the engine once (SymPy loads some modules
    # lazily on first use, ~60 ms), on an expression outside the zoo; then every cache
    # (parse, activation, expectation, gain) is emptied before timing the zoo.
    gain("x*tanh(x) + erf(x)/2 + Max(0, x)**2", "std")
    clear_caches()
    t = time.perf_counter()
    zoo_gains()
    uncached = time.perf_counter() - t
    cached = best_of(zoo_gains, 5)
    rows.append(("zoo_cached", cached, ref_quad, "ours < 5 ms"))
    rows.append(("zoo_uncached", uncached, ref_quad, "ours < 200 ms"))

    print(f"{'case':<14} {'ours_s':>10} {'ref_s':>10} {'ratio':>8}  goal")
    for case, o, r, goal in rows:
        print(f"{case:<14} {o:10.4f} {r:10.4f} {o / r:8.3f}  {goal}")

    worst = 0.0
    worst_name = ""
    with mpmath.workdps(40):
        for n in names:
            act = activation(n)
            f = sympy.lambdify(sorted(act.expr.free_symbols, key=str) or [sympy.Symbol("x")], act.expr, "mpmath")
            pts = [-mpmath.inf, *[mpmath.mpf(k) for k in act.kinks], mpmath.inf]
            m2 = mpmath.quad(lambda z: f(z) ** 2 * mpmath.npdf(z), pts)
            g_ref = 1 / mpmath.sqrt(m2)
            rel = float(abs((gain(n) - g_ref) / g_ref))
            if rel > worst:
                worst, worst_name = rel, n
    print(f"accuracy: worst relative error of second-moment gains vs mpmath (40 digits): "
          f"{worst:.2e} ({worst_name})")


if __name__ == "__main__":
    main()
