"""``vanishcalc transform PHI --method dks|tat --depth L [--zeta Z | --eta E | --tau T]``:
the DKS/TAT transform φ̂(x) = s·(φ(a·x + b) + c) and its certified conditions."""
from __future__ import annotations

EXAMPLES = """\
examples:
  vanishcalc transform tanh --method dks --depth 100
  vanishcalc transform "exp(-x**2)" --method dks --depth 50 --zeta 2
  vanishcalc transform softplus --method tat --depth 100 --tau 0.3
  vanishcalc transform leaky_relu --method tat --depth 100 --eta 0.9"""


def add_arguments(parser):
    from . import count, number
    parser.add_argument("spec", metavar="PHI",
                        help="zoo name or expression in x, e.g. 'tanh' or 'exp(-x**2)'")
    parser.add_argument("--method", choices=["dks", "tat"], default="dks",
                        help="dks (Martens et al. 2021, default) or tat (Zhang et al. 2022)")
    parser.add_argument("--depth", type=count, required=True, metavar="L",
                        help="number of nonlinear layers L ≥ 1 of the network")
    grp = parser.add_mutually_exclusive_group()
    grp.add_argument("--zeta", type=number, default=None, metavar="Z",
                     help="DKS: the network's c-map slope C'_f(1) = ζ > 1 (default 1.5)")
    grp.add_argument("--eta", type=number, default=None, metavar="E",
                     help="TAT on leaky ReLU: the network's C_f(0) = η in [0, 1) (default 0.9)")
    grp.add_argument("--tau", type=number, default=None, metavar="T",
                     help="TAT on smooth φ: the network's C''_f(1) = τ > 0 (default 0.3)")


def run(args) -> int:
    from ...solve.transform import transform
    # everything is computed before anything is printed: bad input gives only the error line
    t = transform(args.spec, args.method, depth=args.depth, zeta=args.zeta, eta=args.eta,
                  tau=args.tau)
    target = ", ".join(f"{k} = {v!r}" for k, v in t.target.items())
    lines = [f"φ = {t.base}; {t.method.upper()}, depth {t.depth}, {target}",
             f"φ̂(x) = {t.text}", *t.parameter_lines(),
             "conditions (value ± error, target):"]
    for c in t.conditions:
        lines.append(f"  {c.name} = {float(c.value)!r} ± {c.value.error:.1e}  (target {c.target!r})")
    print("\n".join(lines))
    return 0
