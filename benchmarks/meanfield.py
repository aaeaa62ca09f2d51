"""Mean-field speed: ours vs a straightforward scipy ``quad`` implementation, same run.

Prints ``case ours_s ref_s ratio``.  "warm" = same MeanField queried again (caches hot);
"cold" = all expectation caches cleared first (imports and JIT-free set-up already done).
The reference phase diagram is timed on a 10×10 sub-grid and scaled ×100 (marked).
"""
from __future__ import annotations

import math
import time

import numpy as np
from scipy import integrate

from vanishcalc.gaussian import bivariate as bv
from vanishcalc.gaussian import tails
from vanishcalc.maps import activation as mact
from vanishcalc.maps.meanfield import MeanField, mehler_chi_c
from vanishcalc.report.table import init_table
from vanishcalc.solve import criticality as crit
from vanishcalc.solve.criticality import phase_diagram

PDF = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731


def clear_caches():
    for fn in (mact.second_moment_with_error, mact.first_moment, mact.cross_moment,
               mact.second_moment_slope_with_error, bv._numeric_cached, bv._square_mean,
               crit._row, crit._saddle_nodes, bv._square, tails._log_abs, mehler_chi_c):
        fn.cache_clear()


# ---------------------------------------------------------------- scipy reference


def ref_E(f, q):
    s = math.sqrt(q)
    return integrate.quad(lambda z: f(s * z) * PDF(z), -np.inf, np.inf, epsabs=1e-13, epsrel=1e-13)[0]


def ref_E2(f, q, c):
    s = math.sqrt(1 - c * c)
    r = math.sqrt(q)
    return integrate.dblquad(lambda t, z: f(r * z) * f(r * (c * z + s * t)) * PDF(z) * PDF(t),
                             -12, 12, -12, 12, epsabs=1e-12, epsrel=1e-12)[0]


def ref_tanh(sw, sb, iters=500):
    f2 = lambda x: math.tanh(x) ** 2  # noqa: E731
    d2 = lambda x: (1 - math.tanh(x) ** 2) ** 2  # noqa: E731
    q = 1.0
    for _ in range(iters):
        qn = sw * sw * ref_E(f2, q) + sb * sb
        if abs(qn - q) < 1e-14 * q:
            break
        q = qn
    chi1 = sw * sw * ref_E(d2, q)
    if chi1 < 1:
        return q, chi1, -1 / math.log(chi1)
    c = 0.5
    for _ in range(200):
        cn = (sw * sw * ref_E2(math.tanh, q, c) + sb * sb) / q
        if abs(cn - c) < 1e-12:
            break
        c = cn
    chic = sw * sw * ref_E2(lambda x: 1 - math.tanh(x) ** 2, q, c)
    return q, chi1, -1 / math.log(chic)


def ours_tanh(sw, sb):
    mf = MeanField("tanh", sw, sb)
    return float(mf.q_star()), float(mf.chi1()), float(mf.xi_c())


def timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    return time.perf_counter() - t, out


def row(case, ours, ref, note=""):
    ratio = ours / ref if ref else float("nan")
    print(f"{case:<44s} {ours:10.4f} {ref:10.4f} {ratio:8.4f} {note}")


def main():
    print(f"{'case':<44s} {'ours_s':>10s} {'ref_s':>10s} {'ratio':>8s}")
    ours_tanh(1.1, 0.2)        # imports, lambdify, tail plans
    for label, sw, sb in (("ordered", 1.2, 0.3), ("chaotic", 2.5, 0.3)):
        clear_caches()
        t_cold, a = timed(ours_tanh, sw, sb)
        t_warm, _ = timed(ours_tanh, sw, sb)
        t_ref, b = timed(ref_tanh, sw, sb)
        err = max(abs(x - y) / abs(y) for x, y in zip(a, b))
        row(f"tanh q*,chi1,xi_c {label} cold", t_cold, t_ref, f"max rel diff {err:.1e}")
        row(f"tanh q*,chi1,xi_c {label} warm", t_warm, t_ref)
    sws, sbs = np.linspace(0.5, 4.0, 100), np.linspace(0.0, 1.0, 100)
    t_pd, pd = timed(phase_diagram, "tanh", sws, sbs)
    t0 = time.perf_counter()
    for sw in sws[::10]:
        for sb in sbs[::10]:
            f2 = lambda x: math.tanh(x) ** 2  # noqa: E731
            q = 1.0
            for _ in range(300):
                qn = sw * sw * ref_E(f2, q) + sb * sb
                if abs(qn - q) < 1e-12 * max(q, 1e-300) or qn < 1e-12:
                    break
                q = qn
    t_ref = (time.perf_counter() - t0) * 100
    row("phase_diagram tanh 100x100", t_pd, t_ref, "ref: q* only, 10x10 sub-grid x100; "
        f"max |K-G| {pd.error:.1e}, Hermite tail {pd.c_tail:.1e}")
    clear_caches()
    t_tab, _ = timed(init_table)
    row("init_table whole zoo (cold caches)", t_tab, float("nan"), "ref: python benchmarks/table.py (plain scipy, ~2 min)")


if __name__ == "__main__":
    main()
