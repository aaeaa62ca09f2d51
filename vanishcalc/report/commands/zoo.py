"""``vanishcalc zoo [NAME]``: the named nonlinearities, their definitions and references."""
from __future__ import annotations

EXAMPLES = """\
examples:
  vanishcalc zoo              # every name, with its definition
  vanishcalc zoo selu         # one entry, with the exact expression the tools use

Any zoo name can be used alone ('tanh'), called on an expression ('relu(x + 1)') or, where
it has a parameter, called with it ('leaky_relu(0.2)').  Names ignore letter case."""


def add_arguments(parser):
    parser.add_argument("name", nargs="?", help="show one entry in full (any letter case)")


def run(args) -> int:
    from ... import zoo
    from ...errors import VanishcalcError
    from ...value import ROUNDED_NOTE, closed_form_text
    aliases = {}
    for alias, target in zoo.ALIASES.items():
        aliases.setdefault(target, []).append(alias)
    if args.name is not None:
        entry = zoo.lookup(args.name)
        if entry is None:
            raise VanishcalcError(f"{args.name!r} is not a zoo name"
                                  f"{zoo.did_you_mean(args.name, zoo.names())}; "
                                  "'vanishcalc zoo' lists them")
        text, rounded = closed_form_text(entry.expr())
        lines = [f"name:       {entry.name}" + "".join(f" (alias {a})" for a in aliases.get(entry.name, [])),
                 f"definition: {entry.definition}",
                 f"expression: {text}" + (f"    ({ROUNDED_NOTE})" if rounded else "")]
        if entry.defaults:
            lines.append(f"parameters: {', '.join(str(d) for d in entry.defaults)} (default); "
                         f"e.g. {entry.name}(0.2)")
        if entry.reference:
            lines.append(f"reference:  {entry.reference}")
        print("\n".join(lines))
        return 0
    names = {e: e + "".join(f", {a}" for a in aliases.get(e, [])) for e in zoo.names()}
    width = max(map(len, names.values()))
    for name in zoo.names():
        entry = zoo.ZOO[name]
        ref = f"  [{entry.reference}]" if entry.reference else ""
        print(f"{names[name]:<{width}}  {entry.definition}{ref}")
    return 0
