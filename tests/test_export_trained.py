"""Every method's encoder, briefly trained by the real loop, exports and quantizes well."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from support.folders import write_stripes

from cossl_edge.contract import PreprocessContract
from cossl_edge.export import export_run
from cossl_edge.runtime import metadata as mm
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.loop import pretrain


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_stripes(tmp_path_factory.mktemp("train-data"), n=24, seed=3)


@pytest.mark.parametrize("method", ["co-byol", "byol", "co-simclr", "simclr"])
def test_briefly_trained_encoder_exports_with_faithful_int8(tmp_path, data, method):
    config = PretrainConfig(method=method, arch="resnet10", width=0.25, batch_size=8, epochs=1,
                            proj_hidden=64, pred_hidden=64, local_hidden=32, proj_dim=32,
                            contract=PreprocessContract(size=32))
    run = tmp_path / "run"
    summary = pretrain(config, data, run, progress=False, max_steps=2)
    assert summary["steps"] == 2
    # calibration defaults to the prepared training images that pretrain keeps
    report = export_run(run, measure_latency=False)
    assert (report["calibration_images"], report["calibration_source"]) == (24,
                                                                             "calibration.npy")
    assert report["parity_max_abs_diff"] < 1e-4
    assert report["int8_agreement"]["cosine_mean"] >= 0.99
    assert report["int8_recommended"] is True
    meta = ort.InferenceSession(str(run / "encoder.int8.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta()
    assert f'"method": "{method}"' in meta.custom_metadata_map[mm.KEY_METHOD]
    assert len(meta.custom_metadata_map[mm.KEY_FINGERPRINT]) == 64  # written by pretrain
