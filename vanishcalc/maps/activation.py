"""``Nonlinearity(φ)`` (exported as ``vanishcalc.maps.Activation``): the elementwise layer x = φ(h).

.. math::

    q' = E[\\varphi(u)^2],\\quad u \\sim N(m, q - m^2);\\qquad
    \\mathrm{cov}' = E[\\varphi(u_1)\\varphi(u_2)]

(Poole et al. 2016, eqs. 3 and 5, the nonlinear half.)  Requires a Gaussian input
(``state.is_gaussian``): put a Dense (or a normalization of a Gaussian) before it.

Backward, δh = φ'(h)⊙δx multiplies the expected squared gradient norm by E[φ'(u)²]
(Schoenholz et al. 2017, eq. 13 under gradient independence).

Exact identities used instead of finite differences (notes/mean-field.md):

* ∂cov'/∂cov = E[φ'(u1)φ'(u2)] (Price's theorem), so ∂c'/∂c = √(q1q2)·E[φ'φ']/√(q1'q2');
* ∂/∂q E[g(√q z)] = E[(z² − 1)·g(√q z)]/(2q) (differentiate the Gaussian density), which
  needs no φ'' and so no Dirac masses at kinks.

Expectations come from the closed kernels of :mod:`vanishcalc.gaussian.bivariate` when one
is known (relu family, erf, exp(−x²)), else from cached Gauss–Kronrod quadrature.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy

from ..activation import Activation as _Act
from ..activation import activation
from ..errors import VanishcalcError
from ..gaussian import bivariate as _bv
from ..gaussian.numeric import adaptive_gk, panel_edges, std_normal_pdf
from ..parse import X
from .layer import Layer
from .state import MomentState, geometric_mean


# ---------------------------------------------------------------- cached Gaussian means


@functools.lru_cache(maxsize=512)
def one_sided_at_zero(act: _Act) -> tuple:
    """(φ(0−), φ(0+)): equal unless φ jumps at 0 (φ' of relu: 0 and 1).

    The v → 0 limits of E[φ(√v z)] and E[φ(√v z)²] are their mean and mean square, since
    √v z is negative or positive with probability 1/2 each."""
    if 0.0 in act.kinks:
        i = act.kinks.index(0.0)
        return tuple(float(act.pieces[j].numpy(np.zeros(1))[0]) for j in (i, i + 1))
    v = float(act.numpy(np.zeros(1))[0])
    return v, v


# Below SERIES_Q_MAX the moments come from the Taylor series of φ² at 0 (one-sided at a kink
# at 0).  Quadrature there meets rounding noise it cannot see: elu's e^x − 1 at x ~ 1e-4 cancels,
# and E[elu(√q z)²] at q = 1e-8 came out 0.5 % high with a 5e-14 relative error estimate.
SERIES_Q_MAX = 1e-6
SERIES_ORDER = 8            # powers of x kept in φ and φ² (terms to q^4)
LOOSE_RTOL = 1e-11          # a series is used when its error is below this share of the value
_CAUCHY_POINTS = 64


def _taylor(fn, radius):
    """Taylor coefficients c_0..c_SERIES_ORDER of an analytic ``fn`` at 0 by Cauchy's formula
    on the circle |x| = radius (trapezoidal rule, _CAUCHY_POINTS nodes: the FFT), or None if
    ``fn`` is not finite there.  SymPy's series of φ² took 70 s for gelu_tanh; this takes µs,
    and evaluating at two radii checks it (a non-analytic piece, e.g. |x|, disagrees)."""
    x = radius * np.exp(2j * np.pi * np.arange(_CAUCHY_POINTS) / _CAUCHY_POINTS)
    with np.errstate(all="ignore"):
        try:
            vals = np.asarray(fn(x), dtype=complex) * np.ones(_CAUCHY_POINTS)
        except (TypeError, ValueError, AttributeError):
            return None
    if not np.all(np.isfinite(vals)):
        return None
    c = np.fft.fft(vals)[:SERIES_ORDER + 1] / _CAUCHY_POINTS
    scale = radius ** np.arange(SERIES_ORDER + 1)
    # rounding: each value carries a few ulp of max|fn| on the circle, the FFT adds log2 N
    err = 16 * np.finfo(float).eps * float(np.max(np.abs(vals))) / scale
    coeffs = (c.real / scale).tolist()
    # c_0 = fn(0) directly, to an ulp: with φ(0) = 0 the c_0 rounding of the FFT would
    # otherwise dominate E[φ²] ~ q (through 2 c_0 c_1 √q) at q = 1e-12
    with np.errstate(all="ignore"):
        c0 = float(np.asarray(fn(np.zeros(1)), dtype=float).ravel()[0])
    if not math.isfinite(c0):
        return None
    coeffs[0], err[0] = c0, 2 * np.finfo(float).eps * abs(c0)
    return coeffs, err.tolist()


@functools.lru_cache(maxsize=512)
def _square_series(act: _Act):
    """Taylor coefficients of φ(x)² at 0 for x < 0 and x > 0 (equal if 0 is no kink), each at
    two Cauchy radii: ((left_R, right_R), (left_R/2, right_R/2)) indexed by the power of x, or
    None when φ is not analytic on a disk around 0 (a pole, a kink near 0 other than 0)."""
    left, right = act.pieces_beside_zero()
    if left is None or right is None:
        return None
    radius = 0.25 * min([1.0] + [abs(k) for k in act.kinks if k != 0.0])
    out = []
    for r in (radius, radius / 2):
        sides, errs = [], []
        for piece in (left, right):
            res = _taylor(piece.numpy, r)
            if res is None:
                return None
            phi, e = res
            # φ² to x^SERIES_ORDER: exact from φ's terms to the same power
            sides.append([math.fsum(phi[i] * phi[k - i] for i in range(k + 1))
                          for k in range(SERIES_ORDER + 1)])
            errs.append([math.fsum(2 * abs(phi[i]) * e[k - i] + e[i] * e[k - i]
                                   for i in range(k + 1)) for k in range(SERIES_ORDER + 1)])
        out.append((tuple(sides), tuple(errs)))
    return tuple(out)


def _half_moment(n: int) -> float:
    """E[z^n; z > 0] = 2^{n/2} Γ((n+1)/2) / (2√π)."""
    return 2.0 ** (n / 2) * math.gamma((n + 1) / 2) / (2.0 * math.sqrt(math.pi))


def _series_sum(coeffs, v, derivative):
    """(sum, Σ|terms|, last two |terms|, rounding error of the coefficients' share)."""
    (left, right), (el, er) = coeffs
    terms, round_err = [], 0.0
    for n in range(SERIES_ORDER + 1):
        a = right[n] + (-1) ** n * left[n]
        w = (0.0 if n == 0 else _half_moment(n) * (n / 2) * v ** (n / 2 - 1)) if derivative \
            else _half_moment(n) * v ** (n / 2)
        terms.append(a * w)
        round_err += (er[n] + el[n]) * w
    return (math.fsum(terms), math.fsum(abs(t) for t in terms), abs(terms[-1]) + abs(terms[-2]),
            round_err)


def _series_moment(act: _Act, v: float, derivative: bool = False):
    """(value, error) of E[φ(√v z)²] (or its v-derivative) from the series of φ² at 0, or None
    when v is too large, no series exists, or its error is above LOOSE_RTOL of the value.

    E[φ(√v z)²] = Σ_n v^{n/2} E[z^n; z>0]·(r_n + (−1)^n l_n) for φ² = Σ r_n x^n (x > 0),
    Σ l_n x^n (x < 0).  Error: the two Cauchy radii's disagreement, plus 10× the last two
    terms (truncation), plus the coefficients' rounding and that of the sum."""
    if not 0.0 < v <= SERIES_Q_MAX:
        return None
    if any(k != 0.0 and abs(k) < 1e3 * math.sqrt(v) for k in act.kinks):
        return None
    both = _square_series(act)
    if both is None:
        return None
    value, size, tail, rnd = _series_sum(both[0], v, derivative)
    check = _series_sum(both[1], v, derivative)[0]
    err = abs(value - check) + 10 * tail + rnd + 4 * np.finfo(float).eps * size
    if size == 0.0 or err > LOOSE_RTOL * abs(value):
        return None
    return value, err


@functools.lru_cache(maxsize=16384)
def second_moment_with_error(act: _Act, v: float) -> tuple:
    """(E[φ(√v z)²], error estimate) for v ≥ 0 (at v = 0 the limit v → 0⁺): the closed
    kernel if known, the series of φ² at 0 for v ≤ SERIES_Q_MAX, else quadrature."""
    if v == 0.0:
        a, b = one_sided_at_zero(act)
        return 0.5 * (a * a + b * b), 0.0
    fn = _bv.kernel_function(act, act)
    if fn is not None:
        val = fn(v, v, 1.0)
        return val, 16 * np.finfo(float).eps * abs(val)
    ser = _series_moment(act, v)
    if ser is not None:
        return ser
    val, err = _bv.expect1_product(act, act, v, v)
    return float(val), float(err)


def second_moment(act: _Act, v: float) -> float:
    """E[φ(√v z)²] (v ≥ 0; at v = 0 the limit v → 0⁺)."""
    return second_moment_with_error(act, v)[0]


@functools.lru_cache(maxsize=16384)
def first_moment(act: _Act, v: float) -> float:
    """E[φ(√v z)] (at v = 0 the limit v → 0⁺)."""
    if v == 0.0:
        return 0.5 * sum(one_sided_at_zero(act))
    return float(_bv.expect1_product(act, None, v, v)[0])


@functools.lru_cache(maxsize=16384)
def cross_moment(act: _Act, v1: float, v2: float, c: float) -> float:
    """E[φ(u1)φ(u2)], u centered with variances v1, v2 and correlation c."""
    if v1 == 0.0 or v2 == 0.0:
        return first_moment(act, v1) * first_moment(act, v2)
    if c == 1.0 and v1 == v2:
        return second_moment(act, v1)
    return float(_bv.expect2_float(act, act, v1, v2, c)[0])


@functools.lru_cache(maxsize=16384)
def second_moment_slope_with_error(act: _Act, v: float) -> tuple:
    """(d/dv E[φ(√v z)²], error estimate) = E[(z² − 1)·φ(√v z)²]/(2v)."""
    if v == 0.0:
        raise VanishcalcError("the q-map slope at q = 0 needs φ'(0); use chi1 instead")
    sym = _slope_function(act)
    if sym is not None:
        val = sym(v)
        return val, 16 * np.finfo(float).eps * abs(val)
    ser = _series_moment(act, v, derivative=True)
    if ser is not None:
        return ser
    s = math.sqrt(v)
    f = act.numpy
    zmax = _bv._z_max(act, v)

    def integrand(z):
        return (z * z - 1.0) * f(s * z) ** 2 * std_normal_pdf(z)
    val, err, _ = adaptive_gk(integrand, panel_edges(zmax, [k / s for k in act.kinks]),
                              rtol=1e-13, atol=1e-300,
                              label=f"d/dq E[{act.name}(√q z)²] at q = {v:g}")
    return val / (2 * v), err / (2 * v)


def second_moment_slope(act: _Act, v: float) -> float:
    """d/dv E[φ(√v z)²] = E[(z² − 1)·φ(√v z)²]/(2v)."""
    return second_moment_slope_with_error(act, v)[0]


@functools.lru_cache(maxsize=512)
def _slope_function(act: _Act):
    q = sympy.Symbol("q", positive=True)
    expr = _bv.kernel(act, act, q, q, sympy.Integer(1))
    if expr is None:
        return None
    return sympy.lambdify(q, sympy.diff(expr, q), modules="math")


@functools.lru_cache(maxsize=512)
def derivative_of(act: _Act) -> _Act:
    d = act.derivative(1)
    if d.deltas:
        raise VanishcalcError(f"φ = {act.name} jumps at x = {[float(k) for k, _ in d.deltas]}: "
                              "E[φ'(u)²] is infinite, so gradients are not defined; use a "
                              "continuous φ")
    return d


@functools.lru_cache(maxsize=512)
def shifted(act: _Act, m: float) -> _Act:
    """x ↦ φ(x + m) as an Activation (for a non-centered Gaussian input)."""
    if m == 0.0:
        return act
    return activation(act.expr.subs(X, X + sympy.nsimplify(m, rational=True)))


# ---------------------------------------------------------------- the layer


class Nonlinearity(Layer):
    """The elementwise nonlinearity layer x = φ(h); ``vanishcalc.maps.Activation``."""

    elementwise = True

    def __init__(self, spec):
        self.act = activation(spec)

    def _centered(self, state: MomentState):
        if not state.is_gaussian:
            raise VanishcalcError(
                f"{self!r} needs Gaussian pre-activations, but its input is the output of a "
                "nonlinearity; a random affine transform (Dense) is required before it")
        m = state.mean or 0.0
        v1, v2 = state.q1 - m * m, state.q2 - m * m
        if v1 < -1e-12 * state.q1 or v2 < -1e-12 * state.q2:
            raise VanishcalcError(f"{self!r}: input second moment below mean² ({state})")
        v1, v2 = max(v1, 0.0), max(v2, 0.0)
        cov = state.cov - m * m
        cc = cov / geometric_mean(v1, v2) if v1 > 0 and v2 > 0 else 1.0
        return shifted(self.act, float(m)), v1, v2, max(-1.0, min(1.0, cc))

    def moment_map(self, state: MomentState) -> MomentState:
        act, v1, v2, cc = self._centered(state)
        e1 = second_moment(act, v1)
        e2 = e1 if v2 == v1 else second_moment(act, v2)
        e12 = e1 if (cc == 1.0 and v1 == v2) else cross_moment(act, v1, v2, cc)
        c = e12 / geometric_mean(e1, e2) if e1 > 0 and e2 > 0 else 1.0
        return state.replace(q1=e1, q2=e2, c=max(-1.0, min(1.0, c)), mean=None, is_gaussian=False)

    def grad_factor(self, state: MomentState) -> float:
        act, v1, _, _ = self._centered(state)
        return second_moment(derivative_of(act), v1)

    def q_slope(self, state: MomentState) -> float:
        act, v1, _, _ = self._centered(state)
        if v1 == 0.0:
            # lim d/dq E[φ²] = E[φ'²] + E[φφ''] → (φ'(0−)² + φ'(0+)²)/2, as φ(0) = 0 when q* = 0
            return second_moment(derivative_of(act), 0.0)
        return second_moment_slope(act, v1)

    def c_slope(self, state: MomentState) -> float:
        act, v1, v2, cc = self._centered(state)
        d = derivative_of(act)
        e1 = second_moment(act, v1)
        e2 = e1 if v2 == v1 else second_moment(act, v2)
        if e1 <= 0 or e2 <= 0:
            return 0.0
        dd = cross_moment(d, v1, v2, cc)
        return geometric_mean(v1 / e1, v2 / e2) * dd

    def moments_expr(self, q, cov, symbolic=False):
        c = cov / q
        k = _bv.kernel(self.act, self.act, q, q, c)
        if k is None:
            return None
        return _bv.kernel(self.act, self.act, q, q, sympy.Integer(1)), k

    def __repr__(self):
        return f"Activation({self.act.name!r})"


Activation = Nonlinearity
