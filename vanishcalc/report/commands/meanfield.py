"""``vanishcalc meanfield SPEC --sigma-w W [--sigma-b B] [--depth L]``: q*, χ1, depth scales."""
from __future__ import annotations

import math
import sys
import warnings

from ...errors import VanishcalcWarning


def add_arguments(parser):
    from . import count, number
    parser.add_argument("spec", metavar="PHI", help="zoo name or expression in x")
    parser.add_argument("--sigma-w", type=number, required=True, metavar="W",
                        help="weight scale σw: W ~ N(0, σw²/fan_in)")
    parser.add_argument("--sigma-b", type=number, default=0.0, metavar="B",
                        help="bias scale σb: b ~ N(0, σb²) (default 0)")
    parser.add_argument("--depth", type=count, default=None, metavar="L",
                        help="also print q_l, c_l and gradient norms for l = 0..L")
    parser.add_argument("--q0", type=number, default=1.0,
                        help="second moment of the input pre-activation (default 1)")
    parser.add_argument("--c0", type=number, default=0.5,
                        help="correlation of the two inputs (default 0.5)")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw q, c and the gradient against depth into FILE "
                             "(.png, .pdf, .svg; needs --depth and matplotlib)")


def _grad_cell(grad, log_grad) -> str:
    """grad[l], or 10^x written out when the double under- or overflowed (log_grad is finite)."""
    if (grad == 0 or math.isinf(grad)) and math.isfinite(log_grad):
        return f"10^{log_grad / math.log(10):.6f}"
    return f"{grad:.15g}"


def run(args) -> int:
    from ...errors import VanishcalcError
    from ...maps.meanfield import MeanField
    if args.plot is not None:
        if args.depth is None:
            raise VanishcalcError("--plot draws the trajectory over depth: give --depth L too")
        from ...plot import check_plot_path
        check_plot_path(args.plot)
    mf = MeanField(args.spec, args.sigma_w, args.sigma_b)
    # everything is computed before anything is printed: bad input gives only the error line;
    # warnings (an underflowed q, a gradient beyond the double range) become one stderr line each
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VanishcalcWarning)
        lines = _lines(mf, args)
    if args.plot is not None:
        from ...plot import plot_depth, save_cli_figure
        save_cli_figure(plot_depth, args.plot, mf.propagate(args.depth, q0=args.q0, c0=args.c0),
                        label=f"mean field {mf!r}")
    print("\n".join(lines))
    for w in caught:
        if issubclass(w.category, VanishcalcWarning):
            print(f"vanishcalc meanfield: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return 0


def _lines(mf, args):
    q = mf.q_star(args.q0)
    lines = [f"{mf!r}",
             f"q*    = {float(q)!r}  ({q.method})",
             f"chi1  = {float(mf.chi1())!r}",
             f"phase = {mf.phase()}",
             f"c*    = {float(mf.c_star(args.c0))!r}",
             f"chi_c = {float(mf.chi_c())!r}",
             f"xi_q  = {float(mf.xi_q())!r}",
             f"xi_c  = {float(mf.xi_c())!r}"]
    if args.depth is not None:
        p = mf.propagate(args.depth, q0=args.q0, c0=args.c0)
        lines.append(f"{'layer':>5} {'q':>22} {'c':>22} {'grad':>22}")
        lines += [f"{l:>5d} {p.q[l]:>22.15g} {p.c[l]:>22.15g} "
                  f"{_grad_cell(p.grad[l], p.log_grad[l]):>22}" for l in range(len(p.q))]
    return lines
