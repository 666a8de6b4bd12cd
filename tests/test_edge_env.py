"""The edge commands end to end, as the minimal environment runs them.

``make test-edge`` runs this module with ``.venv-edge``: the built wheel, base only, with the
dependencies it declares (pinned by the lock) and pytest, from outside the checkout, on a
model that the full environment exported into ``$COSSL_EDGE_FIXTURES``
(``tests/make_edge_fixtures.py``), with ``COSSL_EDGE_MINIMAL=1``; there it also checks that
what it imports is the installed wheel, not the checkout. Under the full environment it
builds the same fixtures itself.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.edge

HEAVY = ("torch", "monai", "albumentations", "onnx", "sklearn", "cv2")
MINIMAL = os.environ.get("COSSL_EDGE_MINIMAL") == "1"

# Runs every edge command in one process, then lists the heavy modules it loaded and where
# cossl_edge came from.
SCRIPT = """
import json, sys
import cossl_edge
from cossl_edge.cli import app
for args in json.loads(sys.argv[1]):
    app(args, standalone_mode=False)
heavy = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps({"heavy": heavy, "file": cossl_edge.__file__}))
"""


def _from_site_packages(module_file: str) -> bool:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    return site in Path(module_file).resolve().parents


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    given = os.environ.get("COSSL_EDGE_FIXTURES")
    if given:
        return Path(given)
    from make_edge_fixtures import main  # needs onnx / the exporter: full environment only

    out = tmp_path_factory.mktemp("edge-fixtures")
    main(str(out))
    return out


def test_minimal_environment_has_no_training_stack():
    if MINIMAL:
        missing = [m for m in HEAVY if importlib.util.find_spec(m) is None]
        assert missing == list(HEAVY), f"the edge venv must not hold {set(HEAVY) - set(missing)}"
    import cossl_edge

    assert cossl_edge.Encoder.__name__ == "Encoder"  # the lazy public API resolves


def test_embed_fit_predict_eval_without_torch(fixtures, tmp_path):
    model, data = fixtures / "model.onnx", fixtures / "labelled"
    clf, preds, ev = tmp_path / "clf.json", tmp_path / "preds.csv", tmp_path / "eval.json"
    commands = [
        ["embed", str(model), str(data), "--out", str(tmp_path / "emb.npz"), "--threads", "1"],
        ["fewshot", "fit", str(model), str(data), "--out", str(clf), "--classifier", "logreg"],
        ["fewshot", "predict", str(clf), str(data), "--out", str(preds), "--top-k", "2"],
        ["fewshot", "eval", str(model), str(data), "--shots", "1,3", "--episodes", "10",
         "--queries", "3", "--classifier", "proto", "--json", str(ev)],
    ]
    run = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands), json.dumps(HEAVY)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=os.environ | {"COLUMNS": "120"})
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []  # nothing heavy was loaded
    if MINIMAL:
        assert _from_site_packages(report["file"]), report["file"]
    import numpy as np

    with np.load(tmp_path / "emb.npz", allow_pickle=False) as z:
        assert z["embeddings"].shape[0] == 24 and np.isfinite(z["embeddings"]).all()
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == 24 and all(len(r["top_k"].split(";")) == 2 for r in rows)
    assert json.loads(clf.read_text())["schema_version"] == 1
    result = json.loads(ev.read_text())
    assert result["ways"] == 3 and 0.0 <= result["shots"]["3"]["accuracy"] <= 1.0


def test_anomaly_reading_and_raw_pixel_floor_without_torch(fixtures, tmp_path):
    """The anomaly map of the exported model, --classifier auto and anomaly with heatmaps,
    and the raw-pixel floor of fewshot eval, in the minimal environment."""
    model, pair = fixtures / "model.onnx", fixtures / "pair"
    clf, heat, ev = tmp_path / "clf.json", tmp_path / "heat", tmp_path / "eval.json"
    auto = tmp_path / "auto.json"
    commands = [
        ["fewshot", "fit", str(model), str(pair), "--out", str(auto), "--normal-class",
         "class_0"],
        ["fewshot", "fit", str(model), str(pair), "--out", str(clf), "--classifier", "anomaly",
         "--normal-class", "class_0"],
        ["fewshot", "predict", str(clf), str(pair), "--out", str(tmp_path / "p.csv"),
         "--heatmaps", str(heat)],
        ["fewshot", "eval", str(model), str(pair), "--shots", "3", "--episodes", "10",
         "--queries", "3", "--normal-class", "class_0", "--json", str(ev)],
    ]
    run = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands), json.dumps(HEAVY)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=os.environ | {"COLUMNS": "160"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["heavy"] == []
    assert "auto: " in run.stdout and "raw pixels" in run.stdout
    assert json.loads(auto.read_text())["kind"] in ("proto", "anomaly")
    assert json.loads(clf.read_text())["kind"] == "anomaly"
    assert len(list(heat.glob("*.png"))) == 16
    result = json.loads(ev.read_text())
    assert sum(result["shots"]["3"]["chosen"].values()) == 10
    assert 0.0 <= result["raw_pixel_floor"]["shots"]["3"]["accuracy"] <= 1.0


@pytest.mark.skipif(not MINIMAL, reason="checks the wheel installed by make test-edge")
def test_the_installed_wheel_is_what_runs():
    """Not the checkout, not an editable install: the wheel in site-packages."""
    import cossl_edge

    assert _from_site_packages(cossl_edge.__file__), cossl_edge.__file__
    checkout = os.environ.get("COSSL_EDGE_CHECKOUT")
    if checkout:
        source = (Path(checkout) / "cossl_edge").resolve()
        assert source not in Path(cossl_edge.__file__).resolve().parents, cossl_edge.__file__
    direct = importlib.metadata.distribution("cossl-edge").read_text("direct_url.json")
    assert direct is None or not json.loads(direct).get("dir_info", {}).get("editable"), direct
    # every subpackage the commands import came with the wheel
    for sub in ("commands", "dicom", "evaluation"):
        module = importlib.import_module(f"cossl_edge.{sub}")
        assert _from_site_packages(module.__file__), module.__file__


@pytest.mark.skipif(not MINIMAL, reason="runs the console script that make test-edge installed")
def test_console_script_embeds_and_evaluates(fixtures, tmp_path):
    """`cossl-edge` as the wheel's entry point installs it: --version, embed, fewshot eval."""
    exe = Path(sys.executable).parent / "cossl-edge"
    model, data = fixtures / "model.onnx", fixtures / "labelled"

    def cli(*args: str) -> str:
        run = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path, env=os.environ | {"COLUMNS": "120"})
        assert run.returncode == 0, (args, run.stdout[-1000:], run.stderr[-2000:])
        return run.stdout

    assert cli("--version").strip() == f"cossl-edge {importlib.metadata.version('cossl-edge')}"
    cli("embed", str(model), str(data), "--out", str(tmp_path / "emb.npz"), "--threads", "1")
    cli("fewshot", "eval", str(model), str(data), "--shots", "1", "--episodes", "4",
        "--queries", "2", "--classifier", "proto", "--json", str(tmp_path / "eval.json"))
    import numpy as np

    with np.load(tmp_path / "emb.npz", allow_pickle=False) as z:
        assert z["embeddings"].shape[0] == 24
    assert json.loads((tmp_path / "eval.json").read_text())["ways"] == 3
