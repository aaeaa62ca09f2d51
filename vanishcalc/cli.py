"""The ``vanishcalc`` command.  Each subcommand lives in ``vanishcalc/report/commands/<name>.py``
with ``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them up and
turns every failure into one line on stderr:

* bad input (a ``VanishcalcError``, an argument argparse refuses): exit status 2;
* out of memory or Ctrl-C: exit status 2, with what to do;
* anything else is a bug in vanishcalc: one line asking for a report, exit status 3
  (``VANISHCALC_TRACEBACK=1`` shows the traceback).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from . import __version__
from .errors import VanishcalcError

DESCRIPTION = """\
Init gains, edge of chaos, gradient growth and BatchNorm/LayerNorm settings for any
nonlinearity φ: a zoo name (see 'vanishcalc zoo') or an expression in x such as 'exp(-x**2)'.
Numbers are exact where a closed form exists and certified numeric values otherwise.

Every numeric option takes a number or a constant expression: --sigma-w 'sqrt(2)'.
An expression that starts with '-' works as it is: vanishcalc gain '-x**3'."""

EPILOG = """\
examples:
  vanishcalc gain "exp(-x**2)"
  vanishcalc gain tanh --convention std
  vanishcalc meanfield tanh --sigma-w 1.5 --sigma-b 0.3 --depth 10
  vanishcalc check tanh --sigma-w 1.5 --sigma-b 0.3 --depth 20 --width 128 --nets 16
  vanishcalc bn tanh --rate 1.05
  vanishcalc transform tanh --method dks --depth 100
  vanishcalc spectrum tanh --sigma-w 1.05 --sigma-b 0.05 --depth 64 --weights orthogonal
  vanishcalc table relu tanh gelu --format json
  vanishcalc sweep gain --grid spec=tanh,sigmoid --grid q=0.5,1,2
  vanishcalc residual tanh --depth 100 --placement pre
  vanishcalc init "exp(-x**2)" --fan-in 128 --framework torch

'vanishcalc COMMAND --help' describes each command.  Bad input prints one line naming the
problem and exits with status 2."""

SUBCOMMANDS = {
    "gain": "initialization gain of a nonlinearity",
    "table": "init table for several nonlinearities",
    "meanfield": "q*, χ1, depth scales and trajectories of a deep network",
    "check": "simulate a deep network and compare it with the theory",
    "phase": "the σw × σb phase diagram: q*, χ1, depth scales at each grid point",
    "bn": "BatchNorm/LayerNorm affine settings (γ, β) and gradient rates",
    "zoo": "the named nonlinearities and their definitions",
    "transform": "DKS/TAT transform of a nonlinearity for a depth-L network",
    "sweep": "one quantity over a grid of parameters, serially or on workers",
    "residual": "residual branch scale α for a depth, q growth per LayerNorm placement, "
                "dropout ξc",
    "spectrum": "singular-value spectrum of the input-output Jacobian (dynamical isometry)",
    "init": "the torch/Keras/JAX line that initializes a layer fed by φ",
}

INTERNAL_ERROR = 3


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints a usage block before its error; we promise one line naming the problem."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def _parse_optional(self, arg_string):
        # argparse reads every word that starts with '-' as an option ('-x' → "unrecognized
        # arguments"); our only short option is -h, so any other single-dash word is an
        # expression such as '-x' or '-sqrt(2)', a positional or an option's value.
        if (arg_string.startswith("-") and not arg_string.startswith("--")
                and arg_string not in self._option_string_actions):
            return None
        return super()._parse_optional(arg_string)


def build_parser():
    parser = _OneLineParser(prog="vanishcalc", description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vanishcalc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    for name, help_text in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(f"vanishcalc.report.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vanishcalc.report.commands.{name}":
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text,
                           epilog=getattr(module, "EXAMPLES", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _one_line(text) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    where = f"vanishcalc {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{where}: warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show_warning      # no source paths, one line per warning
        try:
            return int(args._run(args) or 0)
        except VanishcalcError as exc:
            problem, status = str(exc), 2
        except MemoryError as exc:
            problem = ("out of memory" + (f" ({exc})" if str(exc) else "")
                       + "; use smaller sizes (--batch, --depth, --width, --nets)")
            status = 2
        except KeyboardInterrupt:
            problem, status = "interrupted", 2
        except BrokenPipeError:
            # the reader went away (`vanishcalc phase … | head`): stop quietly, as Unix tools do;
            # point stdout at devnull so the interpreter's final flush does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except Exception as exc:            # a bug: one line, and the way to see the traceback
            if os.environ.get("VANISHCALC_TRACEBACK"):
                raise
            problem = (f"internal error {type(exc).__name__}: {exc} — please report it with the "
                       "command line (VANISHCALC_TRACEBACK=1 shows the traceback)")
            status = INTERNAL_ERROR
    print(f"{where}: error: {_one_line(problem)}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
