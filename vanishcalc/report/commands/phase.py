"""``vanishcalc phase PHI --sigma-w LO:HI:N --sigma-b LO:HI:N [--format csv|json] [--plot FILE]``:
the σw × σb phase diagram (q*, χ1, ξq, ξc, c* at each grid point)."""
from __future__ import annotations

import json
import math

EXAMPLES = """\
examples:
  vanishcalc phase tanh --sigma-w 0.5:3:26 --sigma-b 0:1:11
  vanishcalc phase swish --sigma-w 0.5:3:60 --sigma-b 0:1.5:40 --plot swish.png
  vanishcalc phase erf --sigma-w 1,1.5,2 --sigma-b 0.1 --format json

status per point: ok (a stable fixed point q*), collapsed (q → 0), diverged (q → ∞),
not-converged (q-map slope near 1), unstable (the fixed point repels).  With --plot the
critical line χ1 = 1 is drawn, dashed red where its fixed point is unstable."""

STATUS = {0: "ok", 1: "collapsed", 2: "diverged", 3: "not-converged", 4: "unstable"}


def _axis(text):
    """LO:HI:N (N evenly spaced, both ends included) or V1,V2,...: a list of numbers."""
    import argparse

    import numpy as np

    from . import count, number
    pieces = text.split(":")
    if len(pieces) == 3:
        n = count(pieces[2])
        if n < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: LO:HI:N needs N ≥ 1")
        return [float(v) for v in np.linspace(number(pieces[0]), number(pieces[1]), n)]
    return [number(v) for v in text.split(",")]


def add_arguments(parser):
    parser.add_argument("spec", metavar="PHI", help="zoo name or expression in x")
    parser.add_argument("--sigma-w", type=_axis, required=True, metavar="LO:HI:N",
                        help="σw grid: LO:HI:N evenly spaced values, or V1,V2,...")
    parser.add_argument("--sigma-b", type=_axis, required=True, metavar="LO:HI:N",
                        help="σb grid: LO:HI:N evenly spaced values, or V1,V2,...")
    parser.add_argument("--format", choices=["csv", "json"], default="csv",
                        help="csv (default: one row per grid point) or json")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw the phase diagram (χ1 map, ξc contours, critical line) "
                             "into FILE (.png, .pdf, .svg; needs matplotlib)")


def run(args) -> int:
    from ...solve.criticality import phase_diagram
    if args.plot is not None:
        from ...plot import check_plot_path
        check_plot_path(args.plot)
    d = phase_diagram(args.spec, args.sigma_w, args.sigma_b)
    if args.plot is not None:
        from ...plot import plot_phase, save_cli_figure
        save_cli_figure(plot_phase, args.plot, d, spec=args.spec)
    fields = ("q_star", "chi1", "xi_q", "xi_c", "c_star")
    rows = [(float(w), float(b), STATUS[int(d.status[i, j])],
             *(float(getattr(d, f)[i, j]) for f in fields))
            for i, w in enumerate(d.sigma_w) for j, b in enumerate(d.sigma_b)]
    columns = ("sigma_w", "sigma_b", "status") + fields
    if args.format == "json":
        # JSON has no inf/NaN: written null; "status" says why (diverged: q* = ∞; ξ = ∞ on
        # the critical line is listed under "nonfinite" as "<row>.<column>")
        nonfinite = {}

        def num(i, col, v):
            if isinstance(v, float) and not math.isfinite(v):
                if not math.isnan(v):
                    nonfinite[f"{i}.{col}"] = "inf" if v > 0 else "-inf"
                return None
            return v
        out = [{c: num(i, c, v) for c, v in zip(columns, r)} for i, r in enumerate(rows)]
        print(json.dumps({"phi": args.spec, "error": d.error, "c_tail": d.c_tail,
                          "columns": list(columns), "rows": out, "nonfinite": nonfinite},
                         ensure_ascii=False, indent=1, allow_nan=False))
    else:
        print(",".join(columns))
        for r in rows:
            print(",".join(v if isinstance(v, str) else repr(v) for v in r))
    return 0
