"""User text → SymPy expression, through an AST whitelist.  Nothing is ever ``eval``-ed.

``sympy.sympify`` runs ``eval`` on its input, so a string like
``"__import__('os').system('...')"`` would execute.  Here the string is parsed by
:func:`ast.parse` and every node is checked against a small grammar: numbers, the symbol
``x``, ``+ - * / **``, unary minus, calls to a fixed table of functions and zoo names,
and the constants ``pi`` and ``E``.  The SymPy tree is built node by node from that
whitelist, so no user text reaches Python's evaluator.
"""
from __future__ import annotations

import ast
import functools
import math

import sympy

from . import zoo
from .errors import ParseError

X = zoo.X

MAX_LENGTH = 1000
MAX_NODES = 400
MAX_DEPTH = 40
MAX_ABS_NUMBER = sympy.Integer(10) ** 100
MAX_INT_EXPONENT = 64   # x**64 is fine; 9**9**9 must not make SymPy build a huge integer

FUNCTIONS = {
    "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt,
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "tanh": sympy.tanh, "sinh": sympy.sinh, "cosh": sympy.cosh, "atan": sympy.atan,
    "erf": sympy.erf, "erfc": sympy.erfc,
    "Abs": sympy.Abs, "abs": sympy.Abs,
    "sign": sympy.sign, "Heaviside": sympy.Heaviside,
}
VARIADIC = {"Max": sympy.Max, "max": sympy.Max, "Min": sympy.Min, "min": sympy.Min}
CONSTANTS = {"pi": sympy.pi, "E": sympy.E}


def allowed_names() -> list[str]:
    """Every name the parser accepts, for error messages and docs."""
    return sorted({"x", *FUNCTIONS, *VARIADIC, *CONSTANTS, *zoo.ZOO, *zoo.ALIASES})


def parse(text: str, params=()) -> sympy.Expr:
    """Parse ``text`` into a SymPy expression in the real symbol ``x``.

    A bare zoo name (``"relu"``) means that activation at ``x``; ``"leaky_relu(0.2)"``
    passes parameters; ``"relu(x + 1)"`` applies a zoo activation to an expression.
    Decimal literals become exact rationals (``0.01`` → ``1/100``).

    ``params`` names free parameters (real symbols, see :func:`param_symbol`) that the
    text may use besides ``x``.  Only an API that solves for parameters passes them
    (:func:`vanishcalc.self_normalizing`); everywhere else ``params`` is empty and any
    other name is an error, as before.

    Raises
    ------
    ParseError
        for anything outside the grammar, naming the offending piece.

    Examples
    --------
    >>> parse("exp(-x**2)")
    exp(-x**2)
    >>> parse("leaky_relu(0.2)")
    Max(x/5, x)
    >>> parse("l*tanh(a*x)", params=("a", "l"))
    l*tanh(a*x)
    """
    if not isinstance(text, str):
        raise ParseError(f"expected an expression string, got {type(text).__name__}")
    return _parse_cached(text, _params_iv(params))


def param_symbol(name: str) -> sympy.Symbol:
    """The SymPy symbol a declared parameter ``name`` parses to (real, like ``x``)."""
    return sympy.Symbol(name, real=True)


def _params_iv(params) -> tuple:
    """``params`` as a tuple of distinct names that are not ``x`` nor any name the grammar
    already gives a meaning to (functions, constants, zoo names)."""
    if isinstance(params, str):
        params = (params,)
    try:
        names = tuple(params)
    except TypeError:
        raise ParseError(f"params must be a sequence of names such as ('a', 'l'), "
                         f"got {type(params).__name__}") from None
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or "__" in name:
            raise ParseError(f"parameter name {name!r} is not a plain identifier such as 'a' or 'lam'")
        if name == "x" or name in FUNCTIONS or name in VARIADIC or name in CONSTANTS \
                or zoo.lookup(name) is not None:
            raise ParseError(f"parameter name {name!r} is already taken "
                             f"({'the variable' if name == 'x' else 'a function, constant or zoo name'}); "
                             "choose another, e.g. 'a', 'lam'")
    if len(set(names)) != len(names):
        raise ParseError(f"parameter names repeat in {names}")
    return names


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str, params: tuple = ()) -> sympy.Expr:
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    stripped = text.strip()
    if not stripped:
        raise ParseError("empty expression; write a function of x such as 'tanh(x)'")
    if "__" in stripped:
        raise ParseError("double underscores ('__') are not allowed in expressions")
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        raise ParseError(f"not a valid expression: {exc.msg} in {stripped!r}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise ParseError(f"expression has {nodes} syntax nodes; the limit is {MAX_NODES}")
    builder = _Builder(stripped, params)
    expr = builder.build(tree.body, depth=0)
    return _check_result(expr, stripped, params)


def _check_result(expr, text, params=()):
    expr = sympy.sympify(expr)   # a SymPy object already: sympify only wraps Python numbers here
    if expr.has(sympy.I) or expr.has(sympy.zoo) or expr.has(sympy.nan) or expr.has(sympy.oo) \
            or expr.has(-sympy.oo):
        raise ParseError(f"{text!r} simplifies to {expr}, which is not a finite real function")
    extra = expr.free_symbols - {X} - {param_symbol(p) for p in params}
    if extra:
        raise ParseError(f"unknown symbol(s) {sorted(map(str, extra))}; only x is allowed")
    return expr


class _Builder:
    def __init__(self, text, params=()):
        self.text = text
        self.params = {name: param_symbol(name) for name in params}

    def _piece(self, node):
        seg = ast.get_source_segment(self.text, node)
        return seg if seg is not None else ast.dump(node)

    def build(self, node, depth):
        expr = self._build(node, depth)
        if expr.is_number and expr.has(sympy.I):
            # A complex intermediate ((-1)**0.5) is rejected where it appears, even if a
            # later square would make it real again: the grammar is real arithmetic.
            raise ParseError(f"{self._piece(node)!r} is complex ({expr}); only real values are allowed")
        return expr

    def _build(self, node, depth):
        if depth > MAX_DEPTH:
            raise ParseError(f"expression is nested deeper than {MAX_DEPTH} levels")
        d = depth + 1
        if isinstance(node, ast.Constant):
            return self._number(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            operand = self.build(node.operand, d)
            if isinstance(node.op, ast.USub):
                return -operand
            if isinstance(node.op, ast.UAdd):
                return operand
            raise ParseError(f"operator {type(node.op).__name__} is not allowed in {self._piece(node)!r}")
        if isinstance(node, ast.BinOp):
            return self._binop(node, d)
        if isinstance(node, ast.Call):
            return self._call(node, d)
        kind = type(node).__name__
        what = {"Attribute": "attribute access", "Lambda": "lambda", "Subscript": "subscripting",
                "Compare": "comparison", "BoolOp": "boolean operator", "IfExp": "conditional",
                "List": "list", "Tuple": "tuple", "Dict": "dict", "Set": "set",
                "JoinedStr": "f-string", "NamedExpr": "assignment expression"}.get(kind, kind)
        raise ParseError(f"{what} is not allowed: {self._piece(node)!r}")

    def _number(self, node):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParseError(f"only real numbers are allowed, got {self._piece(node)!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ParseError(f"number {self._piece(node)!r} is not finite")
        literal = self._piece(node).replace("_", "")
        try:
            number = sympy.Rational(literal)   # exact: 0.01 -> 1/100, 1.7159 -> 17159/10000
        except (TypeError, ValueError):
            number = sympy.Rational(value)
        if abs(number) > MAX_ABS_NUMBER:
            raise ParseError(f"number {literal} is larger than 1e100 in magnitude")
        return number

    def _name(self, node):
        name = node.id
        if name == "x":
            return X
        if name in self.params:
            return self.params[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        entry = zoo.lookup(name)
        if entry is not None:
            return entry.expr()
        if name in FUNCTIONS or name in VARIADIC:
            raise ParseError(f"{name!r} is a function: call it, e.g. {name}(x)")
        declared = f"; declared parameters: {', '.join(self.params)} (add {name!r} to params to solve for it)" \
            if self.params else ""
        raise ParseError(f"unknown name {name!r}{zoo.did_you_mean(name, allowed_names())}{declared}; "
                         f"allowed names: {', '.join(allowed_names())}")

    def _binop(self, node, d):
        left = self.build(node.left, d)
        right = self.build(node.right, d)
        op = node.op
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Div):
            if right == 0:
                raise ParseError(f"division by zero in {self._piece(node)!r}")
            return left / right
        if isinstance(op, ast.Pow):
            if right.is_number and not right.is_real:
                raise ParseError(f"complex exponent in {self._piece(node)!r}")
            if right.is_number and abs(right) > MAX_INT_EXPONENT:
                raise ParseError(f"exponent {right} in {self._piece(node)!r} exceeds {MAX_INT_EXPONENT} in magnitude")
            if left.is_number and right.is_number and left != 0 and \
                    abs(right) * abs(math.log10(float(abs(left)))) > 300:
                raise ParseError(f"{self._piece(node)!r} is larger than 1e300 in magnitude")
            if left == 0 and right.is_number and right <= 0:
                raise ParseError(f"0 raised to a non-positive power in {self._piece(node)!r}")
            return left ** right
        raise ParseError(f"operator {type(op).__name__} is not allowed in {self._piece(node)!r}; "
                         "use + - * / **")

    def _call(self, node, d):
        if not isinstance(node.func, ast.Name):
            raise ParseError(f"only calls of named functions are allowed, not {self._piece(node.func)!r}")
        if node.keywords:
            raise ParseError(f"keyword arguments are not allowed in {self._piece(node)!r}")
        name = node.func.id
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise ParseError(f"starred arguments are not allowed in {self._piece(node)!r}")
        args = [self.build(a, d) for a in node.args]
        if name in FUNCTIONS:
            if len(args) != 1:
                raise ParseError(f"{name} takes one argument, got {len(args)} in {self._piece(node)!r}")
            return FUNCTIONS[name](args[0])
        if name in VARIADIC:
            if len(args) < 2:
                raise ParseError(f"{name} takes two or more arguments in {self._piece(node)!r}")
            return VARIADIC[name](*args)
        entry = zoo.lookup(name)
        if entry is not None:
            return self._zoo_call(entry, args, node)
        raise ParseError(f"unknown function {name!r}{zoo.did_you_mean(name, allowed_names())}; allowed: {', '.join(allowed_names())}")

    def _zoo_call(self, entry, args, node):
        # relu(x + 1) applies the activation; leaky_relu(0.2) sets its parameter;
        # leaky_relu(x, 0.2) does both.
        if args and args[0].has(X):
            inner, params = args[0], args[1:]
        else:
            inner, params = X, args
        if any(not p.is_number or not p.is_real for p in params):
            raise ParseError(f"parameters of {entry.name} must be real numbers in {self._piece(node)!r}")
        if len(params) > len(entry.defaults):
            raise ParseError(f"{entry.name} takes {len(entry.defaults)} parameter(s), "
                             f"got {len(params)} in {self._piece(node)!r}")
        if entry.name in ("elu", "celu") and params and params[0] <= 0:
            raise ParseError(f"{entry.name} needs α > 0, got {params[0]}")
        expr = entry.expr(*params)
        return expr if inner is X else expr.subs(X, inner)


parse.cache_clear = _parse_cached.cache_clear   # keep lru_cache's interface on the public name
parse.cache_info = _parse_cached.cache_info
