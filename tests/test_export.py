"""Export of a hand-built run directory: verified fp32, int8, metadata, errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import typer
from support.folders import write_stripes
from support.runs import write_calibrated_run
from typer.testing import CliRunner

from cossl_edge.commands import export as export_command
from cossl_edge.contract import PreprocessContract
from cossl_edge.export import ExportError, export_run, verify
from cossl_edge.export.calibration import load_calibration, load_stored
from cossl_edge.runtime import metadata as mm
from cossl_edge.training.config import PretrainConfig


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_stripes(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data) -> tuple[Path, dict]:
    run = write_calibrated_run(tmp_path_factory.mktemp("run"), data)
    report = export_run(run, calibration_count=16, latency_budget_s=0.0)
    return run, report


def test_export_writes_verified_fp32_and_int8(exported):
    run, report = exported
    for name in ("encoder.onnx", "encoder.int8.onnx", "export-report.json"):
        assert (run / name).is_file(), name
    assert not list(run.glob(".export-*")), "scratch folder left behind"
    assert json.loads((run / "export-report.json").read_text()) == report
    assert report["parity_max_abs_diff"] < 1e-4
    assert (report["calibration_images"], report["calibration_source"]) == (16,
                                                                             "calibration.npy")
    model = onnx.load(str(run / "encoder.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    assert not model.graph.initializer or all(not t.external_data for t in model.graph.initializer)
    sizes = {k: v["bytes"] for k, v in report["files"].items()}
    assert sizes["int8"] < 0.4 * sizes["fp32"]
    int8 = onnx.load(str(run / "encoder.int8.onnx"))
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # static QDQ, not dynamic
    assert "DynamicQuantizeLinear" not in ops


def test_int8_agreement_and_latency_rows(exported):
    _, report = exported
    agree = report["int8_agreement"]
    assert 0.99 <= agree["cosine_min"] <= agree["cosine_mean"] <= 1.0 + 1e-9
    assert 0.0 <= agree["knn_top1_agreement"] <= 1.0
    rows = report["latency"]
    engines = {r["engine"] for r in rows}
    assert engines == {"torch-fp32", "ort-fp32", "ort-int8"}
    assert {r["batch"] for r in rows} == {1, 32}
    assert all(r["ms"] > 0 for r in rows)
    assert report["int8_recommended"] == (not report["warnings"])


def test_metadata_round_trips_through_onnxruntime(exported, data):
    run, report = exported
    config = PretrainConfig.load(run / "config.json")
    images = load_stored(run / "calibration.npy", config.contract, 16)
    for precision, name in (("fp32", "encoder.onnx"), ("int8", "encoder.int8.onnx")):
        sess = ort.InferenceSession(str(run / name), providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
        assert PreprocessContract.from_json(meta[mm.KEY_CONTRACT]) == config.contract
        method = json.loads(meta[mm.KEY_METHOD])
        assert (method["method"], method["arch"], method["width"]) == ("co-byol", "resnet10",
                                                                        0.25)
        assert meta[mm.KEY_PRECISION] == precision
        assert meta[mm.KEY_FINGERPRINT] == "ab" * 32
        assert meta[mm.KEY_VERSION] == report["cossl_edge_version"]
        centering = np.asarray(json.loads(meta[mm.KEY_CENTERING]))
        assert int(meta[mm.KEY_EMBED_DIM]) == centering.shape[0] == 128
        emb = sess.run([mm.OUTPUT], {mm.INPUT: images})[0]
        np.testing.assert_allclose(centering, emb.mean(axis=0), atol=1e-5)


def test_dynamic_batch_and_local_map(tmp_path, data):
    run = write_calibrated_run(tmp_path / "run", data, channels=3)
    out = tmp_path / "out"
    report = export_run(run, out, int8=False, calibration_count=8, local_map=True,
                        measure_latency=False)
    assert "int8" not in report["files"] and not (out / "encoder.int8.onnx").exists()
    sess = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == [mm.OUTPUT, mm.LOCAL_MAP]
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        emb, fmap = sess.run(None, {mm.INPUT: x})
        assert emb.shape == (batch, 128) and fmap.shape == (batch, 128, 4, 4)
        np.testing.assert_allclose(fmap.mean(axis=(2, 3)), emb, atol=1e-5)


def test_parity_failure_reports_the_figure(exported, data):
    run, _ = exported
    from cossl_edge.export.loaded_run import load_run

    loaded = load_run(run)
    images, _ = load_calibration(data, loaded.config.contract, 4)
    with pytest.raises(ExportError, match=r"disagree by [0-9.e-]+ \(tolerance 0\)"):
        verify.check_parity(loaded.encoder, run / "encoder.onnx", images, tolerance=0.0)


@pytest.mark.parametrize("damage, match", [
    (lambda r: (r / "encoder.pt").unlink(), r"encoder\.pt: not found; .*pretrain"),
    (lambda r: (r / "encoder.pt").write_bytes(b"not a zip" * 10), r"encoder\.pt: corrupt"),
    (lambda r: (r / "encoder.pt").write_bytes((r / "encoder.pt").read_bytes()[:2000]),
     r"encoder\.pt: corrupt"),
    (lambda r: torch.save({"w": torch.zeros(3)}, r / "encoder.pt"),
     r"encoder\.pt: weights do not match"),
    (lambda r: (r / "config.json").write_text("{\"method\": "), r"config\.json: corrupt"),
    (lambda r: (r / "config.json").unlink(), r"config\.json: not found"),
])
def test_broken_run_directory_gives_one_clear_line(tmp_path, data, damage, match):
    run = write_calibrated_run(tmp_path / "run", data)
    damage(run)
    with pytest.raises(ValueError, match=match) as info:
        export_run(run, calibration_count=4, measure_latency=False)
    assert "\n" not in str(info.value)
    assert not (run / "encoder.onnx").exists()


def test_calibration_sources(tmp_path, data):
    run = write_calibrated_run(tmp_path / "run", None)
    with pytest.raises(ExportError, match=r"calibration\.npy: not found.*--calibration DIR"):
        export_run(run, measure_latency=False)
    report = export_run(run, calibration=data, calibration_count=4, int8=False,
                        measure_latency=False)
    assert (report["calibration_images"], report["calibration_source"]) == (4, "folder")

    (data / "zz-broken.png").write_bytes(b"not a png")  # picked last, left out and counted
    try:
        report = export_run(run, calibration=data, int8=False, measure_latency=False)
    finally:
        (data / "zz-broken.png").unlink()
    assert (report["calibration_images"], report["calibration_skipped"]) == (24, 1)

    legacy = write_calibrated_run(tmp_path / "legacy", data, legacy_data_dir=True)
    report = export_run(legacy, calibration_count=6, int8=False, measure_latency=False)
    assert (report["calibration_images"], report["calibration_source"]) == (6, "data_dir")


@pytest.mark.parametrize("content, match", [
    (b"\x93NUMPY garbage", r"calibration\.npy: corrupt"),
    (np.zeros((3, 16, 16, 1), np.float16), r"calibration\.npy: holds images of shape"),
])
def test_bad_calibration_npy_gives_one_clear_line(tmp_path, data, content, match):
    run = write_calibrated_run(tmp_path / "run", data)
    if isinstance(content, bytes):
        (run / "calibration.npy").write_bytes(content)
    else:
        np.save(run / "calibration.npy", content)
    with pytest.raises(ExportError, match=match):
        export_run(run, measure_latency=False)


def test_cli_prints_report_and_fails_cleanly(tmp_path, data):
    app = typer.Typer()
    app.callback()(lambda: None)
    export_command.register(app)
    run = write_calibrated_run(tmp_path / "run", data)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["export", str(run), "--out", str(out),
                                      "--calibration-count", "8", "--no-latency",
                                      "--target", "arm"])
    assert result.exit_code == 0, result.output
    assert "int8 recommended" in result.output and (out / "encoder.int8.onnx").is_file()
    assert json.loads((out / "export-report.json").read_text())["int8"]["target"] == "arm"
    (run / "encoder.pt").unlink()
    result = CliRunner().invoke(app, ["export", str(run), "--no-latency"])
    assert result.exit_code == 2
    assert "encoder.pt: not found" in result.output


def test_int8_file_records_its_target_and_embed_warns_on_another_cpu(exported, data, tmp_path):
    """The int8 file says which CPU kind its int8 was tuned for; embed and bench on another
    kind of CPU say so once (here: the file's record rewritten to the kind this CPU is not)."""
    import shutil

    from typer.testing import CliRunner

    from cossl_edge.cli import app
    from cossl_edge.cpu_kind import cpu_kind
    from cossl_edge.export.onnx_export import write_metadata
    from cossl_edge.runtime import metadata as mm
    from cossl_edge.runtime.encoder import Encoder

    run, report = exported
    assert Encoder(run / "encoder.int8.onnx").metadata[mm.KEY_INT8_TARGET] == \
        report["int8"]["target"]
    assert mm.KEY_INT8_TARGET not in Encoder(run / "encoder.onnx").metadata
    other = "arm" if cpu_kind() != "arm" else "x86"
    model = tmp_path / "m.int8.onnx"
    shutil.copy(run / "encoder.int8.onnx", model)
    write_metadata(model, {mm.KEY_INT8_TARGET: other})
    runner = CliRunner()
    res = runner.invoke(app, ["embed", str(model), str(data), "--out", str(tmp_path / "e.npz")])
    assert res.exit_code == 0, res.output
    assert f"tuned for {other}" in res.output and res.output.count("tuned for") == 1
    res = runner.invoke(app, ["bench", str(model), "--batch-sizes", "1", "--threads", "1",
                              "--seconds", "0.05"])
    assert res.exit_code == 0 and f"tuned for {other}" in res.output, res.output
    write_metadata(model, {mm.KEY_INT8_TARGET: cpu_kind()})
    res = runner.invoke(app, ["embed", str(model), str(data), "--out", str(tmp_path / "f.npz")])
    assert res.exit_code == 0 and "tuned for" not in res.output
