"""``vanishcalc table [SPECS…] [--sigma-b B] --format md|csv|json``: the init table."""
from __future__ import annotations


def add_arguments(parser):
    parser.add_argument("specs", nargs="*", help="zoo names or expressions in x (default: the zoo)")
    parser.add_argument("--sigma-b", type=float, default=0.0, help="bias scale σb (default 0)")
    parser.add_argument("--format", choices=["md", "csv", "json"], default="md")


def run(args) -> int:
    from ..table import init_table
    t = init_table(args.specs or None, sigma_b=args.sigma_b)
    print({"md": t.to_markdown, "csv": t.to_csv, "json": t.to_json}[args.format](), end="")
    return 0
