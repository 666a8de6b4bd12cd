"""The inference paths give what they gave before the runtime redesign: ``fewshot fit``,
``predict`` and ``eval``, ``evaluate``, the node's SeriesClassifier and local_findings'
scoring on fixed generated models and folders (``tests/predict_snapshot.py``), against the
reference recorded with the code before it (``tests/data/predict_snapshot.npz``).

Bit for bit on the CPU kind the reference was recorded on; elsewhere onnxruntime's kernels
may round differently, so there only the probabilities and heatmaps are compared, closely."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

import predict_snapshot  # noqa: E402

from cossl_edge.cpu_kind import cpu_kind  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "predict_snapshot.npz"
# the paths are in the classifier files and the ids: the reference used this folder
WORK = Path(tempfile.gettempdir()) / "predict_snapshot"


def test_predictions_and_heatmaps_are_unchanged(tmp_path):
    import shutil

    shutil.rmtree(WORK, ignore_errors=True)
    now = predict_snapshot.snapshot(tmp_path / "now.npz", WORK)
    ref = dict(np.load(REFERENCE))
    recorded_on = str(ref.pop("cpu_kind"))
    if recorded_on == cpu_kind():
        assert predict_snapshot.compare(ref, now) == []
    else:
        arrays = [k for k in ref if k.endswith(("/proba", "/heatmaps"))]
        assert len(arrays) > 20 and set(arrays) <= set(now)
        for k in arrays:
            assert np.allclose(ref[k], now[k], rtol=1e-4, atol=1e-5), k
