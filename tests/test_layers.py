"""The runtime package stands alone: no module under ``cossl_edge/`` imports the checkout's
``clinical_examples`` or edits ``sys.path`` (the demo lives beside the examples it uses), and
``make demo``'s module runs from the repository root."""

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
