"""Named activations: each name maps to an exact SymPy expression in ``x`` and a reference.

The table is data, not code paths: the parser looks names up here, and everything
downstream (expectations, simulation kernels) works from the expression alone.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import sympy
from sympy import Max, Min, Piecewise, Rational, erf, exp, log, pi, sqrt, tanh

# The one symbol every activation is written in.  ``real=True`` lets SymPy simplify
# sqrt(x**2) to Abs(x) and keeps conjugates out of squared expressions.
X = sympy.Symbol("x", real=True)

SELU_ALPHA = sympy.Float("1.6732632423543772848170429916717", 40)
SELU_LAMBDA = sympy.Float("1.0507009873554804934193349852946", 40)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[..., sympy.Expr]   # parameters -> expression in X
    defaults: tuple                    # default parameters (exact SymPy numbers)
    definition: str                    # the formula, as shown in the README table
    reference: str

    def expr(self, *params):
        if len(params) > len(self.defaults):
            raise TypeError(f"{self.name} takes at most {len(self.defaults)} parameter(s)")
        full = tuple(params) + self.defaults[len(params):]
        return self.build(*full)


# Max/Min of fixed arguments that are already in SymPy's canonical form, built without
# evaluation: SymPy's automatic Max/Min evaluation (comparing every pair of arguments
# through the assumption system) cost 2–5 ms per name, a tenth of an uncached gain() of
# the zoo.  tests/test_zoo.py checks each such expression equals its evaluated rebuild.
def _max(*args):
    return Max(*args, evaluate=False)


def _min(*args):
    return Min(*args, evaluate=False)


def _relu6(u):
    return _min(_max(0, u), 6)


def _elu(alpha):
    return Piecewise((X, X > 0), (alpha * (exp(X) - 1), True))


def _sigmoid(u):
    return 1 / (1 + exp(-u))


def _softplus(u):
    return log(1 + exp(u))


_ENTRIES = [
    ZooEntry("linear", lambda: X, (), "x", "identity"),
    ZooEntry("relu", lambda: _max(0, X), (), "max(0, x)", "Nair & Hinton 2010"),
    ZooEntry("leaky_relu", lambda a: Max(X, a * X) if a <= 1 else Min(X, a * X),
             (Rational(1, 100),), "max(x, a·x), a = 0.01", "Maas et al. 2013"),
    ZooEntry("elu", _elu, (sympy.Integer(1),), "x if x > 0 else α(eˣ − 1), α = 1",
             "Clevert et al. 2016, arXiv:1511.07289"),
    ZooEntry("selu", lambda: SELU_LAMBDA * _elu(SELU_ALPHA), (),
             "λ·elu_α(x), α ≈ 1.6732632, λ ≈ 1.0507010", "Klambauer et al. 2017, arXiv:1706.02515 eq. 2"),
    ZooEntry("celu", lambda a: Piecewise((X, X > 0), (a * (exp(X / a) - 1), True)),
             (sympy.Integer(1),), "max(0, x) + min(0, α(e^{x/α} − 1)), α = 1",
             "Barron 2017, arXiv:1704.07483"),
    ZooEntry("gelu", lambda: X / 2 * (1 + erf(X / sqrt(2))), (), "x·Φ(x) = x/2·(1 + erf(x/√2))",
             "Hendrycks & Gimpel 2016, arXiv:1606.08415"),
    ZooEntry("gelu_tanh",
             lambda: X / 2 * (1 + tanh(sqrt(2 / pi) * (X + Rational(44715, 1000000) * X ** 3))), (),
             "x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))", "Hendrycks & Gimpel 2016, arXiv:1606.08415"),
    ZooEntry("silu", lambda: X * _sigmoid(X), (), "x·σ(x)", "Elfwing et al. 2017; Ramachandran et al. 2017 (swish)"),
    ZooEntry("mish", lambda: X * tanh(_softplus(X)), (), "x·tanh(softplus(x))", "Misra 2019, arXiv:1908.08681"),
    ZooEntry("tanh", lambda: tanh(X), (), "tanh(x)", ""),
    ZooEntry("sigmoid", lambda: _sigmoid(X), (), "1/(1 + e⁻ˣ)", ""),
    ZooEntry("hard_sigmoid", lambda: _relu6(X + 3) / 6, (), "relu6(x + 3)/6", "torch.nn.Hardsigmoid"),
    ZooEntry("hardtanh", lambda: _min(_max(X, -1), 1), (), "min(max(x, −1), 1)", "torch.nn.Hardtanh"),
    ZooEntry("relu6", lambda: _relu6(X), (), "min(max(0, x), 6)", "Krizhevsky 2010"),
    ZooEntry("hardswish", lambda: X * _relu6(X + 3) / 6, (), "x·relu6(x + 3)/6",
             "Howard et al. 2019, arXiv:1905.02244"),
    ZooEntry("softplus", lambda: _softplus(X), (), "log(1 + eˣ)", ""),
    ZooEntry("softsign", lambda: X / (1 + sympy.Abs(X)), (), "x/(1 + |x|)", ""),
    ZooEntry("log_sigmoid", lambda: -_softplus(-X), (), "−log(1 + e⁻ˣ)", ""),
    ZooEntry("sin", lambda: sympy.sin(X), (), "sin(x)", "Sitzmann et al. 2020 (SIREN)"),
    ZooEntry("erf", lambda: erf(X), (), "erf(x)", "Williams 1997 (arcsin kernel)"),
    ZooEntry("gaussian", lambda: exp(-X ** 2), (), "exp(−x²)", "RBF unit on a distance pre-activation"),
    ZooEntry("lecun_tanh", lambda: Rational(17159, 10000) * tanh(Rational(2, 3) * X), (),
             "1.7159·tanh(2x/3)", "LeCun et al. 1998, Efficient BackProp §4.4"),
]

ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}
ALIASES = {"swish": "silu", "identity": "linear"}


def lookup(name: str) -> ZooEntry | None:
    """The zoo entry called ``name`` (aliases resolved, any letter case: "ReLU", "GELU"), or None.

    >>> lookup("ReLU").name
    'relu'
    """
    key = name.lower()
    return ZOO.get(ALIASES.get(key, key))


def did_you_mean(name: str, candidates) -> str:
    """" (did you mean 'relu'?)" for the closest of ``candidates`` to ``name``, or "".

    >>> did_you_mean("rleu", names())
    " (did you mean 'relu'?)"
    """
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), by_lower, n=2, cutoff=0.75)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(by_lower[c]) for c in close) + "?)"


def names() -> list[str]:
    """Zoo names in table order."""
    return [e.name for e in _ENTRIES]
