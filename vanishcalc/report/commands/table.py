"""``vanishcalc table [SPECS…] [--sigma-b B] --format md|csv|json|latex [--plot FILE]
[--transform dks|tat --depth L]``: the init table."""
from __future__ import annotations

from . import number

EXAMPLES = """\
examples:
  vanishcalc table                            # every zoo nonlinearity (takes a minute)
  vanishcalc table relu tanh "exp(-x**2)" --format csv
  vanishcalc table gelu --sigma-b 0.1 --format json
  vanishcalc table relu "exp(-x**2)" --format latex   # booktabs tabular, closed forms kept
  vanishcalc table tanh erf gelu --plot chi1.png      # χ1 against σw, critical σw marked
  vanishcalc table tanh sigmoid --transform dks --depth 100   # + the DKS transform a, b, c, s

JSON: numbers are JSON numbers; a value that is infinite (ξc at the edge of chaos) is written
null and listed under "nonfinite" with its sign ("inf", "-inf" or "nan"); a missing entry is
null with its reason under "notes"."""


def add_arguments(parser):
    parser.add_argument("specs", nargs="*", metavar="PHI",
                        help="zoo names or expressions in x (default: the whole zoo)")
    parser.add_argument("--sigma-b", type=number, default=0.0, metavar="B",
                        help="bias scale σb of the critical σw and the fixed point (default 0)")
    parser.add_argument("--format", choices=["md", "csv", "json", "latex"], default="md",
                        help="md (default: Markdown), csv, json or latex (booktabs tabular; "
                             "closed forms as formulas with their decimals)")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw χ1 against σw for each φ, its critical σw marked, into "
                             "FILE (.png, .pdf, .svg; needs matplotlib)")
    parser.add_argument("--transform", choices=["dks", "tat"], default=None,
                        help="add the columns of vanishcalc.transform: a, b, c, s of "
                             "φ̂(x) = s·(φ(a·x + b) + c), and α for a leaky ReLU (needs --depth)")
    parser.add_argument("--depth", type=int, default=None, metavar="L",
                        help="with --transform: the number of nonlinear layers")
    for name, what in (("zeta", "DKS: the network's c-map slope (default 1.5)"),
                       ("eta", "TAT, leaky ReLU: the network's C(0) (default 0.9)"),
                       ("tau", "TAT, smooth φ: the network's c-map curvature (default 0.3)")):
        parser.add_argument(f"--{name}", type=number, default=None, metavar=name[0].upper(),
                            help=f"with --transform: {what}")


def run(args) -> int:
    from ..table import init_table
    if args.plot is not None:
        from ...plot import check_plot_path
        check_plot_path(args.plot)
    t = init_table(args.specs or None, sigma_b=args.sigma_b, transform=args.transform,
                   depth=args.depth, zeta=args.zeta, eta=args.eta, tau=args.tau)
    if args.plot is not None:
        from ...plot import plot_table, save_cli_figure
        save_cli_figure(plot_table, args.plot, t)
    print({"md": t.to_markdown, "csv": t.to_csv, "json": t.to_json,
           "latex": t.to_latex}[args.format](), end="")
    return 0
