"""``fewshot predict --dicom-out``: on DICOM inputs, with a local classifier, the node's
Parametric Map and Segmentation per series (the same builders and identity), written as
files: dciodvfy finds no error, each frame references its source image, each map's maximum
lies on its image's finding; without torch. Non-DICOM inputs, a classifier without
heatmaps and a bad --send give one clear line."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import node_support as ns
import numpy as np
import overlay_reading
import pydicom
import pytest
from typer.testing import CliRunner

from cossl_edge.cli import app

pytest.importorskip("highdicom")
runner = CliRunner()
PARAMETRIC_MAP, SEGMENTATION = "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def local_classifier(tmp_path_factory) -> Path:
    return ns.make_local_classifier(tmp_path_factory.mktemp("local-model"))


def _predict_without_torch(args: list[str]) -> subprocess.CompletedProcess:
    """``cossl-edge fewshot predict ARGS`` in a Python where torch cannot be imported."""
    code = ("import sys; sys.modules['torch'] = None; from cossl_edge.cli import app; "
            f"app(['fewshot', 'predict', *{args!r}])")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_dicom_out_writes_the_nodes_objects(tmp_path, local_classifier):
    from test_dciodvfy import assert_valid

    kinds = ["bright", "normal", "bright", "bright"]
    files, centres = ns.write_blob_series(tmp_path / "scan", kinds, "predict-dicom",
                                          patient=75, geometry=True)
    out, ids, dicom = tmp_path / "p.csv", tmp_path / "ids.csv", tmp_path / "dicom"
    r = _predict_without_torch([str(local_classifier), str(tmp_path / "scan"), "--out",
                                str(out), "--id-map", str(ids), "--dicom-out", str(dicom)])
    assert r.returncode == 0, r.stdout + r.stderr
    label_of = {row["id"]: row["label"] for row in csv.DictReader(out.open())}
    path_of = {row["id"]: Path(row["path"]) for row in csv.DictReader(ids.open())}
    called = {str(pydicom.dcmread(tmp_path / "scan" / path_of[i], stop_before_pixels=True)
                  .SOPInstanceUID) for i, lab in label_of.items() if lab == "bright"}
    assert len(called) >= 2
    uid_of = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): (f, c)
              for f, c in zip(files, centres, strict=True)}
    objects = sorted(dicom.glob("*.dcm"))
    assert_valid(objects)
    datasets = [pydicom.dcmread(p) for p in objects]
    assert sorted(str(d.SOPClassUID) for d in datasets) == [PARAMETRIC_MAP, SEGMENTATION]
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    for d in datasets:  # the node's identity and geometry
        assert d.Manufacturer == "cossl-edge" and d.StudyInstanceUID == first.StudyInstanceUID
        assert d.FrameOfReferenceUID == first.FrameOfReferenceUID
        assert sorted(overlay_reading.frame_sources(d)) == sorted(called)
        assert "few-shot local heatmap" in d.DerivationDescription
        assert not any(part in p.name for p in objects for part in ("predict", "scan"))
    pm = next(d for d in datasets if d.SOPClassUID == PARAMETRIC_MAP)
    values = pm.pixel_array.astype(float).reshape(-1, first.Rows, first.Columns)
    for frame, ref in zip(values, overlay_reading.frame_sources(pm), strict=True):
        overlay_reading.assert_map_on_disk(frame, uid_of[ref][1])
    index = list(csv.DictReader((dicom / "overlays.csv").open()))
    assert sorted(row["kind"] for row in index) == ["pmap", "seg"]
    for row in index:
        assert sorted(row["ids"].split(";")) == sorted(
            i for i, lab in label_of.items() if lab == "bright")
    assert "1 Parametric Map(s), 1 Segmentation(s)" in r.stdout
    # --send seg: the SEG alone, the same object
    seg_only = tmp_path / "seg-only"
    res = runner.invoke(app, ["fewshot", "predict", str(local_classifier),
                              str(tmp_path / "scan"), "--out", str(tmp_path / "q.csv"),
                              "--dicom-out", str(seg_only), "--send", "seg"])
    assert res.exit_code == 0, res.output
    (only,) = seg_only.glob("*.dcm")
    seg = next(d for d in datasets if d.SOPClassUID == SEGMENTATION)
    assert pydicom.dcmread(only).SOPInstanceUID == seg.SOPInstanceUID


def test_dicom_out_clear_errors(tmp_path, local_classifier):
    from PIL import Image

    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i in range(2):
        img = ns.blob_image("bright", np.random.default_rng(i), 32)[0]
        Image.fromarray((img * 255).astype(np.uint8)).save(pngs / f"patient_{i}.png")
    base = ["fewshot", "predict", str(local_classifier), str(pngs), "--out",
            str(tmp_path / "p.csv")]
    for extra, says in ((["--dicom-out", str(tmp_path / "d")], "needs DICOM inputs"),
                        (["--dicom-out", str(tmp_path / "d"), "--send", "sr"], "pmap, seg"),
                        (["--send", "seg"], "add --dicom-out DIR")):
        res = runner.invoke(app, base + extra)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 2 and len(lines) == 1 and says in lines[0], res.output
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
    proto = ns.make_classifier(tmp_path / "proto")
    res = runner.invoke(app, ["fewshot", "predict", str(proto), str(pngs), "--out",
                              str(tmp_path / "p.csv"), "--dicom-out", str(tmp_path / "d")])
    assert res.exit_code == 2 and "--dicom-out needs an anomaly or local" in res.output
