"""``vanishcalc spectrum SPEC --sigma-w W [--sigma-b B] --depth L [--weights orthogonal]``:
the singular-value spectrum of the input–output Jacobian (dynamical isometry)."""
from __future__ import annotations

EXAMPLES = """\
examples:
  vanishcalc spectrum tanh --sigma-w 1.05 --sigma-b 0.05 --depth 64 --weights orthogonal
  vanishcalc spectrum relu --sigma-w 'sqrt(2)' --depth 32 --weights gaussian --moments 4
  vanishcalc spectrum erf --sigma-w 1.2 --sigma-b 0.1 --depth 16 --density
  vanishcalc spectrum tanh --sigma-w 1.05 --sigma-b 0.05 --depth 16 --plot s.png --simulate-width 256"""


def add_arguments(parser):
    from . import count, number
    parser.add_argument("spec", metavar="PHI", help="zoo name or expression in x")
    parser.add_argument("--sigma-w", type=number, required=True, metavar="W",
                        help="weight scale σw")
    parser.add_argument("--sigma-b", type=number, default=0.0, metavar="B",
                        help="bias scale σb (default 0)")
    parser.add_argument("--depth", type=count, required=True, metavar="L",
                        help="number of layers in the Jacobian")
    parser.add_argument("--weights", default="gaussian", metavar="KIND",
                        help="'gaussian' (i.i.d. N(0, σw²/N), default) or 'orthogonal' "
                             "(Haar-orthogonal times σw)")
    parser.add_argument("--moments", type=count, default=3, metavar="K",
                        help="print the moments m_1..m_K of JJᵀ (default 3)")
    parser.add_argument("--density", action="store_true",
                        help="also print the density of JJᵀ's eigenvalues: λ, ρ(λ)")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="draw the predicted density into FILE (.png, .pdf, .svg; needs "
                             "matplotlib); with --simulate-width, over the eigenvalues of "
                             "explicit finite-net Jacobians")
    parser.add_argument("--simulate-width", type=count, default=None, metavar="N",
                        help="with --plot: also simulate 4 nets of width N (numpy) and draw "
                             "their eigenvalues; prints the Kolmogorov–Smirnov distance")


def run(args) -> int:
    from ...errors import VanishcalcError
    from ...solve.spectrum import jacobian_spectrum
    if args.simulate_width is not None and args.plot is None:
        raise VanishcalcError("--simulate-width draws the simulated eigenvalues on the plot: "
                              "give --plot FILE too")
    if args.plot is not None:
        from ...plot import check_plot_path
        check_plot_path(args.plot)
    s = jacobian_spectrum(args.spec, args.sigma_w, args.sigma_b, args.depth, args.weights)
    lines = _lines(s, args)          # everything computed before anything is printed
    if args.plot is not None:
        from ...plot import plot_spectrum, save_cli_figure
        if args.simulate_width is not None:
            from ...sim.jacobian import compare_spectrum
            shown = compare_spectrum(s, width=args.simulate_width, nets=4, seed=0)
            lines.append(f"simulated: 4 nets of width {args.simulate_width}, Kolmogorov–Smirnov "
                         f"distance to the predicted law {shown.ks:.3g}")
        else:
            shown = s.density()
        save_cli_figure(plot_spectrum, args.plot, shown)
    print("\n".join(lines))
    return 0


def _scaled(label, get, log_value, fallback=None):
    """``label = value ± error``; beyond the double range (deep nets off the critical line)
    the natural log, or the scale-free ``fallback``, instead of an error."""
    from ...errors import NonFiniteError
    try:
        v = get()
    except NonFiniteError:
        if log_value is not None:
            return f"{label} = e^{log_value!r} (beyond the double range)"
        return f"{label} = beyond the double range" + (f"; {fallback}" if fallback else "")
    err = getattr(v, "error", None)
    return f"{label} = {float(v)!r}" + (f" ± {err:.1e}" if err is not None else "")


def _lines(s, args):
    law = s.d_law
    lines = [f"{s!r}",
             f"q*          = {float(s.q_star)!r}",
             f"chi1 = mu_1 = {float(s.chi1)!r}",
             f"mu_2        = {float(s.mu(2))!r}",
             "D = phi'(h) atoms: " + (", ".join(f"{v:g} (p = {m:.6g})" for v, m in law.atoms)
                                       or "none")
             + f"; continuous mass {law.continuous_mass:.6g}",
             _scaled("m1 = chi1^L", lambda: s.m1, s.log_m1),
             _scaled("variance   ", lambda: s.variance, None),
             f"spread      = variance/m1^2 = {float(s.spread)!r}",
             f"P(eigenvalue 0) = {s.zero_mass:.6g}"]
    for k in range(2, args.moments + 1):
        lines.append(_scaled(f"m{k}         ", lambda k=k: s.moments(k), None,
                             f"m{k}/m1^{k} = {float(s.normalized_moment(k))!r}"))
    lines.append(_scaled("lambda_max ", lambda: s.edge(), None))
    if args.density:
        d = s.density()
        lines.append("density checks (mass + atoms − 1, m1, m2 relative): "
                     + ", ".join(f"{k} {v:+.1e}" for k, v in d.checks.items()))
        for loc, mass in d.atoms:
            lines.append(f"atom at {loc!r}: mass {mass!r}")
        lines.append(f"{'lambda':>24} {'density':>24}")
        lines += [f"{x:>24.15g} {y:>24.15g}" for x, y in zip(d.x, d.density)]
    return lines
