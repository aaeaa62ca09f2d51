"""vanishcalc init: the code line, run through the CLI's main()."""
from __future__ import annotations

import math

import pytest

from vanishcalc.cli import main


def test_init_prints_torch_line(capsys):
    assert main(["init", "exp(-x**2)", "--fan-in", "64", "--framework", "torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    std = float(out[1].split("std=")[1].split(")")[0])
    assert std == pytest.approx(5 ** 0.25 / 8, rel=1e-15)
    assert "zeros_(layer.bias)" in out[1]


def test_init_keras_and_jax_lines(capsys):
    assert main(["init", "relu", "--fan-in", "10", "--fan-out", "30", "--mode", "fan_avg",
                 "--framework", "keras"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "VarianceScaling(scale=2.0000000000000004, mode='fan_avg'" in line or \
        "VarianceScaling(scale=2.0" in line
    assert main(["init", "tanh", "--fan-in", "10", "--sigma-b", "0.1", "--framework", "jax"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert "normal(stddev=0.1)" in line and "variance_scaling(" in line


def test_init_bad_input_is_one_line(capsys):
    assert main(["init", "tanh", "--fan-in", "10", "--sigma-b", "0.1", "--convention", "std"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "method='gain'" in err
