"""``vanishcalc spectrum``: the Jacobian spectrum on stdout; bad input → one line, exit 2."""
from __future__ import annotations

import pytest

from vanishcalc.cli import main


def test_cli_spectrum_relu_orthogonal(capsys):
    assert main(["spectrum", "relu", "--sigma-w", "sqrt(2)", "--depth", "4",
                 "--weights", "orthogonal"]) == 0
    out, err = capsys.readouterr()
    assert "spread      = variance/m1^2 = 4.0" in out
    assert "P(eigenvalue 0) = 0.5" in out
    assert err == ""


def test_cli_spectrum_density_table(capsys):
    assert main(["spectrum", "tanh", "--sigma-w", "1.2", "--sigma-b", "0.1", "--depth", "3",
                 "--density"]) == 0
    out, _ = capsys.readouterr()
    assert "density checks" in out and "lambda" in out


@pytest.mark.parametrize("argv, piece", [
    (["spectrum", "tanh", "--sigma-w", "1.2", "--depth", "0"], "depth = 0 must be ≥ 1"),
    (["spectrum", "tanh", "--sigma-w", "1.2", "--depth", "3", "--weights", "haar"],
     "'orthogonal'"),
    (["spectrum", "relu", "--sigma-w", "2", "--depth", "3"], "without bound"),
])
def test_cli_spectrum_bad_input_one_line(capsys, argv, piece):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and piece in err
