"""``vanishcalc gain EXPR``: print the closed form (when found) and the value of a gain."""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("expr", help="zoo name or expression in x, e.g. 'exp(-x**2)'")
    parser.add_argument("--convention", default="second_moment",
                        choices=["second_moment", "std", "backward"])
    parser.add_argument("--q", type=float, default=1.0, help="pre-activation second moment (default 1)")
    parser.add_argument("--digits", type=int, default=17, help="significant digits to print")


def run(args) -> int:
    import sympy

    from ...solve.gain import gain
    from ...errors import VanishcalcError
    if not 1 <= args.digits <= 60:
        raise VanishcalcError(f"--digits must be between 1 and 60, got {args.digits}")
    g = gain(args.expr, convention=args.convention, q=args.q)
    if g.exact is not None:
        print(f"gain = {sympy.sstr(g.exact)}")
        print(f"     ≈ {sympy.N(g.exact, args.digits)}")
    else:
        print(f"gain ≈ {float(g):.{args.digits}g} ± {g.error:.1e}  ({g.method})")
    return 0
