"""``Activation``: one nonlinearity φ, as an exact expression split into smooth pieces.

Everything downstream needs the same facts about φ: its SymPy expression, the points
where it is not smooth (kinks of Max/Min/Abs/Heaviside/Piecewise), the smooth formula on
each interval between kinks, jumps of its value at the kinks (which become Dirac masses
in its derivative), and fast vectorized callables.  They are computed once here and
cached on the canonical form of the expression.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import sympy
from sympy import Piecewise

from . import zoo
from .errors import ComplexValuedError, ParseError, SingularityError, VanishcalcError
from .parse import X, parse


@dataclass(frozen=True)
class Piece:
    """φ restricted to the open interval (lo, hi): a smooth expression and its numpy callable."""

    lo: float
    hi: float
    lo_exact: sympy.Expr
    hi_exact: sympy.Expr
    expr: sympy.Expr
    # A ready vectorized form of ``expr`` (Activation.power raises the parent's values),
    # which spares a sympy.lambdify (~0.4 ms, a tenth of an uncached gain()).
    vectorized: object = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def numpy(self):
        return self.vectorized if self.vectorized is not None else _lambdify(self.expr)


class Activation:
    """A nonlinearity φ(x) with everything vanishcalc needs to integrate and compile it.

    Build one with :func:`activation`; do not call the constructor with user text.

    Attributes
    ----------
    expr : sympy.Expr
        φ as an expression in the real symbol ``x``.
    name : str
        The zoo name or the text the user typed.
    kinks : tuple of float
        Sorted real points where φ or a derivative changes formula.
    pieces : tuple of Piece
        The smooth formula on each interval between consecutive kinks.
    deltas : tuple of (float, sympy.Expr)
        Dirac masses (location, weight) — nonzero only for derivatives of functions with jumps.
    """

    def __init__(self, expr, name=None, *, pieces=None, kinks_exact=None, deltas=(), check=True):
        self.expr = expr
        self.name = name or sympy.sstr(expr)
        self.key = sympy.srepr(expr) + ("|deltas:" + repr(deltas) if deltas else "")
        if pieces is None:
            kinks_exact = _kinks(expr)
            pieces = _split(expr, kinks_exact)
        self.kinks_exact = tuple(kinks_exact)
        self.kinks = tuple(float(k) for k in self.kinks_exact)
        self.pieces = tuple(pieces)
        self.deltas = tuple(deltas)
        if check:
            _check_real_and_finite(self)

    def pieces_beside_zero(self):
        """(the piece on x < 0 next to 0, the piece on x > 0 next to 0): one piece twice
        unless 0 is a kink (the one-sided Taylor series and slopes at 0 read these)."""
        left = right = None
        for piece in self.pieces:
            if piece.lo < 0.0 < piece.hi:
                left = right = piece
            elif piece.hi == 0.0:
                left = piece
            elif piece.lo == 0.0:
                right = piece
        return left, right

    # ---- derived activations (same kinks, formulas transformed piece by piece) ----
    @functools.lru_cache(maxsize=None)
    def derivative(self, n: int = 1) -> "Activation":
        """φ⁽ⁿ⁾ as an Activation; jumps of φ⁽ⁿ⁻¹⁾ at kinks become ``deltas``."""
        if n == 0:
            return self
        prev = self.derivative(n - 1) if n > 1 else self
        if prev.deltas:
            raise NotImplementedError("derivatives of Dirac masses are not supported; "
                                      "use a Stein identity instead")
        pieces = tuple(Piece(p.lo, p.hi, p.lo_exact, p.hi_exact, sympy.diff(p.expr, X))
                       for p in prev.pieces)
        deltas = []
        for i, k in enumerate(prev.kinks_exact):
            left = prev.pieces[i].expr.subs(X, k)
            right = prev.pieces[i + 1].expr.subs(X, k)
            jump = sympy.simplify(right - left)
            if jump != 0:
                deltas.append((k, jump))
        return Activation(sympy.diff(prev.expr, X), f"d{n}({self.name})", pieces=pieces,
                          kinks_exact=prev.kinks_exact, deltas=tuple(deltas), check=False)

    def map(self, fn, name, values=None) -> "Activation":
        """g(φ(x)) piece by piece (e.g. ``lambda e: e**2``), keeping the kinks.  ``values``,
        the same g on numpy arrays, makes each piece's numpy form g of φ's own values instead
        of compiling the new expression (a sympy.lambdify, ~0.4 ms)."""
        if self.deltas:
            raise NotImplementedError("cannot transform a function with Dirac masses")

        def composed(parent):
            def f(x):
                y = parent.numpy(x)
                with np.errstate(all="ignore"):     # as _lambdify: overflow → inf, judged later
                    return values(y)
            return f

        pieces = tuple(Piece(p.lo, p.hi, p.lo_exact, p.hi_exact, fn(p.expr),
                             None if values is None else composed(p)) for p in self.pieces)
        return Activation(fn(self.expr), name, pieces=pieces, kinks_exact=self.kinks_exact,
                          check=False)

    def power(self, k: int, name=None) -> "Activation":
        """φ(x)**k piece by piece, its numpy form φ's own values to the k-th power."""
        return self.map(lambda e: e ** k, name or f"({self.name})^{k}", lambda y: y ** k)

    def affine(self, scale, shift, *, factor=1, offset=0, name=None) -> "Activation":
        """factor·φ(scale·x + shift) + offset, for exact numbers with scale > 0: kinks
        (k − shift)/scale and pieces substituted, without finding the kinks or checking
        the domain again (an affine map of a real, finite φ is one).  The BN rate's
        ψ(z) = φ(γz + β), ψ' = γ·φ'(γz + β) and ψ − φ(β) were 15 ms each as new Activations
        with γ a 17-digit rational."""
        if self.deltas:
            raise NotImplementedError("cannot transform a function with Dirac masses")
        if not scale > 0:
            raise ValueError(f"affine: scale must be > 0, got {scale}")
        arg = scale * X + shift

        def moved(k):
            return k if k in (sympy.oo, -sympy.oo) else (k - shift) / scale

        def form(e):
            return factor * e.subs(X, arg) + offset
        kinks = [moved(k) for k in self.kinks_exact]
        pieces = [Piece(float(moved(p.lo_exact)), float(moved(p.hi_exact)), moved(p.lo_exact),
                        moved(p.hi_exact), form(p.expr)) for p in self.pieces]
        expr = form(self.expr)
        return Activation(expr, name or sympy.sstr(expr), pieces=pieces, kinks_exact=kinks,
                          check=False)

    def times(self, other: "Activation", name) -> "Activation":
        """φ(x)·ψ(x), split at the union of both functions' kinks."""
        if self.deltas or other.deltas:
            raise NotImplementedError("cannot multiply functions with Dirac masses")
        kinks = sorted(set(self.kinks_exact) | set(other.kinks_exact), key=float)
        expr = self.expr * other.expr
        pieces = []
        for lo, hi in _intervals(kinks):
            a = _piece_at(self, lo, hi)
            b = _piece_at(other, lo, hi)
            pieces.append(Piece(float(lo), float(hi), lo, hi, a * b))
        return Activation(expr, name, pieces=pieces, kinks_exact=kinks, check=False)

    # ---- numerics ----
    @functools.cached_property
    def numpy(self):
        """Vectorized φ on float arrays: each x goes to its piece by ``searchsorted`` on the kinks
        (a point exactly at a kink takes the piece on its right)."""
        if len(self.pieces) == 1:
            return self.pieces[0].numpy
        pieces = self.pieces
        kinks = np.asarray(self.kinks)

        def f(x):
            x = np.asarray(x, dtype=float)
            idx = np.searchsorted(kinks, x, side="right")
            out = np.empty_like(x)
            for i, p in enumerate(pieces):
                m = idx == i
                if np.any(m):
                    out[m] = p.numpy(x[m])
            return out
        return f

    @property
    def is_smooth(self):
        return not self.kinks

    def __repr__(self):
        from .value import ROUNDED_NOTE, closed_form_text
        text, rounded = closed_form_text(self.expr)     # selu's 31-digit λ, α → 8 digits
        note = f"; {ROUNDED_NOTE}, in full in .expr" if rounded else ""
        return f"Activation({self.name!r}: {text}{note})"

    def __eq__(self, other):
        return isinstance(other, Activation) and other.key == self.key

    def __hash__(self):
        return hash(self.key)


def activation(spec) -> Activation:
    """The :class:`Activation` for a zoo name, an expression string in ``x``, or a SymPy expression.

    Raises
    ------
    ParseError
        if a string is not in the safe grammar, or a SymPy expression has other free symbols.
    ComplexValuedError, SingularityError
        if φ is complex-valued or infinite somewhere on the real line.

    Examples
    --------
    >>> activation("relu").kinks
    (0.0,)
    >>> activation("hardtanh").pieces[1].expr
    x
    """
    if isinstance(spec, Activation):
        return spec
    to_activation = getattr(spec, "__vanishcalc_activation__", None)
    if to_activation is not None:          # a result that stands for a φ (vanishcalc.transform)
        return to_activation()
    if isinstance(spec, str):
        name = spec.strip()
        entry = zoo.lookup(name)
        return _activation_from_expr(parse(name), entry.name if entry else name)
    if isinstance(spec, sympy.Basic):
        free = spec.free_symbols
        if len(free) > 1:
            raise ParseError(f"expression has several free symbols {sorted(map(str, free))}; use one")
        if free:
            (sym,) = free
            spec = spec.subs(sym, X)
        if spec.has(sympy.I):
            raise ComplexValuedError(f"{spec} is complex-valued")
        return _activation_from_expr(spec, sympy.sstr(spec))
    raise ParseError(f"cannot make an activation from {type(spec).__name__}; "
                     "pass a zoo name, an expression string in x, or a SymPy expression")


@functools.lru_cache(maxsize=512)
def _activation_from_expr(expr, name):
    try:
        return Activation(expr, name)
    except VanishcalcError:
        raise
    except (TypeError, ValueError, KeyError, ArithmeticError, NotImplementedError,
            RecursionError) as exc:
        # SymPy/NumPy failing on a strange expression (a complex value while choosing a
        # branch, an unsupported function): report it as bad input, naming φ and the cause.
        raise ParseError(f"cannot analyze φ = {name}: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- splitting at kinks


_BRANCHING = (sympy.Max, sympy.Min, sympy.Abs, sympy.sign, sympy.Heaviside, Piecewise)


def _kinks(expr) -> list:
    """Exact real points where a Max/Min/Abs/sign/Heaviside/Piecewise branch changes.

    Boundaries may themselves be piecewise (Min(6, Max(0, x + 3))): their own kinks are
    found first, then each smooth stretch of the boundary is solved on its interval.
    """
    points = set()
    for boundary in _boundaries(expr):
        inner = _kinks(boundary) if boundary.has(*_BRANCHING) else []
        for lo, hi in _intervals(inner):
            smooth = _restrict(boundary, _midpoint(lo, hi))
            for r in _real_roots(smooth):
                if (lo == -sympy.oo or r >= lo) and (hi == sympy.oo or r <= hi):
                    points.add(r)
    # One kink per location: 1/2 and 0.5 (or two forms of √2) are the same point, and
    # keeping both would make a piece of zero length.
    unique = {}
    for r in sorted(points, key=float):
        unique.setdefault(float(r), r)
    return list(unique.values())


def _boundaries(expr):
    for sub in sympy.preorder_traversal(expr):
        if isinstance(sub, (sympy.Max, sympy.Min)):
            args = sub.args
            for i in range(len(args)):
                for j in range(i + 1, len(args)):
                    yield args[i] - args[j]
        elif isinstance(sub, (sympy.Abs, sympy.sign, sympy.Heaviside)):
            yield sub.args[0]
        elif isinstance(sub, Piecewise):
            for _, cond in sub.args:
                for rel in cond.atoms(sympy.Rel):
                    yield rel.lhs - rel.rhs


def _real_roots(boundary):
    """Real zeros of a condition's boundary: exact for polynomials, refused otherwise."""
    boundary = sympy.expand(boundary)
    if not boundary.has(X):
        return []
    try:
        poly = sympy.Poly(boundary, X)
    except sympy.PolynomialError:
        poly = None
    if poly is not None and poly.degree() == 1:     # the common case, x - k: no root isolation
        a, b = poly.all_coeffs()
        return [-b / a]
    if poly is not None and poly.degree() <= 8:
        return list(sympy.real_roots(poly))
    if poly is None:
        # A transcendental condition such as SELU's Min(a*(exp(x) - 1), 0): solveset answers
        # the invertible ones exactly and at once ({0}, {atanh(1/2)}); a periodic (sin) or
        # implicit (exp(x) - x - 2) one comes back as an ImageSet/ConditionSet and is refused.
        roots = sympy.solveset(boundary, X, domain=sympy.S.Reals)
        if isinstance(roots, sympy.FiniteSet) and len(roots) <= 8 and all(
                r.is_real and r.is_finite for r in roots):
            return list(roots)
    raise ParseError(f"cannot locate the kinks of the condition {boundary} = 0: supported are "
                     "polynomial conditions (degree ≤ 8) and conditions SymPy solves in closed "
                     "form (exp(x) - 1, tanh(x) - 1/2) inside Max/Min/Abs/sign/Heaviside; "
                     "rewrite the condition as one of those")


def _intervals(kinks):
    edges = [-sympy.oo, *kinks, sympy.oo]
    return list(zip(edges[:-1], edges[1:]))


def _midpoint(lo, hi):
    if lo == -sympy.oo and hi == sympy.oo:
        return sympy.Integer(0)
    if lo == -sympy.oo:
        return hi - 1
    if hi == sympy.oo:
        return lo + 1
    return (lo + hi) / 2


def _restrict(expr, point):
    """Replace every Max/Min/Abs/sign/Heaviside/Piecewise in ``expr`` by its branch at ``point``.

    Works bottom-up on the tree, choosing branches by value at the point, which is much
    faster than rewriting to Piecewise and folding.
    """
    if not expr.has(*_BRANCHING):
        return expr

    def at(e):
        return float(e.subs(X, point)) if e.has(X) else float(e)

    def pick(e):
        if isinstance(e, sympy.Max):
            return max(e.args, key=at)
        if isinstance(e, sympy.Min):
            return min(e.args, key=at)
        if isinstance(e, sympy.Abs):
            u = e.args[0]
            return u if at(u) >= 0 else -u
        if isinstance(e, sympy.sign):
            v = at(e.args[0])
            return sympy.Integer((v > 0) - (v < 0))
        if isinstance(e, sympy.Heaviside):
            v = at(e.args[0])
            return sympy.Integer(1) if v > 0 else sympy.Integer(0) if v < 0 else sympy.Rational(1, 2)
        for branch, cond in e.args:   # Piecewise
            if cond == sympy.true or bool(cond.subs(X, point)):
                return branch
        raise ParseError(f"no branch of {e} applies at x = {point}")

    return expr.replace(lambda e: isinstance(e, _BRANCHING), pick)


def _split(expr, kinks):
    pieces = []
    for lo, hi in _intervals(kinks):
        smooth = _restrict(expr, _midpoint(lo, hi))
        if smooth.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise SingularityError(f"φ = {sympy.sstr(expr)} is infinite or undefined for x in "
                                   f"({lo}, {hi}): there it is {sympy.sstr(smooth)}")
        pieces.append(Piece(float(lo), float(hi), lo, hi, smooth))
    return pieces


def _piece_at(act, lo, hi):
    mid = float(_midpoint(lo, hi))
    for p in act.pieces:
        if p.lo <= mid <= p.hi:
            return p.expr
    raise AssertionError("pieces do not cover the real line")  # internal invariant


# ---------------------------------------------------------------- numeric callables


#: At most this many non-finite points per call are re-evaluated in mpmath (see _lambdify).
MP_REPAIR_POINTS = 512


def _cancellation_free(expr):
    """``expr`` with log(1 + u) written log1p(u) and exp(u) − 1 written expm1(u), for numpy.

    In doubles 1 + u loses u's digits when |u| is small: softplus and mish at x = −30
    (log(1 + e^{−30})) came out 1e-3 off relatively, where log1p is exact to an ulp.  Only
    these two literal patterns are rewritten — no algebra (SymPy's own log1p optimizer turns
    log(1 + e^{−x}) into x − log1p(e^{x}), which cancels catastrophically for large x)."""
    from sympy.codegen.cfunctions import expm1, log1p

    def one_plus(e):
        return e.is_Add and any(a == 1 for a in e.args)

    expr = expr.replace(lambda e: isinstance(e, sympy.log) and one_plus(e.args[0]),
                        lambda e: log1p(e.args[0] - 1))
    return expr.replace(
        lambda e: e.is_Add and len(e.args) == 2 and sympy.S.NegativeOne in e.args
        and any(isinstance(a, sympy.exp) for a in e.args),
        lambda e: expm1(next(a for a in e.args if isinstance(a, sympy.exp)).args[0]))


def _lambdify(expr):
    """Vectorized numpy callable of ``expr``, with overflow in intermediate terms repaired.

    Doubles overflow in terms whose quotient is finite: silu'(x) = σ(x)(1 + x(1 − σ(x))) as
    SymPy writes it holds x·e^{−x}/(1 + e^{−x})², which is inf/inf = NaN at x = −1810 (a q of
    ~1e4 reaches it) although the value is 1.6e-783 → 0.  Points where the double result is
    not finite at a finite x are evaluated again in mpmath (no exponent range limit); at most
    MP_REPAIR_POINTS per call, so an integrand that truly diverges over a whole tail stays
    inf/NaN (and is reported as such by the caller) without a slow loop."""
    import scipy.special as sc
    f = sympy.lambdify(X, _cancellation_free(expr),
                       modules=[{"erf": sc.erf, "erfc": sc.erfc}, "numpy"])
    if not expr.has(X):
        const = float(expr)
        return lambda x: np.full(np.shape(x), const, dtype=float)
    mp_f = []

    def evaluate(x):
        with np.errstate(all="ignore"):
            y = f(x)
        y = np.asarray(y)
        if y.dtype.kind != "f" or np.iscomplexobj(x):
            return y                 # complex arguments (Cauchy-integral series): as computed
        bad = ~np.isfinite(y)
        if not bad.any():
            return y
        xs = np.broadcast_to(np.asarray(x, dtype=float), y.shape)
        idx = np.flatnonzero(bad & np.isfinite(xs))
        if idx.size == 0 or idx.size > MP_REPAIR_POINTS:
            return y
        y = np.array(y, dtype=float)
        # First the same formula in extended precision (x86: 64-bit mantissa, exponents to
        # ±4932): e^x at x = 1810 is a number there, and it costs one numpy call instead of
        # one mpmath evaluation per point (mish' at q = 1e6 repaired ~500 points per call).
        if np.finfo(np.longdouble).maxexp > np.finfo(float).maxexp:
            try:
                with np.errstate(all="ignore"):
                    wide = np.asarray(f(xs.flat[idx].astype(np.longdouble)))
            except (TypeError, ValueError, AttributeError, OverflowError):
                wide = np.empty(0)       # a function without a long-double loop: mpmath
            if wide.shape == idx.shape and wide.dtype.kind == "f":
                ok = np.isfinite(wide)
                with np.errstate(over="ignore", under="ignore"):   # beyond a double: ±inf, 0
                    y.flat[idx[ok]] = wide[ok].astype(float)
                idx = idx[~ok]
                if idx.size == 0:
                    return y
        if not mp_f:
            import mpmath
            mp_f.append(sympy.lambdify(X, expr, modules="mpmath"))
            mp_f.append(mpmath)
        g, mpmath = mp_f
        with mpmath.workdps(30):
            for i in idx:
                try:
                    v = g(mpmath.mpf(float(xs.flat[i])))
                    y.flat[i] = float(v) if mpmath.im(v) == 0 else math.nan
                except (ValueError, ZeroDivisionError, OverflowError, TypeError):
                    pass                                   # stays non-finite
        return y

    return evaluate


# ---------------------------------------------------------------- domain checks

# A grid that is dense near 0 and reaches |x| ≈ 8e4: x = sinh(t), t ∈ [-12, 12].
_GRID = np.sinh(np.linspace(-12.0, 12.0, 24001))


def _check_real_and_finite(act: Activation):
    """Raise if φ is complex-valued or singular anywhere on the real line."""
    expr = act.expr
    for sub in sympy.preorder_traversal(expr):
        if isinstance(sub, sympy.log):
            _require_positive(sub.args[0], f"log({sub.args[0]})", act, strict=True)
        elif isinstance(sub, sympy.Pow):
            base, e = sub.args
            if not base.has(X):
                continue
            if e.is_number and e.is_integer and e > 0:
                continue
            if e.is_number and e.is_negative:
                if e.is_integer:
                    _require_nonzero(base, sympy.sstr(sub), act)
                else:
                    _require_positive(base, sympy.sstr(sub), act, strict=True)
            elif e.is_number:
                _require_positive(base, sympy.sstr(sub), act, strict=False)
            else:
                _require_positive(base, sympy.sstr(sub), act, strict=True)
        elif isinstance(sub, sympy.tan):
            _require_nonzero(sympy.cos(sub.args[0]), sympy.sstr(sub), act)
    with np.errstate(all="ignore"):
        values = act.numpy(_GRID)
    # NaN (undefined) near the origin is an error here; ±inf is overflow of a finite but
    # fast-growing φ (exp(exp(exp(x))) at x = 2), judged by the expectation's tail analysis.
    bad = np.isnan(values) & (np.abs(_GRID) < 5)
    if np.any(bad):
        where = _GRID[bad][0]
        raise SingularityError(f"φ = {act.name} is undefined (NaN) near x = {where:.6g}")


def _values(expr):
    with np.errstate(all="ignore"):
        return np.asarray(_lambdify(expr)(_GRID), dtype=float) * np.ones_like(_GRID)


def _surely_positive(e) -> bool:
    """A sufficient, purely structural test that ``e`` > 0 wherever it is finite: positive
    numbers, exp and cosh of anything, Abs or even powers plus a positive constant, sums
    and products of such (1 + e⁻ˣ, 1 + |x|, 1 + x²).  Subexpressions that are themselves
    undefined somewhere are caught by their own check in _check_real_and_finite, so exp(u)
    counts as positive here.  Spares the grid and root search for sigmoid, softplus, mish."""
    if e.is_Number:
        return e.is_positive is True        # not ``e > 0``: NaN raises on comparison
    if isinstance(e, (sympy.exp, sympy.cosh)):
        return True
    if e.is_Add:
        return all(_surely_nonnegative(a) for a in e.args) and any(_surely_positive(a) for a in e.args)
    if e.is_Mul:
        return all(_surely_positive(a) for a in e.args)
    if e.is_Pow:
        return _surely_positive(e.base) and (e.exp.is_Number or not e.exp.has(X))
    return False


def _surely_nonnegative(e) -> bool:
    if _surely_positive(e) or isinstance(e, sympy.Abs):
        return True
    if e.is_Number:
        return e.is_nonnegative is True
    if e.is_Pow and e.exp.is_Integer and int(e.exp) % 2 == 0:
        return True
    if e.is_Mul:
        return all(_surely_nonnegative(a) for a in e.args)
    return False


def _require_positive(base, where, act, strict):
    if _surely_positive(base):
        return
    v = _values(base)
    neg = v < 0
    if np.any(neg):
        x0 = _GRID[neg][np.argmin(np.abs(_GRID[neg]))]
        raise ComplexValuedError(f"φ = {act.name} is complex-valued: {where} has a negative "
                                 f"argument at x = {x0:.6g}; φ must be real on the whole real line")
    if strict:
        _require_nonzero(base, where, act)


def _require_nonzero(base, where, act):
    """Fail if ``base`` has a real zero: sign changes on the grid, or a touching minimum."""
    if not base.has(X):
        if base == 0:
            raise SingularityError(f"φ = {act.name} is singular: {where} divides by zero")
        return
    if _surely_positive(base):
        return
    try:
        poly = sympy.Poly(base, X)
    except sympy.PolynomialError:
        poly = None
    if poly is not None and poly.degree() <= 8:
        roots = sympy.real_roots(poly)
        if roots:
            raise SingularityError(f"φ = {act.name} is singular at x = {sympy.sstr(roots[0])}: "
                                   f"{where} is infinite there")
        return
    f = _lambdify(base)
    v = _values(base)
    finite = np.isfinite(v)
    a = np.where(finite, np.abs(v), np.inf)
    # Strict sign changes, and strict isolated minima of |base| (touching zeros such as
    # sin(x)**2): a function that merely underflows to 0 in a tail (1 - tanh(x)) has neither.
    sign_change = np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0)[0]
    sign_change = sign_change[np.argsort(np.abs(_GRID[sign_change]))]   # nearest the origin first
    local_min = np.nonzero((a[1:-1] < a[:-2]) & (a[1:-1] < a[2:]))[0] + 1
    local_min = local_min[np.argsort(a[local_min])][:60]
    if not len(sign_change) and not len(local_min):
        return
    from scipy.optimize import brentq, minimize_scalar    # 0.1 s on first import: only here
    if len(sign_change):
        # A continuous base that changes sign has a zero; one that jumps sign has a pole.
        # Either way the power is infinite there.
        i = sign_change[0]
        with np.errstate(all="ignore"):
            x0 = brentq(lambda t: float(f(t)), _GRID[i], _GRID[i + 1], xtol=1e-15)
        raise SingularityError(f"φ = {act.name} is singular near x = {x0:.6g}: "
                               f"{where} is infinite there")
    for i in local_min:
        lo, hi = _GRID[max(i - 1, 0)], _GRID[min(i + 1, len(_GRID) - 1)]
        near = a[max(i - 5, 0): i + 6]
        local_scale = np.max(near[np.isfinite(near)], initial=1.0)
        with np.errstate(all="ignore"):
            res = minimize_scalar(lambda t: abs(float(f(t))), bounds=(lo, hi), method="bounded",
                                  options={"xatol": 1e-15 * max(1.0, abs(lo))})
        # A touching zero (sin(x)**2) drives |base| to rounding level; a dip does not.
        if res.fun <= 1e-9 * local_scale or math.isnan(res.fun):
            raise SingularityError(f"φ = {act.name} is singular near x = {res.x:.6g}: "
                                   f"{where} is infinite there")
