"""``vanishcalc phase``: the phase diagram grid as csv/json, and its --plot."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest

from vanishcalc.cli import main


def test_phase_cli_relu_csv_closed_forms(capsys):
    # relu: E[relu(√q z)²] = q/2, so q* = σb² / (1 − σw²/2) for σw < √2 and χ1 = σw²/2
    # (Schoenholz et al. 2017); σw > √2 diverges; σb = 0, σw < √2 collapses to q = 0
    assert main(["phase", "relu", "--sigma-w", "0.5:1:2", "--sigma-b", "0,0.5"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(float(r["sigma_w"]), float(r["sigma_b"])) for r in rows] == [
        (0.5, 0.0), (0.5, 0.5), (1.0, 0.0), (1.0, 0.5)]
    for r in rows:
        w, b = float(r["sigma_w"]), float(r["sigma_b"])
        assert float(r["chi1"]) == pytest.approx(w * w / 2, rel=1e-12)
        if b == 0:
            assert r["status"] == "collapsed" and float(r["q_star"]) == 0.0
        else:
            assert r["status"] == "ok"
            assert float(r["q_star"]) == pytest.approx(b * b / (1 - w * w / 2), rel=1e-10)
    assert main(["phase", "relu", "--sigma-w", "2", "--sigma-b", "0.1"]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["status"] == "diverged" and float(row["q_star"]) == math.inf


def test_phase_cli_json_nonfinite_listed(capsys):
    assert main(["phase", "relu", "--sigma-w", "sqrt(2)", "--sigma-b", "0", "--format",
                 "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"][:3] == ["sigma_w", "sigma_b", "status"]
    assert len(out["rows"]) == 1


def test_phase_cli_plot(tmp_path, capsys):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    path = tmp_path / "phase.png"
    assert main(["phase", "tanh", "--sigma-w", "0.8:2.4:9", "--sigma-b", "0:0.5:6",
                 "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.startswith("sigma_w,sigma_b,status")


@pytest.mark.parametrize("argv, piece", [
    (["phase", "tanh", "--sigma-w", "1:2:0", "--sigma-b", "0"], "N ≥ 1"),      # argparse: exits
    (["phase", "tanh", "--sigma-w", "-1", "--sigma-b", "0"], "sigma_w"),
    (["phase", "tanh", "--sigma-w", "1", "--sigma-b", "0", "--plot", "p.txt"], ".png"),
])
def test_phase_cli_bad_input_one_line_exit_2(argv, piece, capsys):
    pytest.importorskip("matplotlib")
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and piece in err, err
