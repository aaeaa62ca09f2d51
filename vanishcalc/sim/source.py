"""What both backends compute identically, written once as plain Python: φ, φ' and shared ops.

Everything here compiles unchanged with ``numba.njit`` (``sim/cpu/``) and with
``numba.cuda.jit(device=True)`` (``sim/cuda/``): only float arithmetic, ``math.<fn>`` calls,
``abs``/``max``/``min``, loops, indexing and ``if``/``else``.  Nothing here imports numba: each
backend compiles what it needs, with its own options.

* :func:`python_source` prints an :class:`~vanishcalc.activation.Activation` as plain Python
  text defining ``phi(x)`` and ``dphi(x)``;
* :func:`dphi_max`, :func:`saturation_reference`: the |φ'| scale of the saturation statistic,
  the same for both backends;
* :func:`standardize_row`: the BatchNorm op (one unit over the batch) with the exact
  Jacobian-vector product on the tangent; the CPU LayerNorm runs it on the transposed state;
* :func:`q_and_c`: a layer's q and batch-mean pairwise correlation from its two totals.

Printing φ: kinked functions branch on their kinks and use the
smooth formula of each piece (φ' is differentiated piece by piece, so no Heaviside or
DiracDelta object is ever printed).

Numerical care taken while printing:

* common subexpressions are computed once (``sympy.cse``);
* ``log(1 + exp(u))`` is printed as ``max(u, 0) + log1p(exp(-|u|))`` (softplus does not
  overflow), and ``log(1 + v)`` as ``log1p(v)``;
* where a smooth piece has finite limits at ±∞ (sigmoid', mish', ...), an ``inf/inf``
  NaN at a finite, huge argument is replaced by that limit, so overflow of an intermediate
  is not mistaken for a non-finite network;
* NaN inputs propagate (kinked functions test ``x != x`` first), so a non-finite layer is
  never turned finite by a constant piece.

See ``notes/simulation.md`` and ``notes/sim-layout.md``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy

from ..activation import Activation, activation
from ..errors import VanishcalcError
from ..parse import X


# Bump when the printed text or the way it is compiled changes: it is part of the cache key.
_SOURCE_VERSION = "1"

_MATH_FUNCS = {
    sympy.exp: "math.exp", sympy.log: "math.log", sympy.sin: "math.sin", sympy.cos: "math.cos",
    sympy.tan: "math.tan", sympy.tanh: "math.tanh", sympy.sinh: "math.sinh",
    sympy.cosh: "math.cosh", sympy.atan: "math.atan", sympy.erf: "math.erf",
    sympy.erfc: "math.erfc", sympy.asinh: "math.asinh", sympy.acosh: "math.acosh",
    sympy.atanh: "math.atanh", sympy.asin: "math.asin", sympy.acos: "math.acos",
}

_REL_OPS = {sympy.StrictLessThan: "<", sympy.LessThan: "<=", sympy.StrictGreaterThan: ">",
            sympy.GreaterThan: ">=", sympy.Equality: "==", sympy.Unequality: "!="}


class _Printer:
    """A small SymPy → Python-``math`` printer; refuses anything it does not know."""

    def __init__(self, var: str = "x"):
        self.names = {X: var}

    def __call__(self, e) -> str:
        return self.p(e)

    def num(self, value) -> str:
        f = float(value)
        if not math.isfinite(f):
            raise VanishcalcError(f"constant {value} is not a finite float; cannot compile φ")
        return repr(f)

    def p(self, e) -> str:  # noqa: C901 - one dispatch table
        if e in self.names:
            return self.names[e]
        if e.is_Number or e in (sympy.pi, sympy.E, sympy.EulerGamma, sympy.Catalan):
            return "(" + self.num(e) + ")" if float(e) < 0 else self.num(e)
        if e.is_Symbol:
            raise VanishcalcError(f"cannot compile φ: free symbol {e} (only x is allowed)")
        if isinstance(e, sympy.Add):
            terms = [self.p(a) for a in e.args]
            return "(" + " + ".join(terms) + ")"
        if isinstance(e, sympy.Mul):
            num, den = [], []
            for a in e.args:
                if isinstance(a, sympy.Pow) and a.exp.is_Number and a.exp < 0:
                    den.append(a.base ** (-a.exp))
                elif a.is_Rational and not a.is_Integer and a.p == 1:
                    den.append(sympy.Integer(a.q))
                else:
                    num.append(a)
            top = " * ".join(self.p(a) for a in num) if num else "1.0"
            if not den:
                return "(" + top + ")"
            bottom = " * ".join(self.p(a) for a in den)
            return f"({top} / ({bottom}))"
        if isinstance(e, sympy.Pow):
            return self.pow(e.base, e.exp)
        if isinstance(e, sympy.log):
            return self.log(e.args[0])
        for cls, name in _MATH_FUNCS.items():
            if isinstance(e, cls):
                return f"{name}({self.p(e.args[0])})"
        if isinstance(e, sympy.Abs):
            return f"abs({self.p(e.args[0])})"
        if isinstance(e, sympy.sign):
            u = self.p(e.args[0])
            return f"(0.0 if {u} == 0.0 else math.copysign(1.0, {u}))"
        if isinstance(e, sympy.Heaviside):
            u = self.p(e.args[0])
            return f"(1.0 if {u} > 0.0 else (0.0 if {u} < 0.0 else 0.5))"
        if isinstance(e, (sympy.Max, sympy.Min)):
            fn = "max" if isinstance(e, sympy.Max) else "min"
            out = self.p(e.args[0])
            for a in e.args[1:]:
                out = f"{fn}({out}, {self.p(a)})"
            return out
        if isinstance(e, sympy.Piecewise):
            out = None
            for branch, cond in reversed(e.args):
                b = self.p(branch)
                out = b if (out is None or cond == sympy.true) else f"({b} if {self.p(cond)} else {out})"
            return out
        if isinstance(e, sympy.core.relational.Relational):
            return f"({self.p(e.lhs)} {_REL_OPS[type(e)]} {self.p(e.rhs)})"
        if isinstance(e, sympy.And):
            return "(" + " and ".join(self.p(a) for a in e.args) + ")"
        if isinstance(e, sympy.Or):
            return "(" + " or ".join(self.p(a) for a in e.args) + ")"
        if isinstance(e, sympy.Not):
            return f"(not {self.p(e.args[0])})"
        raise VanishcalcError(f"cannot compile {type(e).__name__} in {e} for simulation; "
                              "write φ with exp, log, sqrt, tanh, erf, ... (see vanishcalc.parse)")

    def pow(self, base, exp) -> str:
        if base == sympy.E:
            return f"math.exp({self.p(exp)})"
        b = self.p(base)
        if exp == sympy.Rational(1, 2):
            return f"math.sqrt({b})"
        if exp == -sympy.Rational(1, 2):
            return f"(1.0 / math.sqrt({b}))"
        if exp.is_Integer:
            n = int(exp)
            if n == 2:
                return f"({b} * {b})"
            if n == -1:
                return f"(1.0 / {b})"
            if n < 0:
                return f"(1.0 / {b} ** {-n})"
            return f"({b} ** {n})"
        return f"({b} ** {self.p(exp)})"

    def log(self, arg) -> str:
        if isinstance(arg, sympy.Add) and sympy.Integer(1) in arg.args:
            rest = arg - 1
            if isinstance(rest, sympy.exp):        # softplus: log(1 + e^u), overflow-free
                u = self.p(rest.args[0])
                return f"(max({u}, 0.0) + math.log1p(math.exp(-abs({u}))))"
            return f"math.log1p({self.p(rest)})"
        return f"math.log({self.p(arg)})"


def _print_body(expr, indent: str, printer_name: str = "r") -> list[str]:
    """Statements computing ``expr`` into the local ``r`` (common subexpressions first)."""
    expr = sympy.sympify(expr)
    repl, (reduced,) = sympy.cse(expr, symbols=sympy.numbered_symbols("_t"), optimizations=None)
    pr = _Printer()
    lines = []
    for sym, sub in repl:
        lines.append(f"{indent}{sym} = {pr(sub)}")
        pr.names[sym] = str(sym)
    lines.append(f"{indent}{printer_name} = {pr(reduced)}")
    return lines


def _tail_limit(expr, sign: int):
    """lim φ(x) as x → sign·∞ when it is finite and reached by |x| = 1e3 (else None).

    Evaluated in fixed 30-digit mpmath arithmetic at |x| = 1e3 and 1e5, where float64 intermediates
    (e^x) would overflow; used only to replace an ``inf/inf`` NaN at a huge finite argument.
    """
    if not expr.has(X):
        return None
    import mpmath
    try:
        f = sympy.lambdify(X, expr, modules="mpmath")
        with mpmath.workdps(30):          # fixed precision: no adaptive evalf blow-up
            a = complex(f(mpmath.mpf(sign * 1000)))
            b = complex(f(mpmath.mpf(sign * 100000)))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, NameError):
        return None
    if abs(a.imag) > 0 or abs(b.imag) > 0 or not (math.isfinite(a.real) and math.isfinite(b.real)):
        return None
    if abs(a.real - b.real) <= 1e-12 * max(1.0, abs(b.real)):
        return 0.0 if abs(b.real) < 1e-300 else b.real
    return None


def _function_source(name: str, pieces) -> list[str]:
    """``def name(x)`` branching on the pieces ``[(lo, hi, expr), ...]``."""
    lines = [f"def {name}(x):"]
    if len(pieces) > 1:
        lines.append("    if x != x:")
        lines.append("        return x")
    for i, (lo, hi, expr) in enumerate(pieces):
        if len(pieces) == 1:
            head, ind = None, "    "
        elif i == 0:
            head, ind = f"    if x < {hi!r}:", "        "
        elif i < len(pieces) - 1:
            head, ind = f"    elif x < {hi!r}:", "        "
        else:
            head, ind = "    else:", "        "
        if head:
            lines.append(head)
        lines.extend(_print_body(expr, ind))
        guards = []
        if lo == -math.inf:
            lim = _tail_limit(expr, -1)
            if lim is not None:
                guards.append(("x < 0.0", lim))
        if hi == math.inf:
            lim = _tail_limit(expr, +1)
            if lim is not None:
                guards.append(("x > 0.0", lim))
        if guards:
            lines.append(f"{ind}if r != r and x == x:")
            for cond, lim in guards:
                lines.append(f"{ind}    if {cond}:")
                lines.append(f"{ind}        r = {lim!r}")
        lines.append(f"{ind}return r")
    return lines


@functools.lru_cache(maxsize=256)
def _source_for_key(key: str, act: Activation) -> str:
    phi_pieces = [(p.lo, p.hi, p.expr) for p in act.pieces]
    dphi_pieces = [(p.lo, p.hi, sympy.diff(p.expr, X)) for p in act.pieces]
    head = [f"# vanishcalc {_SOURCE_VERSION}: phi = {act.name}",
            f"# phi(x) = {sympy.sstr(act.expr)}",
            "import math", ""]
    return "\n".join(head + _function_source("phi", phi_pieces) + [""]
                     + _function_source("dphi", dphi_pieces)) + "\n"


def python_source(act) -> str:
    """Python source defining ``phi(x)`` and ``dphi(x)`` for the activation ``act``.

    The text uses only ``import math``, ``math.<fn>``, ``abs``/``max``/``min``, float
    arithmetic and ``if``/``else``, so it compiles unchanged with ``numba.njit`` and with
    ``numba.cuda.jit(device=True)``.  φ' is the derivative of each smooth piece; at a kink
    the right-hand piece is used (a measure-zero choice).

    Parameters
    ----------
    act : Activation or str or sympy.Expr
        φ; anything :func:`vanishcalc.activation.activation` accepts.

    Returns
    -------
    str

    Raises
    ------
    VanishcalcError
        if φ contains a function with no ``math`` counterpart.

    Examples
    --------
    >>> src = python_source("relu")
    >>> ns = {}; exec(src, ns); ns["phi"](-2.0), ns["dphi"](3.0)
    (0.0, 1.0)
    """
    act = activation(act)
    if act.deltas:
        raise VanishcalcError(f"φ = {act.name} has Dirac masses (a jump); it cannot be simulated "
                              "through its derivative")
    return _source_for_key(act.key, act)


# ---------------------------------------------------------------- max |φ'|

_DENSE = np.sinh(np.linspace(-12.0, 12.0, 48001))


@functools.lru_cache(maxsize=256)
def _dphi_max_for_key(key: str, act: Activation, bound: float = math.inf) -> float:
    ns: dict = {}
    exec(compile(python_source(act), "<dphi>", "exec"), ns)
    dphi = ns["dphi"]
    pts = [_DENSE]
    for k in act.kinks:
        eps = 1e-9 * max(1.0, abs(k))
        pts.append(np.array([k - eps, k, k + eps]))
    xs = np.concatenate(pts)
    xs = xs[np.abs(xs) <= bound]
    best = 0.0
    for xv in xs.tolist():
        try:
            v = abs(dphi(xv))
        except (OverflowError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(v) and v > best:
            best = v
    return best


def dphi_max(act) -> float:
    """max |φ'(x)| over the real line, on a dense sinh-spaced grid (|x| ≤ 8e4) plus kinks.

    Used for the saturation threshold ``|φ'| < 1e-3 · max|φ'|``.  A numerical maximum:
    for φ' unbounded on the grid's range (x³) it is the largest value met there.

    Examples
    --------
    >>> dphi_max("tanh")
    1.0
    >>> dphi_max("relu")
    1.0
    """
    act = activation(act)
    return _dphi_max_for_key(act.key, act)


def saturation_reference(act) -> float:
    """The |φ'| scale against which a unit counts as saturated (|φ'(h)| < 1e-3 × this).

    ``dphi_max(act)`` when φ' is bounded; when φ' still grows in the far tail (exp(x),
    x³: the maximum over |x| ≤ 8e4 exceeds that over |x| ≤ 50), the max over |x| ≤ 3,
    the bulk of a unit Gaussian, since "saturated relative to an infinite slope" means
    nothing.
    """
    act = activation(act)
    full = dphi_max(act)
    near = _dphi_max_for_key(act.key, act, 50.0)
    if full > near * (1 + 1e-9):
        return _dphi_max_for_key(act.key, act, 3.0)
    return full


# ---------------------------------------------------------------- shared ops

def standardize_row(X, V, i, n, gamma, beta):
    """Standardize row ``i`` of X over its ``n`` columns (population std), in place:
    ``X ← γu + β`` with ``u = (x − mean)/std``, and the tangent row of V by the exact Jacobian
    ``V ← γ (P v − u·⟨u, P v⟩/n)/std`` (P removes the mean).  False, with the row untouched,
    if the std is not > 0 (0 or NaN): the caller marks the net non-finite.

    notes/normalization.md ("Simulation").  The CPU backend inlines this function into
    ``cpu/ops.py``'s ``standardize_rows``, and numba's on-disk cache is keyed on that file:
    after editing this function, edit (touch) ``cpu/ops.py`` too, or clear the cache.
    """
    m = 0.0
    mv = 0.0
    for b in range(n):
        m += X[i, b]
        mv += V[i, b]
    m /= n
    mv /= n
    s2 = 0.0
    for b in range(n):
        d = X[i, b] - m
        s2 += d * d
    s = math.sqrt(s2 / n)
    if not s > 0.0:
        return False
    uv = 0.0
    for b in range(n):
        uv += (X[i, b] - m) / s * (V[i, b] - mv)
    uv /= n
    for b in range(n):
        u = (X[i, b] - m) / s
        V[i, b] = gamma * ((V[i, b] - mv) - u * uv) / s
        X[i, b] = gamma * u + beta
    return True


def q_and_c(tot, ssq, width, batch):
    """q = Σx²/(N·B) and the mean correlation over the B(B−1) ordered pairs of distinct
    inputs, (Σ_i(Σ_a x_ia)² − Σx²)/(B(B−1))/(N·q), from ``tot`` = Σx² and ``ssq`` =
    Σ_i(Σ_a x_ia)²; c is NaN where q is not > 0.  notes/normalization.md ("Simulation")."""
    q = tot / (width * batch)
    if q > 0.0:
        return q, (ssq - tot) / (batch * (batch - 1.0)) / (width * q)
    return q, math.nan


__all__ = ["python_source", "dphi_max", "saturation_reference", "standardize_row", "q_and_c"]
