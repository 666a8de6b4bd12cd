"""The ONNX Encoder: contract from metadata, refusal without one, batching, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.folders import write_class_folders
from support.models import build_tiny_model

from cossl_edge.contract import PreprocessContract
from cossl_edge.runtime.encoder import Encoder, ModelError

CONTRACT = PreprocessContract(channels=1, size=16, mean=(0.4,), std=(0.2,))


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "ok": build_tiny_model(root / "ok.onnx", CONTRACT, dim=8, centering=[0.5] * 8),
        "bare": build_tiny_model(root / "bare.onnx", CONTRACT, dim=8, with_contract=False),
    }


def test_reads_contract_centering_and_dim(models):
    enc = Encoder(models["ok"], threads=1, spinning=False)
    assert enc.contract == CONTRACT
    assert enc.dim == 8 and enc.input_shape == (1, 16, 16)
    np.testing.assert_allclose(enc.centering, 0.5)
    assert len(enc.sha256) == 64


def test_model_without_contract_refused_unless_given(models, tmp_path):
    with pytest.raises(ModelError, match="no preprocessing contract.*--contract FILE"):
        Encoder(models["bare"])
    file = tmp_path / "contract.json"
    file.write_text(CONTRACT.to_json())
    assert Encoder(models["bare"], contract=file).contract == CONTRACT
    assert Encoder(models["bare"], contract=CONTRACT).contract == CONTRACT


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "junk.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        Encoder(bad)
    with pytest.raises(ModelError, match="not found"):
        Encoder(tmp_path / "missing.onnx")


def test_arrays_match_manual_preprocessing_and_batching(models):
    enc = Encoder(models["ok"])
    rng = np.random.default_rng(0)
    images = [rng.random((20, 24)).astype(np.float32) for _ in range(5)]
    manual = enc.run(np.stack([CONTRACT.apply(im) for im in images]))
    np.testing.assert_allclose(enc.embed_arrays(images, batch_size=2), manual, atol=1e-5)
    np.testing.assert_allclose(enc.embed_arrays(np.stack(images)), manual, atol=1e-5)
    np.testing.assert_allclose(enc.embed(images[0]).vectors, manual[:1], atol=1e-5)
    # different images give different embeddings: the model is not constant
    assert np.abs(manual[0] - manual[1]).max() > 1e-4


def test_folder_and_paths_skip_bad_files(models, tmp_path):
    root = write_class_folders(tmp_path / "imgs", classes=2, per_class=3)
    (root / "class_0" / "broken.png").write_bytes(b"\x89PNG broken")
    (root / "notes.txt").write_text("hello")
    enc = Encoder(models["ok"])
    res = enc.embed(root, batch_size=4)
    assert res.vectors.shape == (6, 8) and len(res.samples) == 6
    reasons = {s.reason for s in res.skipped}
    assert len(res.skipped) == 2 and any("not a readable image" in r for r in reasons)
    assert all(str(tmp_path) not in r for r in reasons)  # no raw path in messages
    ids = res.ids()
    assert len(set(ids)) == 6 and all(len(i) == 16 for i in ids)
    paths = sorted((root / "class_1").glob("*.png"))
    by_paths = enc.embed(paths)
    np.testing.assert_allclose(by_paths.vectors, res.vectors[3:], atol=1e-5)
    json.dumps(ids)  # ids are plain strings


def test_dicom_files_embed_through_the_contract(models, tmp_path):
    import shutil

    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / name)
    enc = Encoder(models["ok"])
    res = enc.embed(tmp_path)
    assert res.vectors.shape == (2, 8) and not res.skipped
    assert np.isfinite(res.vectors).all() and np.abs(res.vectors[0] - res.vectors[1]).max() > 0
    one = enc.embed([tmp_path / "CT_small.dcm"])
    np.testing.assert_allclose(one.vectors, res.vectors[:1], atol=1e-5)
