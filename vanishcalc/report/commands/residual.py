"""``vanishcalc residual PHI --depth L [--target T] [--placement none|pre|post] [--alpha A]
[--keep K ...]``: the branch scale α for a depth, q's growth law, and dropout's ξc(keep)."""
from __future__ import annotations

EXAMPLES = """\
examples:
  vanishcalc residual tanh --depth 100
  vanishcalc residual relu --depth 50 --placement pre --target 1.5
  vanishcalc residual "exp(-x**2)" --depth 200 --alpha 0.5
  vanishcalc residual tanh --depth 10 --keep 1 0.99 0.9 --sigma-b 0.3"""


def add_arguments(parser):
    from . import count, number
    parser.add_argument("spec", metavar="PHI",
                        help="zoo name or expression in x, e.g. 'tanh' or 'exp(-x**2)'")
    parser.add_argument("--depth", type=count, required=True, metavar="L",
                        help="number of residual blocks")
    parser.add_argument("--target", type=number, default=2.0, metavar="T",
                        help="allowed first/last gradient ratio max(r, 1/r) (default 2)")
    parser.add_argument("--placement", choices=["none", "pre", "post"], default="none",
                        help="LayerNorm placement: none, pre (first in the branch), post "
                             "(after the sum)")
    parser.add_argument("--sigma-w", type=number, default=1.0, metavar="S",
                        help="σw of the branch's Dense layers (default 1)")
    parser.add_argument("--sigma-b", type=number, default=0.0, metavar="S",
                        help="σb of the branch's Dense layers (default 0)")
    parser.add_argument("--alpha", type=number, default=None, metavar="A",
                        help="branch scale for the growth law (default: the solved α)")
    parser.add_argument("--keep", type=number, nargs="+", default=None, metavar="K",
                        help="dropout keep rates: ξc of [φ, Dropout(K), Dense] on the "
                             "critical line of σb (keep = 1 − drop rate)")


def run(args) -> int:
    from ...solve.residual import dropout_xi_c, residual_alpha, residual_growth
    # computed before anything is printed: bad input gives only the error line
    a = residual_alpha(args.spec, args.depth, target=args.target, placement=args.placement,
                       sigma_w=args.sigma_w, sigma_b=args.sigma_b)
    alpha = float(a.alpha) if args.alpha is None else args.alpha
    g = residual_growth(args.spec, alpha, placement=args.placement, depth=max(args.depth, 4),
                        sigma_w=args.sigma_w, sigma_b=args.sigma_b)
    d = None if args.keep is None else dropout_xi_c(args.spec, args.keep, sigma_b=args.sigma_b)
    lines = [f"φ = {args.spec}, placement = {args.placement}, depth = {args.depth}",
             f"alpha = {a.alpha!r}   (max(r, 1/r) ≤ {args.target:g}; r = {a.ratio:.6g})"]
    if not a.binding:
        lines.append(f"note: {a.note}")
    extra = (f", rate {g.rate:.6g}" if g.law == "geometric" else
             f", exponent {g.exponent:.4g}" if g.law in ("linear", "polynomial") else "")
    lines.append(f"q growth at alpha = {alpha:.6g}: {g.law}{extra}; q_L = {g.q[-1]:.6g}")
    if d is not None:
        lines.append(f"dropout at sigma_w = {d.sigma_w:.6g}, sigma_b = {d.sigma_b:g}:")
        for k, xi, cs in zip(d.keep, d.xi_c, d.c_star):
            lines.append(f"  keep = {k:g}: xi_c = {float(xi):.6g}, c* = {float(cs):.6g}")
    print("\n".join(lines))
    return 0
