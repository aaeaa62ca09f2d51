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


# ---------------------------------------------------------------- a CLI a user can learn from

def _subparsers():
    import argparse

    from vanishcalc.cli import build_parser
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return parser, sub.choices


def test_cli_version(capsys):
    import vanishcalc
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"vanishcalc {vanishcalc.__version__}"


def test_cli_every_option_has_help():
    _, commands = _subparsers()
    assert {"gain", "table", "meanfield", "check", "bn", "zoo"} <= set(commands)
    for name, parser in commands.items():
        for action in parser._actions:
            assert action.help, f"vanishcalc {name} {action.option_strings or action.dest}: no help text"


def test_cli_help_is_for_users_no_source_paths():
    parser, commands = _subparsers()
    for text in [parser.format_help(), *(p.format_help() for p in commands.values())]:
        assert ".py" not in text and "vanishcalc/" not in text and "``" not in text, text


def test_cli_zoo_lists_every_name_with_its_definition(capsys):
    from vanishcalc import zoo
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(zoo.names())
    for line, name in zip(out, zoo.names()):
        assert line.startswith(name) and zoo.ZOO[name].definition in line


def test_cli_zoo_one_entry_any_case_and_suggestion(capsys):
    assert main(["zoo", "SELU"]) == 0
    out = capsys.readouterr().out
    assert "Klambauer" in out and "1.6732632*exp(x)" in out and "8 digits" in out
    assert main(["zoo", "rleu"]) == 2
    assert "did you mean 'relu'?" in capsys.readouterr().err


def test_cli_names_any_case_and_did_you_mean(capsys):
    assert main(["gain", "ReLU"]) == 0
    assert "sqrt(2)" in capsys.readouterr().out
    assert main(["gain", "sigmod"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "did you mean 'sigmoid'?" in err


def test_cli_prints_the_digits_python_prints(capsys):
    # N(sqrt(2), 17) is 1.4142135623730950; Python (and every other vanishcalc print) says ...951
    assert main(["gain", "relu"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == repr(2 ** 0.5)
    assert main(["gain", "relu", "--digits", "30"]) == 0
    assert "1.41421356237309504880168872421" in capsys.readouterr().out


def test_cli_meanfield_prints_python_digits(capsys):
    from vanishcalc import MeanField
    assert main(["meanfield", "tanh", "--sigma-w", "1.5", "--sigma-b", "0.3"]) == 0
    out = capsys.readouterr().out
    mf = MeanField("tanh", 1.5, 0.3)
    assert f"chi1  = {float(mf.chi1())!r}" in out


def test_cli_numeric_options_take_constant_expressions(capsys):
    from vanishcalc import MeanField
    assert main(["meanfield", "tanh", "--sigma-w", "sqrt(2)", "--sigma-b", "1/10"]) == 0
    out = capsys.readouterr().out
    assert f"chi1  = {float(MeanField('tanh', 2 ** 0.5, 0.1).chi1())!r}" in out
    assert main(["gain", "relu", "--q", "2*pi"]) == 0
    for bad in ("x", "relu", "__import__('os')", "sqrt(-1)"):
        with pytest.raises(SystemExit) as info:
            main(["gain", "relu", "--q", bad])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--q" in err[0], err


def test_cli_integer_options_take_integer_expressions(capsys):
    from vanishcalc.report.commands import count
    assert count("10**6") == 10 ** 6 and count("1e9") == 10 ** 9
    with pytest.raises(SystemExit):
        main(["meanfield", "tanh", "--sigma-w", "1", "--depth", "2.5"])
    assert "not an integer" in capsys.readouterr().err


@pytest.mark.parametrize("argv, value", [
    (["gain", "-x"], "1.0"),
    (["gain", "-x**3"], repr(15 ** -0.5)),
    (["gain", "-tanh(x)", "--q", "1"], None),
])
def test_cli_expression_starting_with_minus_is_not_an_option(argv, value, capsys):
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    if value is not None:
        assert out.splitlines()[-1].split()[-1] == value


def test_cli_negative_option_value_reaches_the_library(capsys):
    assert main(["meanfield", "tanh", "--sigma-w", "1", "--sigma-b", "-sqrt(2)"]) == 2
    err = capsys.readouterr().err
    assert "sigma_b" in err and "≥ 0" in err


@pytest.mark.parametrize("exc, status, piece", [
    (__import__("vanishcalc").VanishcalcError("bad φ\nsecond line"), 2, "bad φ second line"),
    (MemoryError(), 2, "out of memory"),
    (KeyboardInterrupt(), 2, "interrupted"),
    (ZeroDivisionError("float division by zero"), 3, "internal error ZeroDivisionError"),
])
def test_cli_every_failure_is_one_line_never_a_traceback(exc, status, piece, monkeypatch, capsys):
    from vanishcalc.report.commands import gain as gain_command

    def boom(args):
        raise exc
    monkeypatch.setattr(gain_command, "run", boom)
    monkeypatch.delenv("VANISHCALC_TRACEBACK", raising=False)
    assert main(["gain", "relu"]) == status
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("vanishcalc gain: error: ") and piece in err[0], err


def test_cli_warnings_are_one_line_without_source_paths(monkeypatch, capsys):
    import warnings

    from vanishcalc import VanishcalcWarning
    from vanishcalc.report.commands import gain as gain_command

    def warn(args):
        warnings.warn("accuracy is limited", VanishcalcWarning)
        return 0
    monkeypatch.setattr(gain_command, "run", warn)
    assert main(["gain", "relu"]) == 0
    assert capsys.readouterr().err == "vanishcalc gain: warning: accuracy is limited\n"


def test_cli_huge_batch_is_one_line_not_a_traceback():
    # issue 11.1: this printed a SystemError traceback from inside a Numba kernel
    proc = subprocess.run([sys.executable, "-m", "vanishcalc", "bn", "tanh", "--batch", "1000000000"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (2, 3) and proc.stdout == ""
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cli_table_json_writes_numbers_and_names_infinities(capsys):
    import json
    assert main(["table", "relu", "--format", "json"]) == 0
    text = capsys.readouterr().out

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")
    data = json.loads(text, parse_constant=no_constants)
    row = data["rows"][0]
    assert row["xi_c"] is None and data["nonfinite"] == {"relu.xi_c": "inf"}
    for column, value in row.items():
        if column not in ("name", "expression", "closed_form"):
            assert value is None or isinstance(value, (int, float)), (column, value)


def test_cli_transform_dks_prints_parameters_and_conditions(capsys):
    assert main(["transform", "tanh", "--method", "dks", "--depth", "100"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    values = {k.strip(): v for k, v in (line.split(" = ", 1) for line in out.splitlines()
                                          if line.startswith(("input_", "output_")))}
    # DKS's tanh at depth 100, ζ = 1.5 (dks 0.0904379448890…, its local target is a 1e-8 bisection)
    assert abs(float(values["input_scale"]) - 0.0904379449) < 1e-9
    assert "C'_f(1) = C'(1)^100" in out and "target 1.5" in out


def test_cli_transform_tat_leaky_relu_prints_negative_slope(capsys):
    assert main(["transform", "leaky_relu", "--method", "tat", "--depth", "100", "--eta", "0.9"]) == 0
    out, _ = capsys.readouterr()
    assert "negative_slope = 0.57043953" in out


@pytest.mark.parametrize("argv, piece", [
    (["transform", "relu", "--method", "tat", "--depth", "10"], "leaky_relu"),
    (["transform", "tanh", "--depth", "0"], "depth"),
    (["transform", "tanh", "--depth", "10", "--zeta", "0.9"], "zeta"),
    (["transform", "tanh", "--method", "tat", "--depth", "10", "--eta", "0.5"], "eta"),
])
def test_cli_transform_bad_input_exit_2_one_line(argv, piece, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vanishcalc transform: error:"), err
    assert piece in lines[0], lines[0]


def test_cli_closed_pipe_is_not_an_internal_error():
    """`vanishcalc phase … | head -1`: the reader leaves early; the command stops quietly
    (exit 0, nothing on stderr) instead of reporting 'internal error BrokenPipeError'."""
    code = ("import sys; from vanishcalc.cli import main; "
            "sys.exit(main(['phase', 'tanh', '--sigma-w', '1:2:40', '--sigma-b', '0:0.2:4']))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()                        # the reader goes away, as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "internal error" not in err and "Traceback" not in err


def test_cli_table_transform_columns(capsys):
    """`table --transform dks --depth L` adds the transform's a, b, c, s (the solver is tested
    against mpmath and dks in tests/solve/test_transform.py); a target without --transform is
    refused with exit 2."""
    assert main(["table", "tanh", "--transform", "dks", "--depth", "100", "--format", "csv"]) == 0
    head, row = capsys.readouterr().out.splitlines()[:2]
    assert "transform_input_scale" in head and "transform_output_scale" in head
    from vanishcalc import transform
    t = transform("tanh", "dks", depth=100)
    cells = dict(zip(head.split(","), row.split(",")))
    assert float(cells["transform_input_scale"]) == pytest.approx(float(t.input_scale), rel=1e-7)
    assert main(["table", "tanh", "--zeta", "2"]) == 2
    assert "applies only with transform" in capsys.readouterr().err
