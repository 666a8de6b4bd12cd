"""Packaging: the wheel ships every package of the tree (pyproject's explicit list, mapped by
``package-dir``): a package left out breaks `pip install cossl-edge` where it is imported,
while an editable install hides it. Also ``--version``, shell completion and the declared
dependencies. ``make test-wheel`` installs the built wheel with ``[train,export]`` into a
clean venv and runs :func:`test_installed_wheel_trains_exports_and_embeds` against it (the
base wheel alone is tested by ``make test-edge``: tests/test_edge_env.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_of_the_tree_is_in_the_wheel_list():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, mapping = set(tool["packages"]), tool["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            full = ".".join((name, *rel))
            if not any(full.startswith(other + ".") or full == other
                       for other in mapping if other != name and other.startswith(name + ".")):
                found.add(full)
    assert found <= listed, f"packages missing from pyproject's list: {sorted(found - listed)}"
    assert {"cossl_edge.commands", "cossl_edge.dicom", "cossl_edge.evaluation"} <= listed


def test_version_option_prints_the_package_version():
    from typer.testing import CliRunner

    from cossl_edge import __version__
    from cossl_edge.cli import app, package_version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]  # the source tree's fallback agrees
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"cossl-edge {package_version()}"
    assert package_version() == project["version"]


def test_shell_completion_is_on():
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_completion_completes_commands_in_bash():
    """What the installed completion script asks the program: the words after `few`."""
    exe = Path(sys.executable).parent / "cossl-edge"  # the entry point, as the shell calls it
    if not exe.is_file():
        pytest.skip("no cossl-edge entry point next to this Python")
    env = os.environ | {"_COSSL_EDGE_COMPLETE": "complete_bash",
                        "COMP_WORDS": "cossl-edge few", "COMP_CWORD": "1"}
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["fewshot"]


def test_rich_is_declared_where_the_base_package_imports_it():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in deps}
    imports = [p for p in (ROOT / "cossl_edge").rglob("*.py") if "from rich" in p.read_text()]
    assert imports and "rich" in names


# make test-wheel: the built wheel with [train,export], in a clean venv of its own.
WHEEL_VENV = os.environ.get("COSSL_WHEEL_VENV")


@pytest.mark.slow
@pytest.mark.skipif(not WHEEL_VENV, reason="make test-wheel installs the wheel and runs this")
def test_installed_wheel_trains_exports_and_embeds(tmp_path):
    import numpy as np
    from PIL import Image

    bin_dir = Path(WHEEL_VENV) / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"COLUMNS": "120", "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "2"}

    def run(*args: str) -> str:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done.stdout

    # the venv imports the wheel from its site-packages, never the checkout
    where = run(bin_dir / "python", "-c", "import cossl_edge.commands, cossl_edge.training, "
                "cossl_edge.export as e; print(e.__file__)").strip()
    assert "site-packages" in where and not where.startswith(str(ROOT / "cossl_edge")), where

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(16):
        img = rng.normal(60 + 8 * (i % 4), 20, size=(24, 24)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(data / f"img_{i:02d}.png")
    cli = bin_dir / "cossl-edge"
    out = tmp_path / "run"
    run(cli, "pretrain", data, "--out", out, "--arch", "resnet10", "--width", "0.125",
        "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--max-steps", "2",
        "--quiet", "--device", "cpu")
    assert (out / "encoder.pt").is_file() and (out / "config.json").is_file()
    run(cli, "export", out, "--calibration-count", "8", "--no-latency")
    assert (out / "encoder.onnx").is_file() and (out / "encoder.int8.onnx").is_file()
    run(cli, "embed", out / "encoder.int8.onnx", data, "--out", tmp_path / "emb.npz",
        "--threads", "1")
    with np.load(tmp_path / "emb.npz", allow_pickle=False) as z:
        emb = z["embeddings"]
    assert emb.shape[0] == 16 and np.isfinite(emb).all()

    # a pip user's first result, without a checkout: the demo draws its own phantoms
    shown = run(cli, "demo", "--tiny", "--out", tmp_path / "demo")
    for step in ("$ cossl-edge pretrain", "$ cossl-edge export", "$ cossl-edge fewshot eval",
                 "$ cossl-edge fewshot fit", "raw pixels"):
        assert step in shown, (step, shown[-2000:])
    assert (tmp_path / "demo" / "eval.json").is_file()
    assert (tmp_path / "demo" / "classifier.json").is_file()
