"""The ``vanishcalc gain`` command: closed form + value on stdout; bad input → one line, exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest

from vanishcalc.cli import main


def test_cli_gain_prints_closed_form(capsys):
    assert main(["gain", "exp(-x**2)"]) == 0
    out, err = capsys.readouterr()
    assert "5**(1/4)" in out
    assert "1.495348781221220" in out
    assert err == ""


def test_cli_gain_numeric_prints_value_and_error(capsys):
    assert main(["gain", "tanh", "--digits", "12"]) == 0
    out, _ = capsys.readouterr()
    assert "1.59253741972" in out and "±" in out


def test_cli_gain_convention_and_q(capsys):
    assert main(["gain", "relu", "--convention", "backward", "--q", "4"]) == 0
    out, _ = capsys.readouterr()
    assert "sqrt(2)" in out


@pytest.mark.parametrize("argv, piece", [
    (["gain", "exp(x**2)"], "does not exist"),
    (["gain", "sqrt(x)"], "complex"),
    (["gain", "1/x"], "singular"),
    (["gain", "__import__('os')"], "__"),
    (["gain", "y"], "'y'"),
    (["gain", "relu", "--q", "0"], "q must be > 0"),
    (["gain", "relu", "--digits", "0"], "--digits"),
])
def test_cli_bad_input_exit_2_one_line(argv, piece, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("vanishcalc gain: error:")
    assert piece in lines[0], lines[0]


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["gain", "relu", "--convention", "kaiming"])
    assert info.value.code == 2


def test_cli_python_dash_m_subprocess():
    proc = subprocess.run([sys.executable, "-m", "vanishcalc", "gain", "relu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sqrt(2)" in proc.stdout
    assert "1.414213562373095" in proc.stdout


def test_cli_argparse_type_error_is_one_line_exit_2(capsys):
    # argparse would print a usage block first; the CLI promises one line naming the problem.
    with pytest.raises(SystemExit) as info:
        main(["gain", "relu", "--q", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--q" in err[0]
