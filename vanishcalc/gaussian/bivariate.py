"""Bivariate Gaussian expectations E[f(u1)·g(u2)]: closed kernels first, then nested quadrature.

.. math::

    E[f(u_1) g(u_2)],\\qquad
    \\begin{pmatrix}u_1\\\\u_2\\end{pmatrix} \\sim
    N\\left(0, \\begin{pmatrix} q_1 & c\\sqrt{q_1 q_2}\\\\ c\\sqrt{q_1 q_2} & q_2\\end{pmatrix}\\right)

Layered like the 1-D engine: kernel recognizers (``_abrelu``, ``_step``, ``_erf``, ``_gauss``)
→ closed kernels (``kernel``: arc-cosine, arcsin, Gaussian) → nested Gauss–Kronrod
(``_numeric``) → one public entry, :func:`expect2`.

The numeric path writes u1 = √q1·z1, u2 = √q2·(c·z1 + s·t) with s = √(1 − c²) and z1, t
independent standard normals.  For each outer node z1 the inner integral over t is a
standard-normal expectation whose kinks sit at t_k(z1) = (k/√q2 − c·z1)/s — the *kink lines*
of g moved into t-space — so every inner panel edge set contains them.  The inner integral,
as a function of z1, then has a smoothed kink of width ~s at z1 = k/(c·√q2); the outer edges
are graded geometrically towards those points (and split at the kinks of f), so accuracy does
not degrade as |c| → 1.  At |c| = 1 exactly the expectation is the 1-D E[f(√q1 z) g(±√q2 z)];
at c = 0 it factorizes.  See notes/mean-field.md §8.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy

from ..activation import Activation, activation
from ..errors import NonFiniteError, NotConvergedError, VanishcalcError
from ..parse import X
from ..validate import real
from ..value import Value
from .numeric import GAUSS, KRONROD, NODES, adaptive_gk, panel_edges, std_normal_pdf
from .tails import plan

__all__ = ["expect2", "kernel"]

_EPS = np.finfo(float).eps


# ---------------------------------------------------------------- validation


def _expect2_iv(f, g, q1, q2, c):
    fa = _as_activation(f, "f")
    ga = fa if g is None else _as_activation(g, "g")
    q1 = real("expect2", "q1", q1, positive=True, why="(the variance of u1)")
    q2 = q1 if q2 is None else real("expect2", "q2", q2, positive=True, why="(the variance of u2)")
    cf = real("expect2", "c", c, lo=-1.0, hi=1.0,
              why="(a correlation coefficient, not a covariance)")
    for a, name in ((fa, "f"), (ga, "g")):
        if a.deltas:
            raise VanishcalcError(f"expect2: {name} = {a.name} contains Dirac masses {a.deltas}; "
                                  "integrate by parts (Stein's lemma) before calling expect2")
    return fa, ga, q1, q2, cf


def _as_activation(f, name):
    try:
        return activation(f)
    except VanishcalcError:
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure is bad input
        raise VanishcalcError(f"expect2: cannot read {name} = {f!r}: {exc}") from exc


# ---------------------------------------------------------------- public entry


def expect2(f, g=None, q1=1.0, q2=None, c=0.0) -> Value:
    """E[f(u1)·g(u2)] for a centered Gaussian pair with variances q1, q2 and correlation c.

    .. math::

        E[f(u_1) g(u_2)] = \\int\\!\\!\\int f(\\sqrt{q_1} z_1)\\,
        g\\big(\\sqrt{q_2}(c z_1 + \\sqrt{1-c^2}\\, t)\\big)\\, Dz_1\\, Dt

    Parameters
    ----------
    f, g : str, sympy.Expr or Activation
        The two functions (``g`` defaults to ``f``), as for :func:`vanishcalc.activation`.
    q1, q2 : float
        Variances of u1 and u2 (``q2`` defaults to ``q1``); q in Poole et al. 2016.
    c : float
        Correlation coefficient in [−1, 1] (c in Poole et al. 2016, eq. 5).

    Returns
    -------
    Value
        ``exact`` holds the closed kernel when one is known (arc-cosine kernel for
        relu-like functions, Cho & Saul 2009; arcsin kernel for erf, Williams 1997;
        the Gaussian kernel for exp(−a·x²)); otherwise the nested Gauss–Kronrod value with
        an error *estimate* (``error_kind == "estimate"``).

    Raises
    ------
    VanishcalcError (a ValueError)
        for c outside [−1, 1], q ≤ 0 or non-finite, functions with Dirac masses.
    DivergenceError
        when E[f(u1)²] or E[g(u2)²] does not exist (then neither may the product).

    Notes
    -----
    See notes/mean-field.md §8 for the kink-line splitting and the behaviour as |c| → 1.

    References
    ----------
    Cho & Saul 2009, "Kernel methods for deep learning", eq. 6 (n = 1) and n = 0.
    Williams 1997, "Computing with infinite networks", eq. 11 (arcsin kernel).

    Examples
    --------
    >>> float(expect2("relu", q1=1.0, c=0.0)) == 1 / (2 * math.pi)
    True
    >>> expect2("erf", q1=1.0, c=1.0)
    2*asin(2/3)/pi ≈ 0.46455905439753997 (exact)
    """
    fa, ga, q1f, q2f, cf = _expect2_iv(f, g, q1, q2, c)
    q2_in = q1 if q2 is None else q2
    expr = kernel(fa, ga, _exact_number(q1), _exact_number(q2_in), _exact_number(c))
    if expr is not None:
        return Value.from_exact(expr, method="exact:bivariate-kernel")
    value, error = _numeric_cached(fa, ga, q1f, q2f, cf)
    return Value(value, error=error, error_kind="estimate", method="numeric:bivariate-gauss-kronrod")


def _exact_number(v):
    if isinstance(v, sympy.Basic):
        return v
    return sympy.nsimplify(float(v), rational=True)


# ---------------------------------------------------------------- kernel recognizers


def _linear_coeff(expr):
    """a if expr == a·x with a a number, else None."""
    expr = sympy.expand(expr)
    if expr == 0:
        return sympy.Integer(0)
    a = sympy.diff(expr, X)
    if a.has(X) or sympy.simplify(expr - a * X) != 0:
        return None
    return a


@functools.lru_cache(maxsize=512)
def _abrelu(act: Activation):
    """(a, b) if φ(x) = a·x for x < 0 and b·x for x > 0 (linear, relu, leaky relu, |x|), else None."""
    if act.deltas or any(k != 0 for k in act.kinks_exact) or len(act.pieces) > 2:
        return None
    coeffs = [_linear_coeff(p.expr) for p in act.pieces]
    if any(cf is None for cf in coeffs):
        return None
    return (coeffs[0], coeffs[-1])


@functools.lru_cache(maxsize=512)
def _step(act: Activation):
    """(a, b) if φ(x) = a for x < 0 and b for x > 0 (the derivatives of the ab-relus), else None."""
    if act.deltas or any(k != 0 for k in act.kinks_exact) or len(act.pieces) > 2:
        return None
    vals = [p.expr for p in act.pieces]
    if any(v.has(X) for v in vals):
        return None
    return (vals[0], vals[-1])


_A = sympy.Wild("A", exclude=[X])
_B = sympy.Wild("B", exclude=[X])


@functools.lru_cache(maxsize=512)
def _erf(act: Activation):
    """(A, B) if φ = A·erf(B·x), else None."""
    if act.kinks:
        return None
    m = act.expr.match(_A * sympy.erf(_B * X))
    if not m or m[_A] == 0 or m[_B] == 0:
        return None
    return (m[_A], m[_B])


@functools.lru_cache(maxsize=512)
def _gauss(act: Activation):
    """(A, B) if φ = A·exp(−B·x²) with B > 0, else None."""
    if act.kinks:
        return None
    m = act.expr.match(_A * sympy.exp(_B * X ** 2))
    if not m or m[_A] == 0 or not (m[_B].is_number and m[_B] < 0):
        return None
    return (m[_A], -m[_B])


# ---------------------------------------------------------------- closed kernels


def _arccos_k1(c):
    """J1(c)/π... the degree-1 arc-cosine kernel of Cho & Saul (2009) for unit variances:
    E[relu(u1) relu(u2)] = (√(1 − c²) + (π − arccos c)·c) / (2π)."""
    return (sympy.sqrt(1 - c ** 2) + (sympy.pi - sympy.acos(c)) * c) / (2 * sympy.pi)


def _arccos_k0(c):
    """Degree-0 arc-cosine kernel: E[H(u1) H(u2)] = (π − arccos c)/(2π)."""
    return (sympy.pi - sympy.acos(c)) / (2 * sympy.pi)


def kernel(f, g, q1, q2, c):
    """The closed form of E[f(u1) g(u2)] as a SymPy expression, or None if none is known.

    ``q1, q2, c`` may be numbers or SymPy symbols (``q_map_expr`` passes symbols).
    Recognized pairs: ab-relu × ab-relu (φ = a·x on x < 0, b·x on x > 0: linear, relu,
    leaky relu; arc-cosine kernel of degree 1, Cho & Saul 2009), step × step (their
    derivatives; degree 0), A·erf(B·x) × A'·erf(B'·x) (Williams 1997) and
    A·exp(−B·x²) × A'·exp(−B'·x²) (a Gaussian integral, 1/√det(I + 2·diag(B)·Σ)).
    """
    fa, ga = activation(f), activation(g)
    q1, q2, c = sympy.sympify(q1), sympy.sympify(q2), sympy.sympify(c)
    r = sympy.sqrt(q1 * q2)
    ab_f, ab_g = _abrelu(fa), _abrelu(ga)
    if ab_f is not None and ab_g is not None:
        (a1, b1), (a2, b2) = ab_f, ab_g
        # φ(x) = b·relu(x) − a·relu(−x); relu(−u) has correlation −c with relu(u').
        k_pos, k_neg = _arccos_k1(c), _arccos_k1(-c)
        return r * ((b1 * b2 + a1 * a2) * k_pos - (b1 * a2 + a1 * b2) * k_neg)
    st_f, st_g = _step(fa), _step(ga)
    if st_f is not None and st_g is not None:
        (a1, b1), (a2, b2) = st_f, st_g
        # φ = a + (b − a)·H(x); E[H] = 1/2, E[H(u1) H(u2)] = k0(c).
        return (a1 * a2 + (a1 * (b2 - a2) + a2 * (b1 - a1)) / 2
                + (b1 - a1) * (b2 - a2) * _arccos_k0(c))
    er_f, er_g = _erf(fa), _erf(ga)
    if er_f is not None and er_g is not None:
        (A1, B1), (A2, B2) = er_f, er_g
        return A1 * A2 * 2 / sympy.pi * sympy.asin(
            2 * B1 * B2 * c * r / sympy.sqrt((1 + 2 * B1 ** 2 * q1) * (1 + 2 * B2 ** 2 * q2)))
    ga_f, ga_g = _gauss(fa), _gauss(ga)
    if ga_f is not None and ga_g is not None:
        (A1, B1), (A2, B2) = ga_f, ga_g
        return A1 * A2 / sympy.sqrt((1 + 2 * B1 * q1) * (1 + 2 * B2 * q2) - 4 * B1 * B2 * c ** 2 * q1 * q2)
    return None


@functools.lru_cache(maxsize=512)
def kernel_function(fa: Activation, ga: Activation):
    """A fast float function (q1, q2, c) → E[f(u1) g(u2)] from :func:`kernel`, or None."""
    q1, q2, c = sympy.symbols("q1 q2 c", positive=True)
    cs = sympy.Symbol("c", real=True)
    expr = kernel(fa, ga, q1, q2, cs)
    if expr is None:
        return None
    fn = sympy.lambdify((q1, q2, cs), expr, modules="math")

    def evaluate(a, b, cc):
        # acos/sqrt of 1 ± rounding: clamp c into [-1, 1].
        return float(fn(a, b, min(1.0, max(-1.0, cc))))
    return evaluate


# ---------------------------------------------------------------- numerics


def _z_max(act: Activation, q: float) -> float:
    """Integration half-width in z for E[act(√q z)²]-sized integrands, cached per power of 2 of q.

    The tail plan of the square is conservative for the product with another function of
    at most the same growth; q is rounded up to a power of two (wider, never narrower)."""
    return _z_max_pow2(act, 2.0 ** math.ceil(math.log2(q)))


@functools.lru_cache(maxsize=4096)
def _z_max_pow2(act: Activation, q_up: float) -> float:
    # Keyed by the power of 2, not by q: a solver visits many q in one octave, and each
    # tail plan costs ~50 30-digit evaluations of φ².
    return plan(_square(act), q_up).z_max


@functools.lru_cache(maxsize=512)
def _square(act: Activation) -> Activation:
    # Built once per φ, not once per octave: Activation.map spells the key of the new
    # expression out (srepr), ~0.3 ms, and a critical-line scan plans ~50 octaves.
    return act.power(2, f"({act.name})²")


def expect1_product(fa, ga, q1, q2, sign=1.0, *, rtol=1e-14):
    """E[f(√q1 z)·g(sign·√q2 z)] by adaptive Gauss–Kronrod split at both functions' kinks.

    Returns (value, error estimate).  ``ga=None`` means g ≡ 1.
    """
    s1 = math.sqrt(q1)
    f = fa.numpy
    breaks = [k / s1 for k in fa.kinks]
    zmax = _z_max(fa, q1)
    if ga is None:
        def integrand(z):
            return f(s1 * z) * std_normal_pdf(z)
    else:
        s2 = sign * math.sqrt(q2)
        g = ga.numpy
        breaks += [k / s2 for k in ga.kinks]
        zmax = max(zmax, _z_max(ga, q2))

        def integrand(z):
            return f(s1 * z) * g(s2 * z) * std_normal_pdf(z)
    label = (f"E[{fa.name}(√q z)] at q = {q1:g}" if ga is None else
             f"E[{fa.name}(u1)·{ga.name}(u2)] at q1 = {q1:g}, q2 = {q2:g}")
    # A smooth φ still bends on |x| ~ 1 (gelu: a rounded relu corner), which at large q is
    # a feature ~1/√q wide at z = 0: grade the panels towards it.  Bisection from width-2
    # panels alone needs ~log2(√q) rounds before the error starts to fall, and the stall
    # test of adaptive_gk took that for rounding noise (gelu at q = 2^19).
    narrow = 1.0 / max(s1, math.sqrt(q2) if ga is not None else 0.0)
    if narrow < 0.25:
        breaks += _graded([0.0], narrow, zmax)
    value, err, _ = adaptive_gk(integrand, panel_edges(zmax, breaks), rtol=rtol, atol=1e-300,
                                label=label)
    return value, err


def _inner(g, kinks, s2, c, s, zt, z1, width):
    """∫ g(√q2(c·z1 + s·t)) φ(t) dt for every z1 (1-D array), split at the kink lines.

    Returns (value, error, l1) arrays of shape z1.shape."""
    base = np.arange(-zt, zt + 0.5 * width, width)
    base[-1] = zt
    if kinks.size:
        tk = (kinks[None, :] / s2 - c * z1[:, None]) / s
        tk = np.clip(tk, -zt, zt)
        edges = np.sort(np.concatenate([np.broadcast_to(base, (z1.size, base.size)), tk], axis=1),
                        axis=1)
    else:
        edges = np.broadcast_to(base, (z1.size, base.size))
    lo, hi = edges[:, :-1], edges[:, 1:]
    half = 0.5 * (hi - lo)
    mid = 0.5 * (hi + lo)
    t = mid[..., None] + half[..., None] * NODES                      # (N, P, 21)
    x = s2 * (c * z1[:, None, None] + s * t)
    y = g(x) * std_normal_pdf(t)
    kron = np.einsum("npk,k->np", y, KRONROD) * half
    gauss = np.einsum("npk,k->np", y, GAUSS) * half
    l1 = np.einsum("npk,k->np", np.abs(y), KRONROD) * half
    return kron.sum(axis=1), (np.abs(kron - gauss) + 4 * _EPS * l1).sum(axis=1), l1.sum(axis=1)


@functools.lru_cache(maxsize=4096)
def _square_mean(act, q):
    return expect1_product(act, act, q, q, rtol=1e-8)[0]


def _graded(points, s, zmax):
    """Edges graded geometrically towards each point, down to width ~s/4 (smoothed kinks)."""
    out = []
    for p in points:
        if not -zmax < p < zmax:
            continue
        out.append(p)
        h = max(s / 4, 1e-12)
        while h < 2.0:
            out.extend((p - h, p + h))
            h *= 4.0
    return out


def _numeric(fa, ga, q1, q2, c, rtol=1e-13):
    """Nested Gauss–Kronrod for 0 < |c| < 1; (value, error estimate)."""
    s = math.sqrt((1.0 - c) * (1.0 + c))
    s1, s2 = math.sqrt(q1), math.sqrt(q2)
    f, g = fa.numpy, ga.numpy
    gk = np.asarray(ga.kinks, dtype=float)
    zf, zg = _z_max(fa, q1), _z_max(ga, q2)
    z1max = max(zf, zg)
    # Inner panels: width 2 in t, narrower when g(√q2·s·t) varies faster than g(x) on |x| ~ 1.
    width = min(1.0, 1.0 / max(s2 * s, 1e-300))
    nmax = 4000
    if 2 * zg / width > nmax:
        width = 2 * zg / nmax
    worst = {"abs": 0.0}

    def outer(z):
        shape = z.shape
        z = z.ravel()
        val, err, l1 = _inner(g, gk, s2, c, s, zg, z, width)
        # Absolute inner tolerance on the scale of E|g|: a node whose inner value is tiny
        # (cancellation in g) cannot reach a relative target and does not need to.
        atol = rtol * max(float(l1.max(initial=0.0)), 1e-300)
        bad = err > atol
        for i in np.nonzero(bad)[0]:
            zi = z[i]
            edges = panel_edges(zg, [(k / s2 - c * zi) / s for k in gk])
            try:
                v, e, _ = adaptive_gk(lambda t: g(s2 * (c * zi + s * t)) * std_normal_pdf(t),
                                      edges, rtol=rtol, atol=atol)
            except NotConvergedError as exc:
                v, e = exc.best
            val[i], err[i] = v, e
        weight = f(s1 * z) * std_normal_pdf(z)
        worst["abs"] = max(worst["abs"], float((np.abs(weight) * err).max(initial=0.0)))
        return (weight * val).reshape(shape)

    breaks = [k / s1 for k in fa.kinks]
    if abs(c) > 0:
        breaks += _graded([k / (s2 * c) for k in ga.kinks], s, z1max)
    edges = panel_edges(z1max, breaks)
    # Absolute floor on the Cauchy–Schwarz scale √(E[f²]E[g²]) ≥ |E[f g]|: near-cancelling
    # values (c ≈ 0 for odd φ) cannot reach a relative target and need not.
    # (a product of roots: the product of the means can overflow where each root does not)
    scale = math.sqrt(float(_square_mean(fa, q1))) * math.sqrt(float(_square_mean(ga, q2)))
    value, err, _ = adaptive_gk(outer, edges, rtol=rtol, atol=rtol * scale)
    # Inner errors enter weighted by |f(√q1 z1)| φ(z1): bounded by the largest weighted
    # inner error times the length of the outer range.
    err += worst["abs"] * 2 * z1max
    if not math.isfinite(value):
        raise NonFiniteError(f"E[{fa.name}(u1)·{ga.name}(u2)] is not finite")
    return value, err


@functools.lru_cache(maxsize=8192)
def _numeric_cached(fa, ga, q1, q2, c):
    """(value, error) of E[f(u1) g(u2)] by the cheapest numeric route, cached on the keys."""
    if c == 0.0:
        v1, e1 = expect1_product(fa, None, q1, q1)
        v2, e2 = expect1_product(ga, None, q2, q2)
        return v1 * v2, abs(v1) * e2 + abs(v2) * e1 + e1 * e2
    if abs(c) == 1.0:
        return expect1_product(fa, ga, q1, q2, sign=c)
    try:
        return _numeric(fa, ga, q1, q2, c)
    except NotConvergedError as exc:
        raise NotConvergedError(f"E[{fa.name}(u1)·{ga.name}(u2)] at q1={q1:g}, q2={q2:g}, "
                                f"c={c:g}: {exc}", best=exc.best) from exc


def expect2_float(fa, ga, q1, q2, c):
    """Fast internal entry: float E[f(u1) g(u2)] (closed kernel if known), no validation."""
    fn = kernel_function(fa, ga)
    if fn is not None:
        return fn(q1, q2, c), 0.0
    return _numeric_cached(fa, ga, float(q1), float(q2), float(c))
