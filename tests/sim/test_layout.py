"""The layout of ``vanishcalc/sim``: no import cycle, no private name imported across modules.

Read from the source with ``ast`` (every ``import``, at module level or inside a function:
a lazy import still ties two modules together), so this test imports nothing it checks.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import vanishcalc

SIM = Path(vanishcalc.__file__).parent / "sim"


def _imports(path: Path):
    """(module imported from, names) for every relative import of a sim module."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:                       # from .x import a / from . import x
                if node.module:
                    out.append((node.module, [a.name for a in node.names]))
                else:
                    out.extend((a.name, []) for a in node.names)
            elif node.level == 0 and (node.module or "").startswith("vanishcalc.sim."):
                out.append((node.module.split(".")[2], [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("vanishcalc.sim."):
                    out.append((a.name.split(".")[2], []))
    return out


def _graph():
    modules = {p.stem for p in SIM.glob("*.py") if p.stem != "__init__"}
    return modules, {m: _imports(SIM / f"{m}.py") for m in modules}


def test_sim_modules_have_no_import_cycle():
    modules, imports = _graph()
    edges = {m: sorted({t for t, _ in imports[m] if t in modules and t != m}) for m in modules}
    state: dict = {}
    path: list = []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for t in edges[m]:
            if state.get(t) == "open":
                cycle = path[path.index(t):] + [t]
                raise AssertionError("import cycle in vanishcalc.sim: " + " → ".join(cycle))
            if t not in state:
                visit(t)
        path.pop()
        state[m] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m)


def test_no_private_name_imported_across_sim_modules():
    modules, imports = _graph()
    bad = [f"{m}: from .{t} import {n}" for m in sorted(modules) for t, names in imports[m]
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_layout_checker_sees_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    # The two checks above could pass by reading nothing: show they catch both faults.
    (tmp_path / "a.py").write_text("from .b import _helper\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    monkeypatch.setattr(sys.modules[__name__], "SIM", tmp_path)
    with pytest.raises(AssertionError, match="cycle"):
        test_sim_modules_have_no_import_cycle()
    with pytest.raises(AssertionError, match="_helper"):
        test_no_private_name_imported_across_sim_modules()
