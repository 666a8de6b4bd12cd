"""The edge commands end to end, as the minimal environment runs them.

``make test-edge`` runs this module with ``.venv-edge`` (numpy, onnxruntime, pydicom, typer,
pillow, pytest and the package without dependencies), on a model that the full environment
exported into ``$COSSL_EDGE_FIXTURES`` (``tests/make_edge_fixtures.py``), with
``COSSL_EDGE_MINIMAL=1``. Under the full environment it builds the same fixtures itself.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.edge

HEAVY = ("torch", "monai", "albumentations", "onnx", "sklearn", "cv2")

# Runs every edge command in one process, then lists the heavy modules it loaded.
SCRIPT = """
import json, sys
from cossl_edge.cli import app
for args in json.loads(sys.argv[1]):
    app(args, standalone_mode=False)
print(json.dumps(sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)))
"""


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
    if os.environ.get("COSSL_EDGE_MINIMAL") == "1":
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
                         capture_output=True, text=True, timeout=120,
                         env=os.environ | {"COLUMNS": "120"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []  # nothing heavy was loaded
    import numpy as np

    with np.load(tmp_path / "emb.npz", allow_pickle=False) as z:
        assert z["embeddings"].shape[0] == 24 and np.isfinite(z["embeddings"]).all()
    rows = list(csv.DictReader(preds.open()))
    assert len(rows) == 24 and all(len(r["top_k"].split(";")) == 2 for r in rows)
    assert json.loads(clf.read_text())["schema_version"] == 1
    result = json.loads(ev.read_text())
    assert result["ways"] == 3 and 0.0 <= result["shots"]["3"]["accuracy"] <= 1.0
