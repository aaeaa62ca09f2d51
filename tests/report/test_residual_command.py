"""``vanishcalc residual``: α for a depth, the growth law, dropout ξc; bad input → status 2."""
from __future__ import annotations

import math
import re

import pytest

from vanishcalc.cli import main


def test_residual_cli_relu_alpha_closed_form(capsys):
    # relu, no norm, σw = 1 on both Dense layers: r = (1 + α²/2)^L, α* = √(2(T^{1/L} − 1))
    assert main(["residual", "relu", "--depth", "40", "--target", "2"]) == 0
    out = capsys.readouterr().out
    alpha = float(re.search(r"alpha = ([0-9.e+-]+)", out).group(1))
    assert alpha == pytest.approx(math.sqrt(2 * (2 ** (1 / 40) - 1)), rel=1e-10)
    assert "geometric" in out


def test_residual_cli_dropout_xi_c_finite_below_keep_one(capsys):
    assert main(["residual", "tanh", "--depth", "5", "--keep", "1", "0.9",
                 "--sigma-b", "0.3"]) == 0
    out = capsys.readouterr().out
    xis = re.findall(r"xi_c = ([^,]+),", out)
    assert xis[0] == "inf" and math.isfinite(float(xis[1]))


@pytest.mark.parametrize("argv, word", [
    (["residual", "tanh", "--depth", "5", "--keep", "1.5"], "keep"),
    (["residual", "tanh", "--depth", "5", "--alpha", "-1"], "alpha"),
    (["residual", "tanh", "--depth", "5", "--target", "0.5"], "target"),
])
def test_residual_cli_bad_input_one_line_status_2(capsys, argv, word):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert word in err and len(err.strip().splitlines()) == 1
