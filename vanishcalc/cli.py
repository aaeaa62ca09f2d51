"""The ``vanishcalc`` command.  Each subcommand lives in ``vanishcalc/report/commands/<name>.py``
with ``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them up.

Bad input prints one line on stderr naming the problem and exits with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import VanishcalcError

SUBCOMMANDS = {
    "gain": "initialization gain of a nonlinearity",
    "table": "init table for several nonlinearities",
    "meanfield": "q*, χ1, depth scales and trajectories of a deep network",
    "check": "simulate a deep network and compare it with the theory",
    "bn": "BatchNorm/LayerNorm affine settings (γ, β) and gradient rates",
}


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints a usage block before its error; we promise one line naming the problem."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _OneLineParser(prog="vanishcalc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(f"vanishcalc.report.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vanishcalc.report.commands.{name}":
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except VanishcalcError as exc:
        print(f"vanishcalc {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
