"""Exporting a 3D run (``pretrain --volumes``): the fp32 ONNX against torch on the run's
whole-volume cubes, the 5D local map, int8 shipped only where it measured faster (or the
fp32 file kept, and why), the volume contract in the metadata, and a 3D file refused by the
image commands in one line."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from cossl_edge import rundir
from cossl_edge.contract import ContractError, PreprocessContract, VolumeContract
from cossl_edge.export import volume_int8
from cossl_edge.runtime import metadata as mm
from cossl_edge.runtime.model import ModelError

SIZE = 16


def _run(args):
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    return CliRunner().invoke(app, args)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny 3D run: five phantom CT series at 4 mm, 16³ cubes, two steps."""
    from clinical_examples.ct_volumes import write_series_set

    root = tmp_path_factory.mktemp("ct3d-export")
    write_series_set(root / "ct", series=5, seed=1, size=48, length_mm=40)
    out = root / "run"
    result = _run(["pretrain", str(root / "ct"), "--volumes", "--spacing", "4",
                   "--volume-size", str(SIZE), "--batch-size", "3", "--out", str(out),
                   "--quiet", "--no-bf16", "--proj-hidden", "32", "--pred-hidden", "32",
                   "--local-hidden", "16", "--proj-dim", "16", "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert "cossl-edge export" in result.output
    return out


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    from cossl_edge.export import export_run

    out = tmp_path_factory.mktemp("export3d")
    report = export_run(run_dir, out, local_map=True, latency_budget_s=0.05)
    return out, report


def test_fp32_matches_torch_on_the_runs_cubes_with_a_5d_local_map(run_dir, exported):
    from cossl_edge.export.loaded_run import load_run
    from cossl_edge.export.verify import session
    from cossl_edge.training.pooling import global_pool

    out, report = exported
    assert report["input_shape"] == ["batch", 1, SIZE, SIZE, SIZE]
    assert report["calibration_source"] == rundir.CALIBRATION
    assert report["calibration_images"] == 5 and report["parity_max_abs_diff"] < 1e-4
    cubes = np.load(run_dir / rundir.CALIBRATION).astype(np.float32)
    x = ((cubes - 0.5) / 0.25)[:, None].astype(np.float32)  # the run's contract mean/std
    encoder = load_run(run_dir).encoder
    with torch.no_grad():
        fmap = encoder.forward_features(torch.from_numpy(x))
        emb = global_pool(fmap, encoder.pool).numpy()
    got_emb, got_map = session(out / "encoder.onnx").run(None, {mm.INPUT: x})
    assert got_map.ndim == 5 and got_map.shape == tuple(fmap.shape)
    assert np.abs(got_emb - emb).max() < 1e-4
    assert np.abs(got_map - fmap.numpy()).max() < 1e-4


def test_int8_shipped_or_fp32_kept_and_the_report_says_which(exported):
    out, report = exported
    decision = report["int8_decision"]
    assert decision["reason"] in {"faster", "slower", "not supported"}
    assert decision["line"].startswith("3D int8: ")
    assert (out / "encoder.int8.onnx").is_file() == decision["shipped"]
    assert ("int8" in report["files"]) == decision["shipped"]
    if decision["reason"] != "not supported":
        assert {r["batch"] for r in report["latency"]} == set(volume_int8.BATCHES)
        assert report["int8_agreement"]["cosine_mean"] > 0.9
        ratio = decision["speedup_batch4"]
        assert decision["shipped"] == (ratio > 1.0)
    saved = json.loads((out / "export-report.json").read_text())
    assert saved["int8_decision"] == decision


def test_the_decision_follows_the_measurement_not_a_rule():
    def rows(fp32, int8):
        return [{"engine": e, "batch": b, "threads": 1, "ms": ms}
                for b in volume_int8.BATCHES for e, ms in (("ort-fp32", fp32), ("ort-int8", int8))]
    agree = {"cosine_mean": 0.999}
    fast = volume_int8.decide({"latency": rows(10.0, 5.0), "int8_agreement": agree})
    slow = volume_int8.decide({"latency": rows(5.0, 10.0), "int8_agreement": agree})
    failed = volume_int8.decide({}, "NotImplemented: QLinearConv 3D")
    assert fast["shipped"] and fast["speedup_batch4"] == 2.0
    assert not slow["shipped"] and "slower" in slow["line"] and "keeping fp32" in slow["line"]
    assert not failed["shipped"] and "not supported" in failed["line"]


def test_metadata_round_trips_the_volume_contract(run_dir, exported):
    out, report = exported
    cfg = json.loads((run_dir / rundir.CONFIG).read_text())
    for name in [f["file"] for f in report["files"].values()]:
        meta = {p.key: p.value for p in onnx.load(str(out / name)).metadata_props}
        volume = VolumeContract.from_json(meta[mm.KEY_VOLUME])
        assert volume == VolumeContract(spacing_mm=4.0, size=SIZE)
        assert [volume.spacing_mm] * 3 == cfg["volume_spacing_mm"]
        assert volume.cube == "resize-whole" and volume.orientation == "source"
        contract = PreprocessContract.from_json(meta[mm.KEY_CONTRACT])
        assert contract.size == SIZE and contract.window == cfg["contract"]["window"]
    assert report["volume_contract"] == json.loads(volume.to_json())
    with pytest.raises(ContractError):
        VolumeContract.from_json('{"spacing_mm": 2, "size": 64, "shear": 1}')
    with pytest.raises(ContractError):
        VolumeContract.from_json('{"version": 99}')


def test_image_commands_refuse_a_3d_model_in_one_line(exported, tmp_path):
    from PIL import Image

    from cossl_edge.runtime.encoder import Encoder

    out, _ = exported
    with pytest.raises(ModelError, match="3D encoder"):
        Encoder(out / "encoder.onnx")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(images / "a.png")
    result = _run(["embed", str(out / "encoder.onnx"), str(images), "--out",
                   str(tmp_path / "e.npz")])
    assert result.exit_code != 0 and "3D encoder" in result.output
    assert "Traceback" not in result.output
