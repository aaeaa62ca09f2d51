"""mpmath references for bivariate Gaussian expectations (independent of vanishcalc's engine).

E[f(u1) g(u2)] = ∫∫ f(√q1 z1) g(√q2 (c z1 + s t)) φ(z1) φ(t) dz1 dt, s = √(1 − c²), by nested
``mpmath.quad`` split at the kinks of f (outer) and the kink lines of g (inner), at ``dps``
digits.  Functions are given as mpmath callables plus their kink lists.
"""
from __future__ import annotations

import mpmath


def _pdf(z):
    return mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)


def _split(points, lo=-mpmath.inf, hi=mpmath.inf):
    inner = sorted(p for p in points if lo < p < hi)
    return [lo, *inner, hi]


def expect2(f, g, q1, q2, c, f_kinks=(), g_kinks=(), dps=30):
    with mpmath.workdps(dps):
        q1, q2, c = mpmath.mpf(q1), mpmath.mpf(q2), mpmath.mpf(c)
        s = mpmath.sqrt(1 - c * c)
        r1, r2 = mpmath.sqrt(q1), mpmath.sqrt(q2)

        def inner(z1):
            pts = [(mpmath.mpf(k) / r2 - c * z1) / s for k in g_kinks]
            return mpmath.quad(lambda t: g(r2 * (c * z1 + s * t)) * _pdf(t), _split(pts))

        outer_pts = [mpmath.mpf(k) / r1 for k in f_kinks]
        outer_pts += [mpmath.mpf(k) / (r2 * c) for k in g_kinks] if c != 0 else []
        return mpmath.quad(lambda z1: f(r1 * z1) * _pdf(z1) * inner(z1), _split(outer_pts))


def expect1(f, q, kinks=(), dps=30):
    with mpmath.workdps(dps):
        r = mpmath.sqrt(mpmath.mpf(q))
        return mpmath.quad(lambda z: f(r * z) * _pdf(z), _split([mpmath.mpf(k) / r for k in kinks]))


def hermite_coefficients(f, q, n_max, kinks=(), dps=30, z_max=12, degree=5):
    """a_n = E[f(√q z) He_n(z)]/√n!, n = 0..n_max, at ``dps`` digits.

    Composite Gauss–Legendre (mpmath's nodes, 3·2^(degree−1) per panel) on unit panels over
    [−z_max, z_max] split at the kinks k/√q; one pass evaluates f and every normalized
    Hermite polynomial h_n = He_n/√n! (stable recurrence) at each node.  The cut tails
    weigh less than φ(12)·max|f·h_n| ≈ 1e-30."""
    from mpmath.calculus.quadrature import GaussLegendre
    with mpmath.workdps(dps + 10):
        r = mpmath.sqrt(mpmath.mpf(q))
        edges = sorted({mpmath.mpf(e) for e in range(-z_max, z_max + 1)}
                       | {mpmath.mpf(k) / r for k in kinks if abs(mpmath.mpf(k) / r) < z_max})
        nodes = GaussLegendre(mpmath.mp).calc_nodes(degree, mpmath.mp.prec)
        acc = [mpmath.mpf(0)] * (n_max + 1)
        sq = [mpmath.sqrt(k) for k in range(n_max + 2)]
        for lo, hi in zip(edges[:-1], edges[1:]):
            half, mid = (hi - lo) / 2, (hi + lo) / 2
            for x, w in nodes:
                z = mid + half * x
                fw = f(r * z) * _pdf(z) * w * half
                h0, h1 = mpmath.mpf(1), z
                acc[0] += fw
                if n_max >= 1:
                    acc[1] += fw * z
                for k in range(1, n_max):
                    h0, h1 = h1, (z * h1 - sq[k] * h0) / sq[k + 1]
                    acc[k + 1] += fw * h1
        return acc


def expect2_mehler(f, g, q1, q2, c, n_max, f_kinks=(), g_kinks=(), dps=30):
    """Mehler's expansion E[f(u1) g(u2)] = Σ a_n b_n cⁿ (a, b: Hermite coefficients).

    Independent of any 2-D quadrature; truncation error ≤ |c|^(n_max+1)·√(Σ_{n>N} a_n²·Σ b_n²),
    so choose n_max with |c|^n_max far below the target."""
    a = hermite_coefficients(f, q1, n_max, f_kinks, dps)
    b = a if (g is f and q1 == q2 and tuple(f_kinks) == tuple(g_kinks)) else \
        hermite_coefficients(g, q2, n_max, g_kinks, dps)
    with mpmath.workdps(dps):
        c = mpmath.mpf(c)
        return mpmath.fsum(a[n] * b[n] * c ** n for n in range(n_max + 1))
