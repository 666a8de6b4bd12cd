"""A pretraining run on DICOM files that carry a patient's name and id leaves neither value,
nor the data folder's path, in any file of its run directory, its cache or its output."""

from __future__ import annotations

from dicom_factory import FAKE_ID, FAKE_NAME, ct_series, multiframe, sr_document
from typer.testing import CliRunner

from cossl_edge.cli import app


def test_pretrain_on_dicom_leaves_no_patient_data(tmp_path, monkeypatch):
    # the folder is named after the patient, as many exports are
    data = tmp_path / "Zyxwvut_Quokka_PID-93517-QX"
    ct_series(data / "ct", n=6, rows=24, cols=24)
    multiframe(data / "mf.dcm", frames=3, rows=24, cols=24)
    sr_document(data / "report.dcm")
    (data / "broken.dcm").write_bytes(b"\x00" * 300)
    cache = tmp_path / "cache"
    monkeypatch.setenv("COSSL_EDGE_CACHE", str(cache))
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)  # the summary names the run directory as given: "run"
    result = CliRunner().invoke(app, [
        "pretrain", str(data), "--out", "run", "--arch", "resnet10", "--width", "0.25",
        "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--max-steps", "2",
        "--quiet",
        "--preset", "medical", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "pretrained: 2 steps" in result.output
    assert "on 9 images" in result.output  # 6 slices + 3 frames
    secrets = [FAKE_NAME, FAKE_ID, "Zyxwvut", "93517", data.name, str(tmp_path)]
    written = [p for p in list(run.rglob("*")) + list(cache.rglob("*")) if p.is_file()]
    assert len(written) >= 4
    for p in written:
        blob = p.read_bytes()
        for s in secrets:
            assert s.encode() not in blob, (p.name, s)
            assert s not in p.name
    for s in secrets:
        assert s not in result.output
