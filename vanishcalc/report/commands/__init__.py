"""The CLI's subcommands, one module each, and the option types they share.

Numeric options read a number or a constant expression (``--sigma-w 'sqrt(2)'``) through the
same AST-whitelist parser as φ (:func:`vanishcalc.parse`): nothing typed is ever eval'ed.
"""
from __future__ import annotations

import argparse


def _constant(text):
    from ...errors import ParseError
    from ...parse import parse
    try:
        expr = parse(text)
    except ParseError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: {exc}") from None
    if expr.free_symbols:
        raise argparse.ArgumentTypeError(
            f"{text!r} depends on x; give a number or a constant expression such as 'sqrt(2)'")
    if not expr.is_real:
        raise argparse.ArgumentTypeError(f"{text!r} is not a real number")
    return expr


def number(text: str) -> float:
    """A real number or constant expression: '1.5', '-0.3', 'sqrt(2)', '2/3', '1e-3'.

    >>> number("sqrt(2)")
    1.4142135623730951
    """
    import sympy
    if text.strip().lower().lstrip("+-") in ("inf", "nan"):
        return float(text)     # the command then says what range the option needs
    return float(sympy.N(_constant(text), 30))      # correctly rounded to a double


def count(text: str) -> int:
    """An integer, also as an exact expression: '1000', '10**6', '1e9'.

    >>> count("2**10")
    1024
    """
    expr = _constant(text)
    if not expr.is_integer:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    return int(expr)
