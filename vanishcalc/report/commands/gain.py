"""``vanishcalc gain EXPR``: print the closed form (when found) and the value of a gain."""
from __future__ import annotations

from . import count, number

EXAMPLES = """\
examples:
  vanishcalc gain relu                        # sqrt(2) ≈ 1.4142135623730951
  vanishcalc gain "exp(-x**2)" --digits 30
  vanishcalc gain tanh --convention std --q 2
  vanishcalc gain '-x**3'                     # an expression may start with '-'"""


def add_arguments(parser):
    parser.add_argument("expr", metavar="PHI",
                        help="zoo name (see 'vanishcalc zoo') or expression in x, e.g. 'exp(-x**2)'")
    parser.add_argument("--convention", default="second_moment",
                        choices=["second_moment", "std", "backward"],
                        help="second_moment (default; torch.nn.init/Kaiming: weight std = gain/√fan_in "
                             "keeps E[h²]), std (NFNets: 1/std φ(z)) or backward (keeps the gradient norm)")
    parser.add_argument("--q", type=number, default=1.0, metavar="Q",
                        help="second moment of the pre-activation the gain is computed at (default 1)")
    parser.add_argument("--digits", type=count, default=None, metavar="N",
                        help="significant digits of a closed form's value, 1 to 60 (default: the "
                             "double, printed as Python prints it)")


def run(args) -> int:
    import sympy

    from ...errors import VanishcalcError
    from ...solve.gain import gain
    from ...value import ROUNDED_NOTE, closed_form_text
    if args.digits is not None and not 1 <= args.digits <= 60:
        raise VanishcalcError(f"--digits must be between 1 and 60, got {args.digits}")
    g = gain(args.expr, convention=args.convention, q=args.q)
    if g.exact is not None:
        text, rounded = closed_form_text(g.exact)
        print(f"gain = {text}" + (f"    ({ROUNDED_NOTE})" if rounded else ""))
        value = repr(float(g)) if args.digits is None else sympy.N(g.exact, args.digits)
        print(f"     ≈ {value}")
    else:
        value = repr(float(g)) if args.digits is None else f"{float(g):.{args.digits}g}"
        print(f"gain ≈ {value} ± {g.error:.1e}  ({g.method})")
    return 0
