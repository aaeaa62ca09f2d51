"""``vanishcalc bn SPEC [--rate r | --gamma g] [--beta b] [--optimize beta] [--batch B] [--norm bn|ln]``:
BatchNorm affine (γ, β), its gradient rate and the trade-off (saturation, nonlinearity)."""
from __future__ import annotations


def add_arguments(parser):
    from . import count, number
    parser.add_argument("spec", metavar="PHI",
                        help="zoo name or expression in x, e.g. 'tanh' or 'exp(-x**2)'")
    grp = parser.add_mutually_exclusive_group()
    grp.add_argument("--rate", type=number, metavar="R",
                     help="target per-layer squared-gradient growth; solves γ")
    grp.add_argument("--gamma", type=number, metavar="G", help="BN scale γ (default 1)")
    parser.add_argument("--beta", type=number, default=0.0, metavar="B", help="BN shift β (default 0)")
    parser.add_argument("--optimize", choices=["beta"],
                        help="'beta': the β with the smallest rate at the given γ")
    parser.add_argument("--batch", type=count, default=None, metavar="B",
                        help="finite batch size B ≥ 4 for the rate (default: infinite batch)")
    parser.add_argument("--norm", choices=["bn", "ln"], default="bn",
                        help="bn (default) or ln: LayerNorm rate at the same (γ, β)")


def run(args) -> int:
    from ...solve.bn_affine import bn_affine, bn_gradient_rate, ln_gradient_rate
    # everything is computed before anything is printed: bad input gives only the error line
    a = bn_affine(args.spec, rate=args.rate, gamma=args.gamma, beta=args.beta,
                  optimize=args.optimize)
    lines = [f"φ = {a.spec}",
             f"gamma = {float(a.gamma)!r}",
             f"beta  = {float(a.beta)!r}",
             f"BN rate (infinite batch) = {a.rate!r}"]
    if args.batch is not None:
        lines.append(f"BN rate (batch {args.batch}) = "
                     f"{bn_gradient_rate(args.spec, a.gamma, a.beta, args.batch)!r}")
    if args.norm == "ln":
        lines.append(f"LN rate = {ln_gradient_rate(args.spec, a.gamma, a.beta)!r}")
    lines += [f"saturated fraction = {a.saturated_fraction:.4g}",
              f"nonlinearity = {a.nonlinearity:.4g}"]
    print("\n".join(lines))
    return 0
