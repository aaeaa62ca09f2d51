"""The README is tested: its Python examples run as doctests, its shell examples run through the
CLI, and .ci/run runs exactly the install and test commands it gives a new user."""
from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# The examples that simulate networks compile Numba kernels on a fresh machine (tens of seconds).
NEEDS_NUMBA = re.compile(r"\b(simulate|check|check_rnn)\(")


def _fenced(language):
    """(line number of the first content line, text) of every ```language block of the README."""
    blocks, current, start = [], None, 0
    for number, row in enumerate(README.splitlines(), 1):
        if row.startswith("```"):
            if current is None:
                current, start = (row[3:].strip(), []), number + 1
            else:
                if current[0] == language:
                    blocks.append((start, "".join(r + "\n" for r in current[1])))
                current = None
        elif current is not None:
            current[1].append(row)
    return blocks


_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:e[-+]?\d+)?")


class _DigitsChecker(doctest.OutputChecker):
    """The README shows real outputs, but it is documentation, not a pin of the last digit:
    an output matches when its words match and each number agrees with the README's to 1e-12
    relative (values) or within a factor of 100 (an error bar, the number after '±').  The
    certification itself — |value − truth| ≤ error — is tested against mpmath elsewhere."""

    def check_output(self, want, got, optionflags):
        if super().check_output(want, got, optionflags):
            return True
        w_nums, g_nums = _NUMBER.findall(want), _NUMBER.findall(got)
        if len(w_nums) != len(g_nums) or not w_nums:
            return False
        if not super().check_output(_NUMBER.sub("0", want), _NUMBER.sub("0", got), optionflags):
            return False
        bars = {m.end() for m in re.finditer(r"±\s*", want)}
        starts = [m.start() for m in _NUMBER.finditer(want)]
        for start, w, g in zip(starts, w_nums, g_nums):
            a, b = float(w), float(g)
            if start in bars:
                if not (a == b == 0 or (a > 0 and b > 0 and 0.01 <= b / a <= 100)):
                    return False
            elif abs(a - b) > 1e-12 * max(abs(a), abs(b)):
                return False
        return True


def _python_params():
    params = []
    for line, text in _fenced("python"):
        marks = [pytest.mark.slow] if NEEDS_NUMBA.search(text) else []
        params.append(pytest.param(line, text, marks=marks, id=f"README.md:{line}"))
    return params


@pytest.mark.parametrize("line, text", _python_params())
def test_readme_python_example(line, text):
    """Each ```python block is a doctest of its own (it imports what it uses)."""
    test = doctest.DocTestParser().get_doctest(text, {}, f"README.md:{line}", str(ROOT / "README.md"),
                                               line - 1)
    assert test.examples, f"README.md:{line} has no >>> examples"
    runner = doctest.DocTestRunner(checker=_DigitsChecker(),
                                   optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} README example(s) at README.md:{line} failed (see stdout)"


def _shell_examples():
    """($ command, expected output lines) from the README's plain ``` blocks."""
    examples = []
    for line, text in _fenced(""):
        current = None
        for row in text.splitlines():
            if row.startswith("$ "):
                current = (row[2:], [])
                examples.append(pytest.param(*current, id=f"README.md:{line}:{row[2:40]}"))
            elif current is not None:
                current[1].append(row)
    return examples


@pytest.mark.parametrize("command, expected", _shell_examples())
def test_readme_shell_example(command, expected, capsys):
    from vanishcalc.cli import main
    argv = shlex.split(command, comments=True)
    assert argv[0] == "vanishcalc"
    status = main(argv[1:])
    cap = capsys.readouterr()
    got = (cap.out + cap.err).splitlines()
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected):
        pattern = ".*".join(re.escape(piece) for piece in e.split("…"))
        assert re.fullmatch(pattern, g), (g, e)
    assert status == (2 if cap.err else 0)


def test_ci_runs_exactly_the_readme_commands():
    """A new user types the README's first ```bash block; CI must run the very same lines."""
    (line, text), *_ = _fenced("bash")
    commands = [shlex.split(row, comments=True) for row in text.splitlines()]
    commands = [row.split("#")[0].strip() for row, words in zip(text.splitlines(), commands) if words]
    ci_lines = [row.strip() for row in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "pytest" in commands
    for command in commands:
        assert command in ci_lines, f".ci/run does not run the README's {command!r} (README.md:{line})"
    assert "set -euo pipefail" in ci_lines     # pytest's exit code 5 (no tests) fails the run


def test_readme_zoo_table_is_the_zoo():
    from vanishcalc import zoo
    table = README[README.index("## The zoo"):]
    names = re.findall(r"^\| `(\w+)`", table, re.M)
    assert names == zoo.names()


def test_readme_checker_accepts_last_digits_not_other_numbers():
    c, flags = _DigitsChecker(), doctest.NORMALIZE_WHITESPACE
    assert c.check_output("1.3955839751549022 ± 2.0e-14 (x)\n", "1.3955839751549024 ± 1.2e-14 (x)\n", flags)
    assert not c.check_output("1.3955839751549022 ± 2.0e-14 (x)\n", "1.3955839751 ± 2.0e-14 (x)\n", flags)
    assert not c.check_output("1.39 ± 2.0e-14 (x)\n", "1.39 ± 2.0e-10 (x)\n", flags)
    assert not c.check_output("1.39 (exact)\n", "1.39 (numeric)\n", flags)
