"""Initialization gains: the weight scale that keeps a signal's size fixed through a layer."""
from __future__ import annotations

import functools
import math

import mpmath
import sympy

from ..activation import activation
from ..parse import X
from ..errors import VanishcalcError
from ..gaussian.expect import expect
from ..gaussian.symbolic import exact_q
from ..validate import real
from ..value import Value

CONVENTIONS = ("second_moment", "std", "backward")


def gain(spec, convention="second_moment", q=1.0) -> Value:
    r"""The init gain of φ: weight std = gain / √fan_in.

    .. math::
        \text{second\_moment}: \; g = \sqrt{q / \mathbb{E}[\phi(\sqrt{q} z)^2]} \qquad
        \text{std}: \; g = \sqrt{q / \mathrm{Var}[\phi(\sqrt{q} z)]} \qquad
        \text{backward}: \; g = 1 / \sqrt{\mathbb{E}[\phi'(\sqrt{q} z)^2]}

    ``second_moment`` is the torch.nn.init / Kaiming convention (relu → √2, linear → 1,
    leaky_relu(a) → √(2/(1+a²))): with W ~ N(0, g²/fan_in) the pre-activations keep
    E[h²] = q.  ``std`` is the NFNets convention (mean removed), ``backward`` keeps the
    squared gradient norm fixed.

    Parameters
    ----------
    spec : str, sympy.Expr or Activation
        The nonlinearity φ.
    convention : {"second_moment", "std", "backward"}
    q : float
        Second moment of the pre-activation the gain is computed at (default 1).

    Returns
    -------
    Value
        Exact when the expectations have closed forms; else numeric with propagated error.

    Raises
    ------
    ValueError (VanishcalcError subclasses)
        bad φ, bad convention, q ≤ 0, or a divergent / zero expectation.

    Notes
    -----
    notes/gain.md derives the conventions and compares with torch's calculate_gain.

    Examples
    --------
    >>> gain("exp(-x**2)")
    5**(1/4) ≈ 1.4953487812212205 (exact)
    >>> gain("relu")
    sqrt(2) ≈ 1.4142135623730951 (exact)
    """
    if convention not in CONVENTIONS:
        raise VanishcalcError(f"convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    qf = real("gain", "q", q, nonneg=True, why="(the variance of the pre-activation)")
    if qf == 0:
        raise VanishcalcError("q must be > 0 for a gain (the pre-activation must carry signal)")
    own_gain = getattr(spec, "__vanishcalc_gain__", None)
    if own_gain is not None:        # a random φ (RReLU in training mode) knows its own gain
        return own_gain(convention, qf)
    return _gain_cached(activation(spec), convention, qf)


@functools.lru_cache(maxsize=2048)
def _gain_cached(act, convention, q):
    qe = exact_q(q)
    if convention == "backward":
        if act.derivative(1).deltas:
            raise VanishcalcError(
                f"backward gain of {act.name} is undefined: φ jumps at x = "
                f"{', '.join(sympy.sstr(k) for k, _ in act.derivative(1).deltas)}, so φ' has a "
                "Dirac mass there and E[φ'(√q z)²] is infinite")
        m2 = expect(act.derivative(1).power(2, f"{act.name}'²"), q)
        return _inv_sqrt(m2, 1, "backward", act)
    if q < TINY_Q:
        # E[φ(√q z)²] ≈ q·E[φ'(0)² z²] is a subnormal double below q ≈ 1e-308 and loses
        # its bits; E[φ(√q z)²]/q = E[ψ(z)] with ψ(x) = φ(√q x)²/q is of order 1.
        return _gain_scaled(act, convention, qe)
    m2 = expect(act.power(2, f"{act.name}²"), q)
    if convention == "second_moment":
        return _inv_sqrt(m2, qe, convention, act)
    m1 = expect(act, q)
    var = float(m2) - float(m1) ** 2
    var_err = m2.error + 2 * abs(float(m1)) * m1.error + m1.error ** 2
    exact = None
    if m1.exact is not None and m2.exact is not None:
        try:
            # strict: E[φ²] − E[φ]² can cancel far beyond 30 digits (elu at q = 1e-200),
            # and a non-strict evalf then returns noise with no warning.
            var = float((m2.exact - m1.exact ** 2).evalf(30, strict=True, maxn=4000))
            exact = m2.exact - m1.exact ** 2
            var_err = abs(var) * 2.0 ** -52
        except (sympy.core.evalf.PrecisionExhausted, TypeError, ValueError):
            pass
    v = Value(var, exact=exact, error=var_err, method=m2.method)
    return _inv_sqrt(v, qe, convention, act)


TINY_Q = 1e-150


def _gain_scaled(act, convention, qe):
    """The gain at tiny q from the moments of φ(√q x)/√q at unit variance."""
    scaled = activation(act.expr.subs(X, sympy.sqrt(qe) * X) / sympy.sqrt(qe))
    return _gain_cached(scaled, convention, 1.0)


def _sqrt_digits(qe, digits):
    """√(q/m) as a double from the ≥ 25 certain digits of m that expect() already found
    (``Value.digits``), or None when there are none.  25 digits round to the same double as
    a fresh 30-digit evaluation of the whole form, except within 1e-25 of a midpoint."""
    if digits is None or not digits > 0:
        return None
    qe = sympy.Rational(qe)
    with mpmath.workdps(50):
        q = mpmath.mpf(int(qe.p)) / int(qe.q)
        return float(mpmath.sqrt(q / mpmath.mpf(digits)))


def _inv_sqrt(moment, qe, convention, act):
    """√(q / m) with the error propagated: |δg| ≤ g·δm/(2m) to first order."""
    if float(moment) <= max(moment.error, 0.0) or float(moment) <= 0:
        raise VanishcalcError(f"gain of {act.name} ({convention}) is undefined: the moment it divides "
                              f"by is {float(moment):.3g} ± {moment.error:.1e}, not positive")
    g = _sqrt_digits(qe, moment.digits)
    if g is not None:
        # The closed form √(q/m) is built only when .exact is read: SymPy's automatic
        # evaluation of the power costs ~1 ms, and a table or a sweep only reads the float.
        # Rounding ≤ |g|·2⁻⁵³, plus the ≤ 1e-24 relative error of the 25 digits: they can
        # round to the wrong side of a midpoint, which only matters where g is a power of 2.
        return Value(g, make_exact=lambda: sympy.sqrt(qe / moment.exact),
                     error=abs(g) * (2.0 ** -53 + 1e-24), error_kind="bound",
                     method=f"{convention}:{moment.method}")
    if moment.has_exact:
        expr = sympy.sqrt(qe / moment.exact)
        try:
            # strict, as in expect(): a plain evalf of a form that cancels returns noise.
            g = float(expr.evalf(30, strict=True, maxn=4000))
        except (sympy.core.evalf.PrecisionExhausted, TypeError, ValueError):
            g = None
        if g is not None:
            return Value(g, exact=expr, error=abs(g) * 2.0 ** -53, error_kind="bound",
                         method=f"{convention}:{moment.method}")
    g = math.sqrt(float(qe) / float(moment))
    err = g * moment.error / (2 * float(moment)) * 1.01 + g * 2.0 ** -52
    return Value(g, error=err, error_kind=moment.error_kind, method=f"{convention}:{moment.method}")
