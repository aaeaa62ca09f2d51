"""``vanishcalc sweep QUANTITY --grid NAME=V1,V2,… [--grid …]``: one quantity over a grid.

The grid is the product of the ``--grid`` lists (the last one varies fastest); the points run
serially, on ``--workers N`` local processes or on a Dask scheduler (``--scheduler``), through
:func:`vanishcalc.sweep`.  A point that fails gets its error in the ``error`` column; the
others go on.
"""
from __future__ import annotations

import inspect
import json
import math

EXAMPLES = """\
examples:
  vanishcalc sweep gain --grid spec=tanh,sigmoid,'exp(-x**2)' --grid q=0.5,1,2
  vanishcalc sweep chi1 --grid spec=tanh --grid sigma_w=1:2:11 --grid sigma_b=0,0.1
  vanishcalc sweep bn_rate --grid spec=tanh,gelu --grid gamma=0.5:2:4 --format csv
  vanishcalc sweep chi1 --grid spec=tanh,erf --grid sigma_w=1:3:201 --workers 2
  vanishcalc sweep gain --grid spec=relu,tanh --scheduler tcp://scheduler:8786

--grid NAME=V1,V2,...  one parameter and its values (commas inside parentheses stay: max(x,0));
--grid NAME=LO:HI:N     N evenly spaced numbers from LO to HI, both included.
A parameter of the quantity that no --grid names keeps its default (shown by 'sweep --help')."""


# ---------------------------------------------------------------- the quantities (module level:
# a process pool pickles them by name)

def gain(spec, convention="second_moment", q=1.0):
    from ...solve.gain import gain as _gain
    return _gain(spec, convention=convention, q=q)


def critical_sigma_w(spec, sigma_b=0.0):
    from ...solve.criticality import critical_sigma_w as _critical
    return _critical(spec, sigma_b).sigma_w


def _meanfield(name):
    def quantity(spec, sigma_w, sigma_b=0.0):
        from ...maps.meanfield import MeanField
        return getattr(MeanField(spec, sigma_w, sigma_b), name)()
    quantity.__name__ = quantity.__qualname__ = name
    return quantity


q_star, chi1, chi_c, c_star, xi_q, xi_c = (_meanfield(n) for n in
                                           ("q_star", "chi1", "chi_c", "c_star", "xi_q", "xi_c"))


def bn_rate(spec, gamma=1.0, beta=0.0):
    from ...solve.bn_affine import bn_gradient_rate
    return bn_gradient_rate(spec, gamma, beta)


def ln_rate(spec, gamma=1.0, beta=0.0):
    from ...solve.bn_affine import ln_gradient_rate
    return ln_gradient_rate(spec, gamma, beta)


def bn_gamma(spec, rate, beta=0.0):
    from ...solve.bn_affine import bn_affine
    return bn_affine(spec, rate=rate, beta=beta).gamma


def check(spec, sigma_w, depth, width, sigma_b=0.0, nets=16, seed=0):
    from ...sim.check import check as _check
    return _check(spec, sigma_w, sigma_b, depth=depth, width=width, n_nets=nets, seed=seed,
                  progress=False).verdict


QUANTITIES = {
    "gain": (gain, "initialization gain (vanishcalc gain)"),
    "critical_sigma_w": (critical_sigma_w, "σw with χ1 = 1 at σb"),
    "q_star": (q_star, "fixed point q*"),
    "chi1": (chi1, "χ1 at q*"),
    "chi_c": (chi_c, "slope of the c-map at c*"),
    "c_star": (c_star, "fixed point c*"),
    "xi_q": (xi_q, "depth scale ξq"),
    "xi_c": (xi_c, "depth scale ξc"),
    "bn_rate": (bn_rate, "BatchNorm gradient rate at (γ, β)"),
    "ln_rate": (ln_rate, "LayerNorm gradient rate at (γ, β)"),
    "bn_gamma": (bn_gamma, "γ giving BN gradient rate `rate` at β"),
    "check": (check, "simulation vs theory verdict (vanishcalc check)"),
}

#: Parameters that are words or integers; every other parameter is a number.
WORDS = ("spec", "convention")
INTEGERS = ("depth", "width", "nets", "seed")


def _signature_text(name):
    params = inspect.signature(QUANTITIES[name][0]).parameters.values()
    return ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default}"
                     for p in params)


def add_arguments(parser):
    parser.description = (parser.description or "") + "\n\nquantities (parameters=defaults):\n" + \
        "\n".join(f"  {n:<17} {QUANTITIES[n][1]}: {_signature_text(n)}" for n in QUANTITIES)
    parser.add_argument("quantity", choices=sorted(QUANTITIES), metavar="QUANTITY",
                        help="what to compute at each point: " + ", ".join(QUANTITIES))
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                        help="a parameter and its values: NAME=V1,V2,... or NAME=LO:HI:N "
                             "(repeat for each parameter; the sweep is their product)")
    runner = parser.add_mutually_exclusive_group()
    runner.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                        help="local worker processes (default 1: in this process)")
    runner.add_argument("--scheduler", metavar="ADDRESS",
                        help="a Dask scheduler to run the points on, e.g. tcp://scheduler:8786 "
                             "(needs dask.distributed, pip install 'vanishcalc[dist]')")
    parser.add_argument("--timeout", type=_positive_float, default=None, metavar="S",
                        help="seconds each point may take (serial or --workers); a slower point "
                             "gets a TimeoutError in its error column")
    parser.add_argument("--format", choices=["md", "csv", "json"], default="md",
                        help="md (default: Markdown), csv or json")


def _positive_int(text):
    from . import count
    import argparse
    n = count(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: needs at least 1")
    return n


def _positive_float(text):
    from . import number
    import argparse
    x = number(text)
    if not 0 < x < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: needs a positive number of seconds")
    return x


def split_values(text) -> list:
    """Split at commas outside parentheses and brackets: 'relu,max(x,0)' → ['relu', 'max(x,0)'].

    >>> split_values("tanh, max(x, 0) ,exp(-x**2)")
    ['tanh', 'max(x, 0)', 'exp(-x**2)']
    """
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def _typed(name, text):
    import argparse

    from ...errors import VanishcalcError
    from . import count, number
    convert = str if name in WORDS else count if name in INTEGERS else number
    try:
        return convert(text)
    except argparse.ArgumentTypeError as exc:
        raise VanishcalcError(f"--grid {name}: {exc}") from None


def parse_grid(quantity, specs) -> dict:
    """The grid dict of ``--grid`` options for ``quantity``, every value typed and checked."""
    import numpy as np

    from ...errors import VanishcalcError
    params = inspect.signature(QUANTITIES[quantity][0]).parameters
    grid = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        name = name.strip()
        if not eq or not name or not values.strip():
            raise VanishcalcError(f"--grid {spec!r}: write NAME=V1,V2,... or NAME=LO:HI:N, "
                                  f"e.g. --grid sigma_w=1,1.5,2")
        if name not in params:
            raise VanishcalcError(f"--grid {name}: {quantity} has no parameter {name!r}; its "
                                  f"parameters are {_signature_text(quantity)}")
        if name in grid:
            raise VanishcalcError(f"--grid {name} is given twice; list all its values in one "
                                  f"--grid {name}=V1,V2,...")
        pieces = values.split(":")
        if len(pieces) == 3 and name not in WORDS:
            lo, hi = _typed(name, pieces[0]), _typed(name, pieces[1])
            n = _count_of(name, pieces[2])
            points = np.linspace(lo, hi, n)
            if name in INTEGERS and not np.all(points == np.round(points)):
                raise VanishcalcError(f"--grid {name}={values}: {n} integers do not fit evenly "
                                      f"between {lo} and {hi}; list them: {name}=V1,V2,...")
            grid[name] = [int(v) if name in INTEGERS else float(v) for v in points]
        else:
            grid[name] = [_typed(name, v) for v in split_values(values)]
        if any(v == "" for v in grid[name]):
            raise VanishcalcError(f"--grid {name}={values}: an empty value (two commas in a row?)")
    missing = [p.name for p in params.values()
               if p.default is inspect.Parameter.empty and p.name not in grid]
    if missing:
        raise VanishcalcError(f"{quantity} needs --grid for {', '.join(missing)} "
                              f"(parameters: {_signature_text(quantity)})")
    return grid


def _count_of(name, text):
    from ...errors import VanishcalcError
    n = _typed("depth", text)      # an integer
    if n < 1:
        raise VanishcalcError(f"--grid {name}=LO:HI:N needs N ≥ 1, got {n}")
    return n


def _executor(args):
    if args.scheduler is not None:
        from ...errors import MissingDependencyError
        try:
            from distributed import Client
        except ImportError:
            raise MissingDependencyError("--scheduler needs dask.distributed: pip install "
                                         "'vanishcalc[dist]'") from None
        return Client(args.scheduler)
    if args.workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        return ProcessPoolExecutor(args.workers)
    return None


def _cells(record):
    """(value, exact, error) of a record as plain data: a float (or text), the closed form's
    text when the value has one, the error text."""
    from ...value import closed_form_text
    v = record.get("value")
    exact = getattr(v, "exact", None)
    if isinstance(v, float):
        v = float(v)
    return v, None if exact is None else closed_form_text(exact)[0], record.get("error")


def run(args) -> int:
    from ...sweep import sweep
    fn = QUANTITIES[args.quantity][0]
    grid = parse_grid(args.quantity, args.grid)
    executor = _executor(args)
    try:
        records = sweep(fn, grid, executor, timeout=args.timeout)
    finally:
        if executor is not None:
            (executor.close if args.scheduler is not None else executor.shutdown)()
    keys = list(grid)
    rows = [([r[k] for k in keys], *_cells(r)) for r in records]
    columns = keys + ["value", "exact", "error"]
    if args.format == "json":
        # JSON has no inf/NaN: such a value (ξc at the edge of chaos) is null, its row index
        # listed under "nonfinite" with "inf", "-inf" or "nan" (as in 'vanishcalc table')
        nonfinite = {}

        def num(i, v):
            if isinstance(v, float) and not math.isfinite(v):
                nonfinite[str(i)] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
                return None
            return v
        out = [dict(zip(columns, [*pt, num(i, v), ex, er])) for i, (pt, v, ex, er) in
               enumerate(rows)]
        print(json.dumps({"quantity": args.quantity, "columns": columns, "rows": out,
                          "nonfinite": nonfinite}, ensure_ascii=False, indent=1,
                         allow_nan=False))
    elif args.format == "csv":
        import csv
        import io
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for pt, v, ex, er in rows:
            w.writerow([*pt, "" if v is None else (repr(v) if isinstance(v, float) else v),
                        ex or "", er or ""])
        print(buf.getvalue(), end="")
    else:
        print("| " + " | ".join(columns) + " |")
        print("|" + "|".join("---" for _ in columns) + "|")
        for pt, v, ex, er in rows:
            cells = [*map(str, pt), "—" if v is None else (repr(v) if isinstance(v, float) else
                                                          str(v)), ex or "", er or ""]
            print("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return 0
