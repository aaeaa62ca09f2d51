"""``init_table()`` of the zoo against a plain scipy implementation of the same columns.

    python benchmarks/table.py

The reference builds each φ and φ' with ``sympy.lambdify`` straight from the zoo's
expressions (not through vanishcalc), integrates with ``scipy.integrate.quad`` (z in
[−12, 12], kinks as break points, epsrel 1e-12), and computes, per φ, what ``init_table``
shows: the three gains, the critical σw at σb = 0 (root of q − E[φ²]/E[φ'²] on a log grid
of q, then Brent; the q* → 0 limit when φ(0) = 0), q* and χ1 at the second-moment gain
(fixed-point iteration), ξc (−1/log χ1 when ordered; when chaotic the c-map fixed point and
χc with an 80×80 Gauss–Hermite product rule — accurate for smooth φ only: on softsign, whose
φ' has a kink, it gives χc = 0.896 where mpmath gives 0.931 — so ξc is compared on smooth
φ), the BN rate at γ = 1, β = 0 and the γ giving
rate 1.05 (log-grid scan, then Brent).  It does less than init_table: no certified errors,
no closed forms, no stability analysis or messages.  So the reference gives σw = 1/|φ'(0)| for
gelu, silu, mish and hardswish, where init_table gives none: that q* → 0 fixed point repels
(init_table's note on the row says why), and the reference does not check.

Prints ``case ours_s ref_s ratio`` rows and, per column, the largest relative difference
between the two tables where both have a number (a check that they compute the same thing).
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import sympy
from scipy import integrate, optimize

Z = 12.0


def _funcs(expr, x):
    f = sympy.lambdify(x, expr, "numpy")
    df = sympy.lambdify(x, sympy.diff(expr, x), "numpy")
    kinks = set()
    for m in expr.atoms(sympy.Max, sympy.Min):          # where two arguments cross
        for i, u in enumerate(m.args):
            for v in m.args[i + 1:]:
                kinks |= {float(r) for r in sympy.solve(u - v, x) if r.is_real}
    for a in expr.atoms(sympy.Abs):                      # |u| at u = 0
        kinks |= {float(r) for r in sympy.solve(a.args[0], x) if r.is_real}
    for pw in expr.atoms(sympy.Piecewise):               # x > k conditions
        for _, cond in pw.args:
            if isinstance(cond, sympy.core.relational.Relational):
                kinks |= {float(r) for r in sympy.solve(cond.lhs - cond.rhs, x)}
    return (lambda t: float(f(t))), (lambda t: float(df(t))), sorted(kinks)


def _mean(h, q, kinks):
    s = math.sqrt(q)
    # 0 always splits: the zoo's peaks sit there, and at large q (BN's γ = 10) e^{−x²} is a
    # spike of width 1/q in z that quad misses on [−12, 12] without it
    pts = sorted({0.0} | {k / s for k in kinks if -Z < k / s < Z})
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)   # noqa: E731
    return integrate.quad(lambda z: h(s * z) * pdf(z), -Z, Z, points=pts or None,
                          epsabs=0, epsrel=1e-12, limit=200)[0]


def _gains(f, df, kinks):
    m2 = _mean(lambda x: f(x) ** 2, 1.0, kinks)
    m1 = _mean(f, 1.0, kinks)
    d2 = _mean(lambda x: df(x) ** 2, 1.0, kinks)
    return 1 / math.sqrt(m2), 1 / math.sqrt(m2 - m1 * m1), 1 / math.sqrt(d2)


def _critical(f, df, kinks):
    if f(0.0) == 0.0:
        d0 = 0.5 * (df(-1e-12) ** 2 + df(1e-12) ** 2)
        return (1 / math.sqrt(d0)) if d0 > 0 else None

    def sb2(q):
        return q - _mean(lambda x: f(x) ** 2, q, kinks) / _mean(lambda x: df(x) ** 2, q, kinks)
    qs = np.logspace(-8, 6, 57)
    prev = sb2(qs[0])
    for a, b in zip(qs[:-1], qs[1:]):
        cur = sb2(b)
        if (prev > 0) != (cur > 0):
            root = optimize.brentq(sb2, a, b, rtol=1e-14)
            return 1 / math.sqrt(_mean(lambda x: df(x) ** 2, root, kinks))
        prev = cur
    return None


def _meanfield(f, df, kinks, sw):
    q = 1.0
    for _ in range(500):
        qn = sw * sw * _mean(lambda x: f(x) ** 2, q, kinks)
        if abs(qn - q) <= 1e-13 * q:
            break
        q = qn
    chi1 = sw * sw * _mean(lambda x: df(x) ** 2, q, kinks)
    if chi1 < 1 - 1e-9:
        return q, chi1, -1 / math.log(chi1)
    if chi1 <= 1 + 1e-9:
        return q, chi1, math.inf
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    fv, dv = np.vectorize(f), np.vectorize(df)
    s = math.sqrt(q)
    c = 0.5
    for _ in range(500):
        u2 = s * (c * z[:, None] + math.sqrt(1 - c * c) * z[None, :])
        cn = sw * sw * (w[:, None] * w[None, :] * fv(s * z)[:, None] * fv(u2)).sum() / q
        if abs(cn - c) < 1e-12:
            break
        c = cn
    u2 = s * (c * z[:, None] + math.sqrt(1 - c * c) * z[None, :])
    chic = sw * sw * (w[:, None] * w[None, :] * dv(s * z)[:, None] * dv(u2)).sum()
    return q, chi1, -1 / math.log(chic)


def _bn_rate(f, df, kinks, g):
    d2 = g * g * _mean(lambda x: df(x) ** 2, g * g, kinks)
    m1 = _mean(f, g * g, kinks)
    s2 = _mean(lambda x: f(x) ** 2, g * g, kinks)
    return d2 / (s2 - m1 * m1)


def _bn_gamma(f, df, kinks, target=1.05):
    gs = np.logspace(-2, 2, 25)
    prev = _bn_rate(f, df, kinks, gs[0]) - target
    for a, b in zip(gs[:-1], gs[1:]):
        cur = _bn_rate(f, df, kinks, b) - target
        if (prev > 0) != (cur > 0):
            return optimize.brentq(lambda g: _bn_rate(f, df, kinks, g) - target, a, b, rtol=1e-12)
        prev = cur
    return None


def ref_table(names):
    from vanishcalc import zoo        # the expressions only: everything else is scipy
    rows = []
    for name in names:
        x = zoo.X
        f, df, kinks = _funcs(zoo.lookup(name).expr(), x)
        row = {"name": name, "smooth": not kinks}
        row["gain_second_moment"], row["gain_std"], row["gain_backward"] = _gains(f, df, kinks)
        row["critical_sigma_w"] = _critical(f, df, kinks)
        row["q_star"], row["chi1"], row["xi_c"] = _meanfield(f, df, kinks, row["gain_second_moment"])
        row["bn_rate"] = _bn_rate(f, df, kinks, 1.0)
        row["bn_gamma_105"] = _bn_gamma(f, df, kinks)
        rows.append(row)
    return rows


def main():
    from vanishcalc import zoo
    from vanishcalc.report.table import init_table
    names = zoo.names()
    init_table(["tanh"])             # imports and first-use set-up, outside both clocks
    t = time.perf_counter()
    ours = init_table(names)
    t_ours = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # quad's roundoff warnings on kinked φ
        t = time.perf_counter()
        ref = ref_table(names)
        t_ref = time.perf_counter() - t
    print(f"{'case':<36s} {'ours_s':>8s} {'ref_s':>8s} {'ratio':>7s}")
    print(f"{'init_table whole zoo (23 φ)':<36s} {t_ours:8.3f} {t_ref:8.3f} {t_ours / t_ref:7.3f}")
    print("largest relative difference per column (where both tables have a finite number):")
    for col in ("gain_second_moment", "gain_std", "gain_backward", "critical_sigma_w", "q_star",
                "chi1", "xi_c", "bn_rate", "bn_gamma_105"):
        diffs = []
        for a, b in zip(ours.rows, ref):
            u, v = a[col], b[col]
            if col == "xi_c" and not b["smooth"]:
                continue        # the reference's product rule is not accurate across a kink
            if u is not None and v is not None and math.isfinite(u) and math.isfinite(v) and v:
                diffs.append((abs(u - v) / abs(v), a["name"]))
        worst = max(diffs, default=(float("nan"), "-"))
        which = " smooth" if col == "xi_c" else ""
        print(f"  {col:<20s} {worst[0]:9.1e} ({worst[1]}; {len(diffs)}{which} rows compared)")
        only = [(a["name"], "ours" if b[col] is None else "ref") for a, b in zip(ours.rows, ref)
                if (a[col] is None) != (b[col] is None) and (col != "xi_c" or b["smooth"])]
        if only:
            print(f"  {'':<20s} a number in one table only: "
                  + ", ".join(f"{n} ({side})" for n, side in only))


if __name__ == "__main__":
    main()
