"""``vanishcalc sweep``: grid options, output formats, failing points, bad specs."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest

from vanishcalc.cli import main
from vanishcalc.report.commands.sweep import parse_grid, split_values


def test_sweep_cli_gain_grid_json_closed_forms_and_errors(capsys):
    assert main(["sweep", "gain", "--grid", "spec=relu,max(x, 0),exp(x**2)",
                 "--grid", "q=0.5,2", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"] == ["spec", "q", "value", "exact", "error"]
    rows = out["rows"]
    assert [(r["spec"], r["q"]) for r in rows] == [
        ("relu", 0.5), ("relu", 2.0), ("max(x, 0)", 0.5), ("max(x, 0)", 2.0),
        ("exp(x**2)", 0.5), ("exp(x**2)", 2.0)]
    for r in rows[:4]:          # relu's gain is √2 at every q (positively homogeneous)
        assert r["value"] == pytest.approx(math.sqrt(2), rel=1e-15) and r["exact"] == "sqrt(2)"
        assert r["error"] is None
    for r in rows[4:]:          # E[exp(2x²)] diverges for q ≥ 1/4: recorded, not fatal
        assert r["value"] is None and r["error"].startswith("DivergenceError")


def test_sweep_cli_linspace_csv_chi1_relu(capsys):
    # relu: χ1 = σw² E[1{z>0}] = σw²/2 (Schoenholz et al. 2017, any q*; q* finite for σw < √2)
    assert main(["sweep", "chi1", "--grid", "spec=relu", "--grid", "sigma_w=0.5:1.25:4",
                 "--grid", "sigma_b=0.5", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [float(r["sigma_w"]) for r in rows] == [0.5, 0.75, 1.0, 1.25]
    for r in rows:
        assert float(r["value"]) == pytest.approx(float(r["sigma_w"]) ** 2 / 2, rel=1e-12)


def test_sweep_cli_workers_same_table_as_serial(capsys):
    argv = ["sweep", "gain", "--grid", "spec=relu,tanh,exp(-x**2)", "--format", "csv"]
    assert main(argv) == 0
    serial = capsys.readouterr().out
    assert main(argv + ["--workers", "2"]) == 0
    assert capsys.readouterr().out == serial


def test_sweep_cli_markdown_nonfinite_and_pipe_escaped(capsys):
    # relu at σw = √2, σb = 0 sits on the edge of chaos: ξc = ∞
    assert main(["sweep", "xi_c", "--grid", "spec=relu,abs(x)", "--grid",
                 "sigma_w=sqrt(2)"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| spec | sigma_w | value | exact | error |"
    assert len(lines) == 4 and all(l.count(" | ") == 4 for l in lines[2:])
    assert "| inf |" in lines[2]


@pytest.mark.parametrize("argv, piece", [
    (["sweep", "chi1", "--grid", "spec=tanh"], "needs --grid for sigma_w"),
    (["sweep", "chi1", "--grid", "spec=tanh", "--grid", "sigma_w=1", "--grid", "foo=1"],
     "no parameter 'foo'"),
    (["sweep", "gain", "--grid", "spec"], "NAME=V1,V2"),
    (["sweep", "gain", "--grid", "spec=relu", "--grid", "spec=tanh"], "twice"),
    (["sweep", "gain", "--grid", "spec=relu", "--grid", "q=1,abc"], "--grid q"),
    (["sweep", "gain", "--grid", "spec=relu", "--grid", "q=1:2:0"], "N ≥ 1"),
    (["sweep", "gain", "--grid", "spec=relu,,tanh"], "empty value"),
    (["sweep", "check", "--grid", "spec=tanh", "--grid", "sigma_w=1", "--grid", "depth=1:4:3",
      "--grid", "width=8"], "integers"),
])
def test_sweep_cli_bad_spec_one_line_exit_2(argv, piece, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("vanishcalc sweep: error:") and piece in err, err


def test_sweep_cli_timeout_serial(capsys):
    assert main(["sweep", "gain", "--grid", "spec=relu", "--timeout", "30"]) == 0
    assert "sqrt(2)" in capsys.readouterr().out


def test_split_values_keeps_commas_in_parentheses():
    assert split_values("relu,max(x,0),min(max(x,-1),1)") == ["relu", "max(x,0)",
                                                             "min(max(x,-1),1)"]


def test_parse_grid_types():
    g = parse_grid("check", ["spec=tanh", "sigma_w=sqrt(2)", "depth=2,4", "width=8"])
    assert g == {"spec": ["tanh"], "sigma_w": [math.sqrt(2)], "depth": [2, 4], "width": [8]}
    assert all(type(d) is int for d in g["depth"])


def test_sweep_cli_scheduler_address_of_a_local_cluster(capsys):
    distributed = pytest.importorskip("distributed")
    argv = ["sweep", "gain", "--grid", "spec=relu,exp(-x**2)", "--format", "csv"]
    assert main(argv) == 0
    serial = capsys.readouterr().out
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        assert main(argv + ["--scheduler", cluster.scheduler_address]) == 0
    assert capsys.readouterr().out == serial
