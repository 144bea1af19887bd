"""The house keeps its shape: layers point down (import-linter's contracts in pyproject.toml), no
import circle inside a layer, no module past ~800 lines, every package says what it holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "interface"
LIMIT = 800
LAYERS = ["hl7", "config", "mapping", "rules", "store", "engine", "desk", "web", "ops"]


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        if "versions" in p.parts:
            continue
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every interface import, at module level or inside a function (a late import is still a
    dependency: hiding a circle in a function does not break it)."""
    graph: dict[str, set[str]] = {}
    for name, p in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in mods:
                        deps.add(full)
                    elif node.module in mods:
                        deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        deps.discard(name)
        # a package's __init__ is not a dependency of its own modules
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_import_contracts_hold():
    """import-linter: layers point down, the pure core imports no database, reactor or web
    framework, sibling API routers do not import each other."""
    exe = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout


def test_no_import_circle_anywhere():
    """No circle of imports, inside a layer or across, counting imports inside functions."""
    assert _cycles(_graph(_modules())) == []


def test_cycle_finder_finds_a_circle():
    """The circle test can fail: a -> b -> a is found, a -> b alone is not."""
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_over_the_limit():
    """No module in interface/ past ~800 lines: split by noun when one grows."""
    big = {
        str(p.relative_to(ROOT)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > LIMIT and "versions" not in p.parts
    }
    assert big == {}


def test_the_folders_are_the_layers():
    """Every module lives in a layer package (except the two entry-point shims), and every package
    has a docstring saying what it holds."""
    top = {p.name for p in PKG.glob("*.py")}
    assert top <= {"__init__.py", "__main__.py", "benchprofile.py"}
    for layer in LAYERS:
        init = PKG / layer / "__init__.py"
        assert init.exists(), layer
        assert ast.get_docstring(ast.parse(init.read_text())), layer
