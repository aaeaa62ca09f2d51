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
                        help="'beta': the β with the smallest rate at the given γ, among units at "
                             "least --min-nonlinearity nonlinear")
    parser.add_argument("--min-nonlinearity", type=number, default=None, metavar="S",
                        help="floor on the nonlinearity share for --optimize beta (default 0.05): "
                             "without it the smallest rate is a linear unit")
    parser.add_argument("--batch", type=count, default=None, metavar="B",
                        help="finite batch size B ≥ 4 for the rate (default: infinite batch)")
    parser.add_argument("--norm", choices=["bn", "ln"], default="bn",
                        help="bn (default) or ln: LayerNorm rate at the same (γ, β)")


def run(args) -> int:
    from ...errors import VanishcalcError
    from ...solve.bn_affine import (MIN_NONLINEARITY, bn_affine, bn_gradient_rate,
                                    cli_option_names, ln_gradient_rate)
    # everything is computed before anything is printed: bad input gives only the error line;
    # messages name the CLI's options (--gamma), not the Python keywords
    if args.min_nonlinearity is not None and args.optimize != "beta":
        raise VanishcalcError("--min-nonlinearity applies only with --optimize beta")
    with cli_option_names():
        a = bn_affine(args.spec, rate=args.rate, gamma=args.gamma, beta=args.beta,
                      optimize=args.optimize,
                      min_nonlinearity=(MIN_NONLINEARITY if args.min_nonlinearity is None
                                        else args.min_nonlinearity))
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
    if a.note:
        lines.append(f"note: {a.note}")
    print("\n".join(lines))
    return 0
