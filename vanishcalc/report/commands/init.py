"""``vanishcalc init PHI --fan-in N --framework torch|keras|jax``: the line of code that draws
one layer's weights (and bias) for a layer fed by φ (vanishcalc.init_spec; notes/bridges.md)."""
from __future__ import annotations

from . import count, number

EXAMPLES = """\
examples:
  vanishcalc init "exp(-x**2)" --fan-in 128 --framework torch
  vanishcalc init tanh --fan-in 256 --fan-out 128 --mode fan_avg --framework keras
  vanishcalc init tanh --fan-in 128 --sigma-b 0.05 --framework jax     # edge of chaos
  vanishcalc init gelu --fan-in 128 --distribution truncated_normal --framework torch"""


def add_arguments(parser):
    parser.add_argument("expr", metavar="PHI",
                        help="the nonlinearity feeding the layer: zoo name or expression in x "
                             "('linear' for a first layer fed by standardized data)")
    parser.add_argument("--fan-in", type=count, required=True, metavar="N",
                        help="inputs per unit (× kernel size for a convolution)")
    parser.add_argument("--fan-out", type=count, default=None, metavar="M",
                        help="outputs per unit (default: fan-in)")
    parser.add_argument("--framework", choices=["torch", "keras", "jax"], default="torch",
                        help="whose initializer line to print (default torch)")
    parser.add_argument("--mode", choices=["fan_in", "fan_out", "fan_avg"], default="fan_in",
                        help="the fan the variance is divided by (default fan_in)")
    parser.add_argument("--distribution", default="normal",
                        choices=["normal", "truncated_normal", "uniform", "orthogonal"],
                        help="weight law, all with the same std (default normal; Keras's "
                             "'normal' is truncated, so keras lines say untruncated_normal)")
    parser.add_argument("--convention", default="second_moment",
                        choices=["second_moment", "std", "backward"],
                        help="gain convention (method gain)")
    parser.add_argument("--method", choices=["gain", "critical"], default=None,
                        help="gain (default) or critical (edge of chaos; default with --sigma-b)")
    parser.add_argument("--sigma-b", type=number, default=None, metavar="SB",
                        help="bias std at the edge of chaos (implies --method critical)")


def run(args) -> int:
    from ...bridges.init_spec import init_spec
    s = init_spec(args.expr, args.fan_in, args.fan_out, mode=args.mode,
                  distribution=args.distribution, convention=args.convention,
                  method=args.method, sigma_b=args.sigma_b)
    print(f"# {s!r}")
    print(s.code(args.framework))
    return 0
