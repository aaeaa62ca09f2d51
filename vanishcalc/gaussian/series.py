"""E[φ(√q z)] at tiny q from the Taylor series of φ at 0.

When √q·|z| stays far inside the radius within which φ is analytic around 0 (on each side
of a kink at 0), the expectation is a series in √q with Gaussian (half-line) moments:

    E[φ(√q z)] = Σₙ aₙ⁺ qⁿᐟ² M⁺ₙ + Σₙ aₙ⁻ qⁿᐟ² M⁻ₙ,
    M⁺ₙ = ∫₀^∞ zⁿ φ(z) dz = 2ⁿᐟ² Γ((n+1)/2) / (2√π),  M⁻ₙ = (−1)ⁿ M⁺ₙ,

with aₙ^± the Taylor coefficients at 0 of the pieces right and left of 0 (one piece: both
are the same and the odd terms cancel).  Quadrature cannot do this at q = 1e-320: φ(√q z)
is then a subnormal double, and exp(x) − 1 at x = 1e-100 is 0 in double.  The series is
evaluated in mpmath (no exponent range limit); the caller rounds it.
See notes/gaussian-expectations.md §"Tiny q".
"""
from __future__ import annotations

import math

import mpmath

from . import scales, symbolic, tails

ORDER = 12          # terms a₀ … a₁₁
MAX_RATIO = 1e-2    # √q·Z / R at most this: each further term is ≥ 100× smaller
MAX_Q = 1e-6       # above it quadrature is accurate and faster
_Z = 40.0           # |z| beyond which the Gaussian weight is below e^-800


def applicable(act, q):
    """Whether the series converges fast at q: no kink but 0 within |x| ≤ Z√q, no Dirac
    masses, and every feature of φ (a scale R of its arguments) far outside Z√q."""
    if act.deltas or q <= 0:
        return False
    reach = _Z * math.sqrt(q)
    if any(k != 0 and abs(k) <= reach for k in act.kinks):
        return False
    sc = scales.of_activation(act)
    if sc.trig_args:
        return False
    radius = math.inf
    for c, w in sc.features:
        radius = min(radius, max(abs(c), w))
    # A feature at c of width w bounds the radius of convergence by about max(|c|, w)
    # (tanh(a(x − c)) has poles at c ± iπ/(2a)).  Arguments that are not polynomials have
    # polynomial arguments further in (tanh(e^x): e^x has the scale 1).
    if q > MAX_Q and not math.isfinite(radius):
        return False        # a polynomial (relu's x) at moderate q: quadrature is faster
    return reach <= MAX_RATIO * radius


def expect_series(act, q, dps=40):
    """(value, error) as mpf: the series and a bound on its truncation and rounding."""
    with mpmath.workdps(dps):
        qe = symbolic.exact_q(q)     # the decimal the user wrote, as everywhere else
        qm = mpmath.mpf(qe.p) / qe.q
        sq = mpmath.sqrt(qm)
        # The pieces just left and right of 0 (the same piece unless a kink sits at 0).
        left = next(p for p in act.pieces if p.lo < 0 <= p.hi)
        right = next(p for p in act.pieces if p.lo <= 0 < p.hi)
        sides = [(left, -1), (right, 1)]
        # Combine the two sides order by order, *then* scale by qⁿᐟ²: at q = 1e-300 the
        # odd orders (±1e-150) cancel exactly only as O(1) coefficients, not as scaled terms.
        per_order = [mpmath.mpf(0)] * ORDER
        for piece, sign in sides:
            def f(x, expr=piece.expr):
                return tails.mp_eval(expr, x)
            # Orders that differ by 1e150 (gelu(1e-150·x)·1e150) must all be resolved.
            with mpmath.workdps(2 * dps + 2 * scales.decades(act)):
                coeffs = mpmath.taylor(f, 0, ORDER - 1)
            for n, a in enumerate(coeffs):
                m = 2 ** (mpmath.mpf(n) / 2) * mpmath.gamma(mpmath.mpf(n + 1) / 2) / (2 * mpmath.sqrt(mpmath.pi))
                per_order[n] += a * m * sign ** n
        terms = [c * sq ** n for n, c in enumerate(per_order)]
        total = mpmath.fsum(terms)
        last = terms[-2:]
        # Truncation: the omitted terms are below the last two kept ones (each ≥ 100× smaller
        # than its predecessor); plus the working precision.
        err = 10 * sum(abs(t) for t in last) + abs(total) * mpmath.mpf(10) ** (-dps + 5)
        return total, err
