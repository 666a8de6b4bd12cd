"""The DICOM phantoms and the three clinical examples in their --tiny mode (what CI runs)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clinical_examples import phantoms  # noqa: E402
from cossl_edge.dicom import read_frame  # noqa: E402
from cossl_edge.sources import labelled_samples  # noqa: E402


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_phantoms_are_deterministic_and_labelled(tmp_path):
    a = phantoms.write_dataset(tmp_path / "a", ct_patients=1, slices=6, radiographs=8, seed=3)
    phantoms.write_dataset(tmp_path / "b", ct_patients=1, slices=6, radiographs=8, seed=3)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    samples, labels, classes = labelled_samples(tmp_path / "a", a["labels"])
    assert len(samples) == 14 and classes == sorted(phantoms.FINDINGS)
    phantoms.write_dataset(tmp_path / "c", ct_patients=1, slices=6, radiographs=8, seed=4)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_phantom_headers_are_realistic(tmp_path):
    phantoms.write_dataset(tmp_path, ct_patients=1, slices=3, radiographs=4, seed=0)
    headers = [pydicom.dcmread(p) for p in sorted(tmp_path.rglob("*.dcm"))]
    ct = [h for h in headers if h.Modality == "CT"]
    assert {h.Modality for h in headers} == {"CT", "CR", "DX"}
    assert {h.PhotometricInterpretation for h in headers} >= {"MONOCHROME1", "MONOCHROME2"}
    assert all(h.RescaleIntercept == -1024 and "WindowCenter" in h for h in ct)
    assert len({h.SeriesInstanceUID for h in ct}) == 1
    names = {str(h.PatientName) for h in headers}
    assert len(names) == 5 and all("^" in n for n in names)  # one CT patient, 4 radiographs
    # patient folders carry the fake name, so the privacy path is exercised by every run
    assert any(str(h.PatientName).replace("^", "_") in str(p) for h in headers
               for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_radiographs_read_lungs_dark_either_way(tmp_path, photometric):
    patient = phantoms.fake_patient(0, 0)
    path = phantoms.write_radiograph(tmp_path / "x.dcm", patient, "no_finding", 0, "k", "CR",
                                     photometric)
    img = read_frame(path)
    h, w = img.shape
    lung = img[int(0.45 * h), int(0.3 * w)]  # inside the left lung field
    mediastinum = img[int(0.75 * h), int(0.5 * w)]
    assert lung < mediastinum - 0.2


def test_ct_findings_change_the_lungs():
    rng = lambda: np.random.default_rng(5)  # noqa: E731 - same anatomy for each finding
    normal = phantoms.ct_slice_hu(rng(), "no_finding")
    effusion = phantoms.ct_slice_hu(rng(), "effusion")
    nodule = phantoms.ct_slice_hu(rng(), "nodule")
    yy, xx = np.mgrid[:96, :96]
    inside = (yy - 48) ** 2 / 0.2 + (xx - 48) ** 2 / 0.5 < 30 ** 2  # well inside the body
    lung = (normal < -700) & inside
    dense = {name: (hu[lung] > -300).mean() for name, hu in
             (("normal", normal), ("effusion", effusion), ("nodule", nodule))}
    assert dense["effusion"] > dense["normal"] + 0.1  # fluid fills part of a lung
    assert dense["nodule"] > dense["normal"] + 0.01  # round opacities


def load_example(name: str):
    path = REPO / "clinical_examples" / name / "run.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_ct_triage_tiny(tmp_path):
    out = load_example("ct_triage").main(["--tiny", "--out", str(tmp_path)])
    assert out["queries"] == 18 - 9 and 0 <= out["accuracy"] <= 1
    clf = json.loads((tmp_path / "ct-triage.json").read_text())
    assert clf["contract"]["window"] == "lung" and sorted(clf["classes"]) == sorted(
        phantoms.FINDINGS)
    with (tmp_path / "predictions.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 18


@pytest.mark.slow
def test_radiograph_findings_tiny_abstains_below_threshold(tmp_path):
    out = load_example("radiograph_findings").main(["--tiny", "--out", str(tmp_path),
                                                    "--abstain", "0.6"])
    assert 0 <= out["coverage"] <= 1
    with (tmp_path / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    for r in rows:
        assert (r["label"] == "unknown") == (float(r["probability"]) < 0.6)


@pytest.mark.slow
def test_camera_frames_tiny(tmp_path):
    out = load_example("camera_frames").main(["--tiny", "--out", str(tmp_path)])
    assert out["queries"] == 18 and 0 <= out["same_kind"] <= 1
    report = json.loads((tmp_path / "run" / "export-report.json").read_text())
    assert report["int8"]["target"] == "arm"
    with (tmp_path / "neighbours.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 and {r["query_kind"] for r in rows} <= {"car", "pedestrian", "ball"}
