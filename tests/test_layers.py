"""The package's shape: no module under ``cossl_edge/`` imports the checkout's
``clinical_examples`` or edits ``sys.path`` (the demo lives beside the examples it uses), and
``make demo``'s module runs from the repository root; no import cycle (lazy imports
included) and no import against the layer order (sources < runtime < fewshot < evaluation
< report, training < export < node < commands < cli); few loose modules at the top and
none over 350 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "cossl_edge"


def _offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        if any(n == "clinical_examples" or n.startswith("clinical_examples.") for n in names):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} imports clinical_examples")
        if (isinstance(node, ast.Attribute) and node.attr == "path"
                and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} uses sys.path")
        if isinstance(node, ast.ImportFrom) and node.module == "sys" and any(
                a.name == "path" for a in node.names):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} imports sys.path")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "__import__" and node.args
                and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("clinical_examples")):
            found.append(f"{path.relative_to(REPO)}:{node.lineno} imports clinical_examples")
    return found


def test_runtime_never_imports_clinical_examples_nor_edits_sys_path():
    modules = sorted(RUNTIME.rglob("*.py"))
    assert len(modules) > 20  # the walk found the package
    offences = [o for m in modules for o in _offences(m)]
    assert offences == []


def test_the_check_finds_an_offence(tmp_path, monkeypatch):
    bad = REPO / "cossl_edge" / "__probe_layers__.py"  # never written: parsed from a string
    text = "import sys\nsys.path.insert(0, '.')\nfrom clinical_examples import phantoms\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: text)
    assert len(_offences(bad)) == 2


@pytest.mark.slow
def test_make_demo_module_runs_from_the_repository_root():
    done = subprocess.run([sys.executable, "-m", "clinical_examples.demo", "--help"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "python -m clinical_examples.demo" in done.stdout
    makefile = (REPO / "Makefile").read_text()
    assert "-m clinical_examples.demo" in makefile
    assert not (RUNTIME / "demo.py").exists()


# -- the import graph: no cycle, no import against the layer order --------------------------
# The installed package maps cossl_edge.training and cossl_edge.export to these folders.
PACKAGE_ROOTS = {"cossl_edge": RUNTIME, "cossl_edge.training": REPO / "training",
                 "cossl_edge.export": REPO / "export"}
# A module may import from its own layer and the layers below it, never above. The loose
# modules at the top are the base everything may use.
LAYERS = {
    "base": 0, "dicom": 0, "phantoms": 0,
    "sources": 1, "volumes": 1,
    "runtime": 2,
    "fewshot": 3,
    "evaluation": 4,
    "report": 5, "training": 5,
    "export": 6,
    "node": 7,
    "commands": 8,
    "cli": 9,
}
TOP_LEVEL = {"cli": "cli", "__main__": "cli"}  # loose modules above the base
MAX_LOOSE_MODULES = 9
MAX_LINES = 350


def package_modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name."""
    mods = {}
    for pkg, root in PACKAGE_ROOTS.items():
        for f in root.rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if pkg == "cossl_edge" and parts and parts[0] in ("training", "export"):
                continue
            mods[".".join([pkg, *parts])] = f
    return mods


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (not run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    return skip


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module → the package modules it imports, lazy imports (inside functions) included."""
    def owner(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = m if path.name == "__init__.py" else m.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            else:
                continue
            graph[m] |= {t for t in map(owner, targets) if t and t != m}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    if parts[1] in LAYERS:
        return parts[1]
    return TOP_LEVEL.get(parts[1], "base")


def against_layers(graph: dict[str, set[str]]) -> list[str]:
    return [f"{a} imports {b} ({layer_of(a)} below {layer_of(b)})"
            for a, bs in sorted(graph.items()) for b in sorted(bs)
            if LAYERS[layer_of(b)] > LAYERS[layer_of(a)]]


def test_no_import_cycle_and_none_against_the_layer_order():
    mods = package_modules()
    graph = import_graph(mods)
    assert len(mods) > 100 and graph["cossl_edge.node.classify"]  # the walk saw the package
    unplaced = {m.split(".")[1] for m in mods if "." in m
                and (RUNTIME / m.split(".")[1]).is_dir() and m.split(".")[1] not in LAYERS}
    assert unplaced == set(), "place each subpackage in LAYERS"
    assert cycles(graph) == []
    assert against_layers(graph) == []


def test_the_graph_checks_find_a_cycle_and_an_upward_import():
    graph = {"cossl_edge.runtime.a": {"cossl_edge.fewshot.b"},
             "cossl_edge.fewshot.b": {"cossl_edge.runtime.a"},
             "cossl_edge.sources.c": set()}
    assert cycles(graph) == [["cossl_edge.fewshot.b", "cossl_edge.runtime.a"]]
    assert against_layers(graph) == [
        "cossl_edge.runtime.a imports cossl_edge.fewshot.b (runtime below fewshot)"]


def test_relative_lazy_and_type_checking_imports_are_read(tmp_path, monkeypatch):
    texts = {"a": "def f():\n    from . import b\n",
             "b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                  "    from cossl_edge.pkg.a import X\n"}
    mods = {f"cossl_edge.pkg.{k}": tmp_path / f"{k}.py" for k in texts}
    for k, t in texts.items():
        (tmp_path / f"{k}.py").write_text(t)
    graph = import_graph(mods)
    assert graph == {"cossl_edge.pkg.a": {"cossl_edge.pkg.b"}, "cossl_edge.pkg.b": set()}


def test_few_loose_modules_and_none_too_long():
    loose = sorted(p.name for p in RUNTIME.glob("*.py"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in package_modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert long == []
