"""Fast start: the facade loads nothing heavy (issue #3 §7)."""
from __future__ import annotations

import subprocess
import sys

import pytest

import vanishcalc


def test_import_gain_does_not_load_numba():
    code = ("import sys, vanishcalc\n"
            "g = vanishcalc.gain('relu')\n"
            "assert abs(float(g) - 2 ** 0.5) < 1e-15, g\n"
            "bad = sorted(m for m in ('numba', 'matplotlib') if m in sys.modules)\n"
            "print('heavy:', bad)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout, proc.stdout


def test_import_public_names_and_errors():
    for name in ("gain", "expect", "activation", "parse", "Value", "ParseError", "DivergenceError",
                 "ComplexValuedError", "SingularityError", "NonFiniteError", "NotConvergedError"):
        assert name in dir(vanishcalc)
    for err in (vanishcalc.ParseError, vanishcalc.DivergenceError, vanishcalc.ComplexValuedError,
                vanishcalc.SingularityError, vanishcalc.NonFiniteError, vanishcalc.NotConvergedError):
        assert issubclass(err, vanishcalc.VanishcalcError) and issubclass(err, ValueError)
    with pytest.raises(AttributeError):
        vanishcalc.no_such_name


def test_import_facade_names_are_functions_after_gain():
    code = ("import vanishcalc\n"
            "vanishcalc.gain('relu')\n"
            "assert callable(vanishcalc.activation), type(vanishcalc.activation)\n"
            "assert callable(vanishcalc.parse), type(vanishcalc.parse)\n"
            "vanishcalc.activation('tanh')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
