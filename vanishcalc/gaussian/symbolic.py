"""Closed forms of E[f(√q·z)], z ~ N(0, 1), when they exist.  ``None`` when no rule applies.

The integral is ∫ f(x) e^{−x²/(2q)} dx / √(2πq), taken piece by piece between kinks.
Each piece is expanded into terms  c · xⁿ · erf(αx)ᵏ · e^{a x² + b x}  and integrated by
rules that are exact and fast, in this order (hook, then fallback):

1. k = 0 on any interval: complete the square and use the moment recursion
   J_m = ∫ y^m e^{−Ay²} dy = [−y^{m−1} e^{−Ay²}/(2A)] + (m−1)/(2A) J_{m−2},
   J_0 = √π/(2√A)·erf(√A y), J_1 = −e^{−Ay²}/(2A).  sin/cos/sinh/cosh are rewritten as
   exponentials, which is exact on the whole line (b may be imaginary there).
2. k = 1, 2 on the whole line with b = 0 (erf of a centred Gaussian argument):
   ∫ x erf(αx) e^{−Ax²} dx = α / (A √(A + α²)),
   ∫ erf(αx) erf(βx) e^{−Ax²} dx = √(π/A)·(2/π)·arcsin(αβ / √((A+α²)(A+β²)))
   (Williams 1997), and higher powers of x by (−∂/∂A)^m.
3. ``sympy.integrate`` in a child process under a time budget, only for integrands made
   of exp/erf/trig/polynomials (it is known to hang on tanh, log, rational exponentials).

Every closed form is checked against the numeric value by the caller (expect.py).
Derivations: notes/gaussian-expectations.md.
"""
from __future__ import annotations

import functools
import multiprocessing
import queue
import signal
import threading

import sympy
from sympy import erf, exp, oo, pi, sqrt

from ..parse import X

_A = sympy.Symbol("A", positive=True)

#: The functions some rule integrates (rules 1–2 after rewriting, rule 3 without hanging).
_SYMPY_SAFE = (sympy.exp, sympy.erf, sympy.erfc, sympy.sin, sympy.cos, sympy.sinh, sympy.cosh)


def exact_q(q: float):
    """q as an exact SymPy number: the decimal the user wrote (1.0 → 1, 0.1 → 1/10)."""
    if isinstance(q, sympy.Basic):
        return q
    return sympy.Rational(repr(float(q)))


def closed_form(act, q, *, timeout=2.0):
    """Exact E[φ(√q z)] as a SymPy expression, or None when no rule applies.

    The form is returned as the rules built it; ``tidy`` gives the one to show (expect()
    tidies only when ``Value.exact`` is read: expanding cost a tenth of an uncached gain())."""
    qe = exact_q(q)
    total = sympy.Integer(0)
    whole_line = len(act.pieces) == 1
    if any(_outside_rules(piece.expr) for piece in act.pieces):
        return None
    for piece in act.pieces:
        part = _piece_integral(piece.expr, piece.lo_exact, piece.hi_exact, qe, whole_line)
        if part is None:
            part = _integrate_with_budget(piece.expr, piece.lo_exact, piece.hi_exact, qe, timeout)
        if part is None:
            return None
        total += part
    for loc, weight in act.deltas:
        total += weight * exp(-loc ** 2 / (2 * qe)) / sqrt(2 * pi * qe)
    return total


def tidy(expr):
    # No simplify(): it was 70 % of an uncached gain() and SymPy's automatic evaluation
    # already gives 1/sqrt(5), 1/2, (sqrt(3) + 2*pi)/(6*pi).  Never nsimplify either: it
    # matches the *numeric* value to a simple number, and turned
    # E[relu6(z)²] = 1/2 + 35(1−Φ(6)) − 6φ(6) into 1/2.
    return sympy.expand(expr) if sympy.count_ops(expr) <= 60 else expr


def _outside_rules(g) -> bool:
    """Whether no rule can integrate ``g``: it holds a function other than exp, erf and
    trigonometric/hyperbolic sin and cos (tanh, log, atan), or a negative or symbolic power
    of an expression in x (sigmoid, softsign).  Rules 1–2 have no term for those, and rule 3
    refuses exactly these (sympy.integrate hangs on them).  Asked first, because expanding
    such a φ'² only to refuse it cost up to 13 ms (gelu_tanh)."""
    if any(not isinstance(f, _SYMPY_SAFE) for f in g.atoms(sympy.Function)):
        return True
    return any(p.has(X) and (p.exp.is_negative or not p.exp.is_number) for p in g.atoms(sympy.Pow))


# ---------------------------------------------------------------- rule 1 and 2


def _piece_integral(g, lo, hi, q, whole_line):
    g = g.replace(sympy.erfc, lambda u: 1 - erf(u))
    if g.has(sympy.sinh, sympy.cosh):
        g = g.rewrite(exp)
    if g.has(sympy.sin, sympy.cos):
        if not whole_line:
            return None
        g = g.rewrite(exp)
    try:
        terms = sympy.Add.make_args(sympy.expand(g, power_exp=False, log=False))
    except Exception:  # noqa: BLE001 — expand failing means "no rule", not an error
        return None
    if len(terms) > 200:
        return None
    total = sympy.Integer(0)
    for term in terms:
        t = _term_integral(term, lo, hi, q, whole_line)
        if t is None:
            return None
        total += t
    return total / sqrt(2 * pi * q)


def _term_integral(term, lo, hi, q, whole_line):
    coeff = sympy.Integer(1)
    n = 0
    expo = sympy.Integer(0)
    erfs = []
    for factor in sympy.Mul.make_args(term):
        if not factor.has(X):
            coeff *= factor
        elif factor == X:
            n += 1
        elif factor.is_Pow and factor.base == X and factor.exp.is_Integer and factor.exp > 0:
            n += int(factor.exp)
        elif isinstance(factor, exp) or (factor.is_Pow and factor.base == sympy.E):
            expo += factor.args[0] if isinstance(factor, exp) else factor.exp
        elif isinstance(factor, erf) or (factor.is_Pow and isinstance(factor.base, erf)
                                         and factor.exp.is_Integer and factor.exp > 0):
            base, k = (factor, 1) if isinstance(factor, erf) else (factor.base, int(factor.exp))
            erfs += [base.args[0]] * k
        else:
            return None
    if expo.has(X):
        try:
            poly = sympy.Poly(sympy.expand(expo), X)
        except sympy.PolynomialError:
            return None
        if poly.degree() > 2:
            return None
        cs = poly.all_coeffs()[::-1] + [0, 0]
        a0, a1, a2 = cs[0], cs[1], cs[2]
    else:
        a0, a1, a2 = expo, 0, 0
    A = 1 / (2 * q) - a2
    # A float test, not A.is_positive: SymPy's assumption system was a third of a gain().
    if not A.is_number:
        return None
    a_val = complex(A)
    if a_val.imag != 0 or not a_val.real > 0:   # exp(i·x²) from sin(x²): no real Gaussian rule
        return None
    B = a1
    pref = coeff * exp(a0)
    if not erfs:
        return pref * _poly_exp(n, A, B, lo, hi)
    if not whole_line or B != 0:
        return None
    alphas = []
    for arg in erfs:
        alpha = sympy.expand(arg / X)
        if alpha.has(X):
            return None
        alphas.append(alpha)
    return pref * _erf_moment(n, alphas, A)


def _poly_exp(n, A, B, lo, hi):
    """∫_lo^hi xⁿ e^{−A x² + B x} dx, exactly."""
    mu = B / (2 * A)
    shift = exp(B ** 2 / (4 * A))
    a, b = lo - mu, hi - mu
    if lo == -oo:
        a = -oo
    if hi == oo:
        b = oo
    J = [_J0(A, a, b), _J1(A, a, b)]
    for m in range(2, n + 1):
        J.append((_edge(m - 1, A, a) - _edge(m - 1, A, b)) / (2 * A) + (m - 1) / (2 * A) * J[m - 2])
    # (y + μ)ⁿ expanded binomially.
    total = sum(sympy.binomial(n, m) * mu ** (n - m) * J[m] for m in range(n + 1))
    return shift * total


def _J0(A, a, b):
    def E(y):
        if y == oo:
            return sympy.Integer(1)
        if y == -oo:
            return sympy.Integer(-1)
        return erf(sqrt(A) * y)
    return sqrt(pi) / (2 * sqrt(A)) * (E(b) - E(a))


def _J1(A, a, b):
    return (_edge(0, A, a) - _edge(0, A, b)) / (2 * A)


def _edge(m, A, y):
    """y^m e^{−A y²}, zero at ±∞."""
    if y in (oo, -oo):
        return sympy.Integer(0)
    return y ** m * exp(-A * y ** 2)


_AL = sympy.Symbol("alpha", real=True)
_BE = sympy.Symbol("beta", real=True)


def _erf_moment(n, alphas, A):
    """∫ xⁿ ∏ erf(α_i x) e^{−A x²} dx over the real line, for one or two erf factors."""
    k = len(alphas)
    if k not in (1, 2):
        return None
    if (n + k) % 2 == 1:      # xⁿ·erfᵏ is odd: the integral over the line vanishes
        return sympy.Integer(0)
    m = n // 2
    if k == 1:
        return _erf1_moment(m, alphas[0], A)
    if m <= 1:
        return _erf2_moment(m, alphas[0], alphas[1], A)
    template = _erf_template(k, m)
    return template.subs({_A: A, _AL: alphas[0], _BE: alphas[1]})


def _erf1_moment(m, alpha, A):
    """(−∂/∂A)^m of α·A^{−1}·(A + α²)^{−1/2}, by Leibniz's rule: (−∂/∂A)^j A^{−a} = (a)_j A^{−a−j}
    with (a)_j the rising factorial.  Written out because sympy.diff of the same product
    cost 5–20 ms per call (assumption queries), a tenth of a whole uncached gain()."""
    s = A + alpha ** 2
    half = sympy.Rational(1, 2)
    return alpha * sum(sympy.binomial(m, j) * sympy.factorial(j) * A ** (-1 - j)
                       * sympy.rf(half, m - j) * s ** (-half - (m - j)) for j in range(m + 1))


def _erf2_moment(m, alpha, beta, A):
    """m = 0: Williams' arcsin integral √(π/A)·(2/π)·asin(u), u = αβ/√((A+α²)(A+β²)).
    m = 1: its −∂/∂A, written out (notes/gaussian-expectations.md): with
    1 − u² = A(A+α²+β²)/((A+α²)(A+β²)),
      −∂/∂A = (2/√π)·[asin(u)/(2A^{3/2}) + αβ(2A+α²+β²) / (2√A (A+α²)(A+β²) √(A(A+α²+β²)))]."""
    a2, b2 = alpha ** 2, beta ** 2
    asin_u = sympy.asin(alpha * beta / sqrt((A + a2) * (A + b2)))
    if m == 0:
        return 2 / sqrt(pi) * asin_u / sqrt(A)
    return 2 / sqrt(pi) * (asin_u / (2 * A ** sympy.Rational(3, 2))
                           + alpha * beta * (2 * A + a2 + b2)
                           / (2 * sqrt(A) * (A + a2) * (A + b2) * sqrt(A * (A + a2 + b2))))


@functools.lru_cache(maxsize=64)
def _erf_template(k, m):
    """(−∂/∂A)^m of the base integral, symbolic in A, α (and β): differentiated once, reused
    (two erf factors and x^{2m}, m ≥ 2: rare enough that sympy.diff's cost does not matter)."""
    if k == 1:
        base = _AL / (_A * sqrt(_A + _AL ** 2))
    else:
        base = sqrt(pi / _A) * 2 / pi * sympy.asin(_AL * _BE / sqrt((_A + _AL ** 2) * (_A + _BE ** 2)))
    # ∂/∂A e^{−A x²} = −x² e^{−A x²}, so x^{2m} comes from (−∂/∂A)^m.
    return (-1) ** m * sympy.diff(base, _A, m)


# ---------------------------------------------------------------- rule 3: sympy.integrate


def _integrate_with_budget(g, lo, hi, q, timeout):
    """``sympy.integrate`` under a budget of ``timeout`` seconds: in a forked child that is
    killed when time is up, or, inside a daemonic process (which may not fork), under a
    timer signal."""
    if timeout is None or timeout <= 0:
        return None
    if _outside_rules(g):
        return None   # tanh, log, atan, 1/(1 + e^x): sympy hangs or returns unevaluated
    integrand = g * exp(-X ** 2 / (2 * q)) / sqrt(2 * pi * q)
    if multiprocessing.current_process().daemon:
        # A daemonic process (a multiprocessing.Pool worker) may not start children.
        result = _integrate_with_alarm(integrand, lo, hi, timeout)
    elif _fork_unsafe() and _alarm_usable():
        # JAX (and the like) run native threads: a forked child can deadlock on a lock one of
        # them held (JAX warns on every fork); the timer signal needs no child
        result = _integrate_with_alarm(integrand, lo, hi, timeout)
    else:
        result = _integrate_in_child(integrand, lo, hi, timeout)
    if result is None or result.has(sympy.Integral) or not result.is_finite:
        return None
    return result


#: Libraries whose own native threads make fork unsafe in a process that imported them.
FORK_UNSAFE_MODULES = ("jax", "jaxlib")


def _fork_unsafe() -> bool:
    import sys
    return any(m in sys.modules for m in FORK_UNSAFE_MODULES)


def _alarm_usable() -> bool:
    """The main thread, a platform with ``setitimer``, and no SIGALRM handler of someone else's."""
    return (threading.current_thread() is threading.main_thread()
            and hasattr(signal, "setitimer")
            and signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, None))


def _integrate_in_child(integrand, lo, hi, timeout):
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return None
    out = ctx.Queue()
    proc = ctx.Process(target=_integrate_child, args=(integrand, lo, hi, out), daemon=True)
    proc.start()
    try:
        result = out.get(timeout=timeout)
    except queue.Empty:
        result = None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(1)
    return result


class _Alarm(Exception):
    pass


def _integrate_with_alarm(integrand, lo, hi, timeout):
    """``sympy.integrate`` in this process, interrupted by SIGALRM after ``timeout`` seconds.

    Only where a timer signal is ours to use: the main thread, on a platform with
    ``setitimer``, with no SIGALRM handler installed by someone else.  Elsewhere there is
    no safe budget, and the closed form is skipped (the numeric value is still returned).
    """
    if not _alarm_usable():
        return None

    def on_alarm(signum, frame):
        raise _Alarm

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, float(timeout))
        try:
            return sympy.integrate(integrand, (X, lo, hi))
        except _Alarm:
            return None
        except Exception:  # noqa: BLE001 — any failure just means "no closed form"
            return None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Alarm:      # the alarm fired between integrate's return and the disarm
        return None
    finally:
        signal.signal(signal.SIGALRM, previous)


def _integrate_child(integrand, lo, hi, out):
    try:
        out.put(sympy.integrate(integrand, (X, lo, hi)))
    except Exception:  # noqa: BLE001 — any failure in the child just means "no closed form"
        out.put(None)
