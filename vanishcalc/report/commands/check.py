"""``vanishcalc check SPEC --sigma-w W [--sigma-b B] --depth L --width N --nets K``.

Simulates K random nets and compares q, c and the gradient with the mean-field theory layer
by layer; prints the summary with its verdict.  Exit status: 0 PASSED, 1 FAILED,
3 INCONCLUSIVE (the ensemble cannot resolve the theory: the summary says why and which nets or
width would decide it), 2 bad input.
"""
from __future__ import annotations


def add_arguments(parser):
    parser.epilog = ("exit status: 0 PASSED, 1 FAILED, 3 INCONCLUSIVE (the ensemble cannot "
                     "resolve the theory; the summary names the nets or width that would), "
                     "2 bad input")
    from . import count, number
    parser.add_argument("spec", metavar="PHI", help="zoo name or expression in x")
    parser.add_argument("--sigma-w", type=number, required=True, metavar="W",
                        help="weight scale σw: W ~ N(0, σw²/fan_in)")
    parser.add_argument("--sigma-b", type=number, default=0.0, metavar="B",
                        help="bias scale σb: b ~ N(0, σb²) (default 0)")
    parser.add_argument("--depth", type=count, required=True, metavar="L", help="number of layers L")
    parser.add_argument("--width", type=count, required=True, metavar="N", help="units per layer N")
    parser.add_argument("--nets", type=count, default=64, metavar="K",
                        help="number of random networks averaged (default 64)")
    parser.add_argument("--q0", type=number, default=1.0,
                        help="second moment of the input pre-activation (default 1)")
    parser.add_argument("--c0", type=number, default=0.5,
                        help="correlation of the two inputs (default 0.5)")
    parser.add_argument("--weights", choices=("gaussian", "orthogonal"), default="gaussian",
                        help="gaussian (default) or orthogonal weights scaled by σw")
    parser.add_argument("--seed", type=count, default=0, help="random seed (default 0)")
    parser.add_argument("--backend", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="cpu (default), cuda (needs a GPU) or auto (cuda when one is there)")
    parser.add_argument("--tolerance", type=number, default=None, metavar="Z",
                        help="bound on |z| (default: Bonferroni at 1%% family-wise)")
    parser.add_argument("--allowance", type=number, default=1.0, metavar="KAPPA",
                        help="finite-width allowance factor κ (default 1; 0 disables)")
    parser.add_argument("--rows", type=count, default=12, metavar="N",
                        help="layers shown in the table (default 12)")
    parser.add_argument("--plot", metavar="FILE", default=None,
                        help="also draw theory and simulation (with the acceptance band) per "
                             "layer into FILE (.png, .pdf, .svg; needs matplotlib)")


def run(args) -> int:
    import warnings

    from ...errors import VanishcalcError
    from ...sim.check import check
    if args.rows < 1:         # before the simulation, not after it
        raise VanishcalcError(f"--rows {args.rows}: the table needs at least 1 row")
    if args.plot is not None:
        from ...plot import check_plot_path
        check_plot_path(args.plot)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = check(args.spec, args.sigma_w, args.sigma_b, depth=args.depth, width=args.width,
                       n_nets=args.nets, q0=args.q0, c0=args.c0, weights=args.weights,
                       seed=args.seed, backend=args.backend, tolerance=args.tolerance,
                       allowance=args.allowance)
    if args.plot is not None:
        from ...plot import plot_check, save_cli_figure
        save_cli_figure(plot_check, args.plot, report)
    print(report.summary(max_rows=args.rows))
    for w in caught:
        print(f"warning: {w.message}")
    return report.exit_code
