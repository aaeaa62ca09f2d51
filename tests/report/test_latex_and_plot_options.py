"""init_table(format="latex") / ``vanishcalc table --format latex`` and the ``--plot FILE``
options of meanfield, check and table."""
from __future__ import annotations

import re

import pytest
import sympy

from vanishcalc.cli import main
from vanishcalc.errors import VanishcalcError
from vanishcalc.report.table import COLUMNS, InitTable, _latex_escape, init_table

UNESCAPED_AMP = re.compile(r"(?<!\\)&")
UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def body_rows(tex):
    lines = tex.splitlines()
    start, stop = lines.index(r"\midrule"), lines.index(r"\bottomrule")
    return lines[lines.index(r"\toprule") + 1], lines[start + 1:stop]


def assert_balanced(cell):
    depth = 0
    for ch in re.sub(r"\\[{}]", "", cell):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, cell
    assert depth == 0, cell
    assert len(UNESCAPED_DOLLAR.findall(cell)) % 2 == 0, cell
    assert "$$" not in cell.replace(r"\$", ""), cell      # "$$" would open display math


def test_init_table_latex_structure_and_closed_forms():
    tex = init_table(["relu", "exp(-x**2)", "tanh"], format="latex")
    assert r"\begin{tabular}{ll" + "r" * (len(COLUMNS) - 2) + "}" in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    head, rows = body_rows(tex)
    assert len(rows) == 3
    for line in [head, *rows]:
        assert line.endswith(r" \\")
        cells = UNESCAPED_AMP.split(line[:-3])
        assert len(cells) == len(COLUMNS), line
        for cell in cells:
            assert_balanced(cell)
    relu, gauss, tanh = ({c: v.strip() for c, v in zip(COLUMNS, UNESCAPED_AMP.split(r[:-3]))}
                         for r in rows)
    # closed forms kept with their decimals: √2 for relu (He et al. 2015); 5^{1/4} for
    # exp(-x²): E[e^{-2z²}] = 1/√5, gain = 5^{1/4}
    assert relu["gain_second_moment"] == r"$\sqrt{2} \approx 1.4142136$"
    assert gauss["gain_second_moment"] == f"${sympy.latex(sympy.root(5, 4))} \\approx 1.4953488$"
    assert gauss["name"] == r"\texttt{exp(-x**2)}"
    assert gauss["expression"] == f"${sympy.latex(sympy.exp(-sympy.Symbol('x') ** 2))}$"
    assert tanh["closed_form"] == "---"                     # no closed form: the dash
    assert re.fullmatch(r"\$1\.59253\d*\$", tanh["gain_second_moment"])
    assert relu["xi_c"] == r"$\infty$"
    assert r"$\chi_1$ there" in head and r"critical $\sigma_w$" in head


def test_latex_escapes_special_characters_in_names_and_notes():
    assert _latex_escape("a_b & 50% #1 $x {y} ~ ^ \\") == (
        r"a\_b \& 50\% \#1 \$x \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{}")
    row = dict.fromkeys(COLUMNS)
    row.update(name="my_phi%", expression="x", gain_second_moment=1.0)
    t = InitTable(rows=[row], sigma_b=0.0, notes={"my_phi%.gain_std": "σw ≥ 0 & q* → ∞"})
    tex = t.to_latex()
    _, (line,) = body_rows(tex)
    cells = UNESCAPED_AMP.split(line[:-3])
    assert len(cells) == len(COLUMNS)
    assert cells[0].strip() == r"\texttt{my\_phi\%}"
    assert r"my\_phi\%.gain\_std: $\sigma_w$ $\geq$ 0 \& $q^*$ $\to$ $\infty$\par" in tex


def test_init_table_unknown_format_named():
    with pytest.raises(VanishcalcError, match="format"):
        init_table(["relu"], format="xlsx")


def test_cli_table_format_latex(capsys):
    assert main(["table", "relu", "--format", "latex"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("% vanishcalc init table") and r"\sqrt{2}" in out


# ---------------------------------------------------------------- --plot FILE

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def agg():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")


def test_cli_meanfield_plot_writes_png_and_same_text(agg, tmp_path, capsys):
    argv = ["meanfield", "tanh", "--sigma-w", "1.5", "--sigma-b", "0.3", "--depth", "5"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert main(argv + ["--plot", str(tmp_path / "mf.png")]) == 0
    assert capsys.readouterr().out == text
    assert (tmp_path / "mf.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("argv, piece", [
    (["meanfield", "tanh", "--sigma-w", "1.5", "--plot", "x.png"], "--depth"),
    (["meanfield", "tanh", "--sigma-w", "1.5", "--depth", "3", "--plot", "x.docx"], ".png"),
    (["table", "relu", "--plot", "/no/such/folder/t.png"], "does not exist"),
    (["check", "tanh", "--sigma-w", "1", "--depth", "2", "--width", "4", "--plot", "c.xyz"],
     ".pdf"),
])
def test_cli_plot_bad_file_one_line_before_computing(agg, argv, piece, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and piece in err, err


def test_cli_table_plot(agg, tmp_path, capsys):
    assert main(["table", "relu", "tanh", "--plot", str(tmp_path / "t.svg")]) == 0
    assert "relu" in capsys.readouterr().out
    assert b"<svg" in (tmp_path / "t.svg").read_bytes()[:2000]


def test_cli_check_plot(agg, tmp_path, capsys):
    code = main(["check", "tanh", "--sigma-w", "1.2", "--depth", "3", "--width", "16",
                 "--nets", "4", "--plot", str(tmp_path / "c.pdf")])
    assert code in (0, 1, 3)
    assert "check φ = tanh" in capsys.readouterr().out
    assert (tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"
