"""The layout of ``vanishcalc/sim``: no import cycle, no private name imported across modules,
and arrows that point down only (api → cpu | cuda → program, source).

Read from the source with ``ast`` (every ``import``, at module level or inside a function:
a lazy import still ties two modules together), so this test imports nothing it checks.
Modules are named by their dotted path below ``sim`` (``api``, ``cpu.dense``, ``cuda``
for ``cuda/__init__.py``).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import vanishcalc

SIM = Path(vanishcalc.__file__).parent / "sim"


def _name(path: Path) -> str:
    parts = list(path.relative_to(SIM).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(base: list, level: int, module: str | None) -> str | None:
    """The sim-relative dotted name of ``from {'.' * level}{module}``, None outside sim."""
    if level - 1 > len(base):
        return None
    parts = base[:len(base) - (level - 1)] + (module.split(".") if module else [])
    return ".".join(parts)


def _imports(path: Path):
    """(sim module imported from, names) for every import of a sim module by ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    name = _name(path)
    package = name.split(".") if path.stem == "__init__" else name.split(".")[:-1]
    if name == "":
        package = []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level >= 1:                        # from .x import a / from .. import x
                target = _resolve(package, node.level, node.module)
                if target is None:
                    continue
                if node.module:
                    out.append((target, [a.name for a in node.names]))
                else:
                    out.extend(((target + "." if target else "") + a.name, [])
                               for a in node.names)
            elif (node.module or "").startswith("vanishcalc.sim."):
                out.append((node.module[len("vanishcalc.sim."):], [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("vanishcalc.sim."):
                    out.append((a.name[len("vanishcalc.sim."):], []))
    return out


def _graph():
    paths = {_name(p): p for p in SIM.rglob("*.py")}
    modules = {m for m in paths if m}
    imports = {}
    for m in modules:
        found = []
        for t, names in _imports(paths[m]):
            # ``from .cuda import composed``: the submodule, when the name is one
            subs = [f"{t}.{n}" for n in names if f"{t}.{n}" in modules]
            found.append((t, [n for n in names if f"{t}.{n}" not in modules]))
            found.extend((s, []) for s in subs)
        imports[m] = found
    return modules, imports


def _edges(modules, imports):
    """m → the sim modules it imports, itself and its own package (``__init__``) left out."""
    def own(m, t):
        return t == m or m.startswith(t + ".")
    return {m: sorted({t for t, _ in imports[m] if t in modules and not own(m, t)})
            for m in modules}


def test_sim_modules_have_no_import_cycle():
    modules, imports = _graph()
    edges = _edges(modules, imports)
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


# Which layer each module is in; a module may import only from a lower layer (or its own
# backend package).  Front door and tools on top, the two backends in the middle, the
# backend-neutral program and shared sources at the bottom.
_LAYERS = {
    "top": ("api", "check", "composed", "ptx", "jacobian"),
    "backend": ("cpu", "cuda"),
    "base": ("program", "source", "compile", "seeds", "limits", "summary"),
}


def _layer(m):
    head = m.split(".")[0]
    for layer, heads in _LAYERS.items():
        if head in heads:
            return layer, head
    raise AssertionError(f"sim module {m!r} is in no layer of test_layout._LAYERS: add it")


def test_sim_arrows_point_down_only():
    """api → cpu | cuda → program, source: a backend never imports the front door, the checker
    or the other backend; the program, sources, seeds and limits import no backend."""
    modules, imports = _graph()
    rank = {"top": 2, "backend": 1, "base": 0}
    bad = []
    for m, targets in _edges(modules, imports).items():
        lm, hm = _layer(m)
        for t in targets:
            lt, ht = _layer(t)
            sideways = lm == lt == "backend" and hm != ht    # one backend into the other
            if rank[lt] > rank[lm] or sideways:
                bad.append(f"{m} → {t}")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


def test_layout_checker_sees_an_upward_import(tmp_path, monkeypatch):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "__init__.py").write_text("")
    (tmp_path / "cpu" / "dense.py").write_text("def f():\n    from ..cuda import run_dense\n")
    (tmp_path / "cuda").mkdir()
    (tmp_path / "cuda" / "__init__.py").write_text("def run_dense():\n    pass\n")
    (tmp_path / "program.py").write_text("from .api import simulate\n")
    (tmp_path / "api.py").write_text("from .cpu import dense\n")
    monkeypatch.setattr(sys.modules[__name__], "SIM", tmp_path)
    with pytest.raises(AssertionError, match="cpu.dense → cuda") as info:
        test_sim_arrows_point_down_only()
    assert "program → api" in str(info.value)


def test_layout_checker_sees_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    # The two checks above could pass by reading nothing: show they catch both faults.
    (tmp_path / "a.py").write_text("from .b import _helper\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    monkeypatch.setattr(sys.modules[__name__], "SIM", tmp_path)
    with pytest.raises(AssertionError, match="cycle"):
        test_sim_modules_have_no_import_cycle()
    with pytest.raises(AssertionError, match="_helper"):
        test_no_private_name_imported_across_sim_modules()
