"""Embedding files: resume after a kill, shards, id map; the embed and fewshot commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from support.folders import write_class_folders
from support.models import build_tiny_model
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.runtime.embeddings import (
    EmbeddingFileError,
    embed_to_file,
    load_embeddings,
    parse_shard,
    shard_samples,
)
from cossl_edge.runtime.encoder import Encoder
from cossl_edge.sources import discover

runner = CliRunner()


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    contract = PreprocessContract(channels=1, size=16)
    return {
        "model": build_tiny_model(root / "m.onnx", contract, dim=8, centering=[0.3] * 8),
        "other": build_tiny_model(root / "o.onnx", contract, dim=8, seed=1),
        "data": write_class_folders(root / "data", classes=2, per_class=6),
    }


def test_resume_after_kill_gives_the_same_file(setup, tmp_path):
    enc = Encoder(setup["model"])
    samples = discover(setup["data"]).samples
    full = embed_to_file(enc, samples, tmp_path / "full.npz", root=setup["data"],
                         batch_size=2, chunk_size=4)
    calls = []

    def killer(n: int) -> None:
        calls.append(n)
        if len(calls) == 3:  # first batch of the second chunk
            raise KeyboardInterrupt

    out = tmp_path / "resumed.npz"
    with pytest.raises(KeyboardInterrupt):
        embed_to_file(enc, samples, out, root=setup["data"], batch_size=2, chunk_size=4,
                      on_progress=killer)
    assert not out.exists() and (tmp_path / "resumed.npz.partial").is_dir()
    report = embed_to_file(enc, samples, out, root=setup["data"], batch_size=2, chunk_size=4)
    assert report.resumed == 4 and report.embedded == 8 and full.embedded == 12
    a, b = load_embeddings(tmp_path / "full.npz"), load_embeddings(out)
    assert a.ids == b.ids and len(a.ids) == 12
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
    assert b.model_sha256 == enc.sha256 and not (tmp_path / "resumed.npz.partial").exists()


def test_partial_run_of_another_model_refused(setup, tmp_path):
    samples = discover(setup["data"]).samples
    out = tmp_path / "e.npz"
    with pytest.raises(KeyboardInterrupt):
        embed_to_file(Encoder(setup["model"]), samples, out, root=setup["data"], chunk_size=4,
                      batch_size=4, on_progress=lambda n: (_ for _ in ()).throw(
                          KeyboardInterrupt))
    with pytest.raises(EmbeddingFileError, match="another model.*delete this folder"):
        embed_to_file(Encoder(setup["other"]), samples, out, root=setup["data"])


def test_shards_partition_the_samples(setup):
    samples = discover(setup["data"]).samples
    parts = [shard_samples(samples, i, 3) for i in range(3)]
    keys = [s.key for p in parts for s in p]
    assert sorted(keys) == sorted(s.key for s in samples)  # each sample in exactly one shard
    assert shard_samples(list(reversed(samples)), 1, 3) == list(reversed(parts[1]))
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) == (0, 1)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(EmbeddingFileError, match="--shard"):
            parse_shard(bad)


def test_embed_cli_writes_ids_and_map_only_on_request(setup, tmp_path):
    out = tmp_path / "emb.npz"
    res = runner.invoke(app, ["embed", str(setup["model"]), str(setup["data"]), "--out",
                              str(out), "--shard", "0/1", "--threads", "1", "--no-spin"])
    assert res.exit_code == 0, res.output
    ids = [r["id"] for r in csv.DictReader((tmp_path / "emb.ids.csv").open())]
    assert ids == load_embeddings(out).ids and len(ids) == 12
    assert not list(tmp_path.glob("*map*"))
    text = out.read_bytes() + (tmp_path / "emb.ids.csv").read_bytes()
    assert b"class_0" not in text and b"img_000" not in text  # no raw path in artefacts
    res = runner.invoke(app, ["embed", str(setup["model"]), str(setup["data"]), "--out",
                              str(tmp_path / "e2.npz"), "--id-map", str(tmp_path / "map.csv")])
    rows = list(csv.DictReader((tmp_path / "map.csv").open()))
    assert res.exit_code == 0 and [r["id"] for r in rows] == ids
    assert rows[0]["path"] == "class_0/img_000.png"


def test_fewshot_cli_fit_predict_eval_and_mismatch(setup, tmp_path):
    clf = tmp_path / "clf.json"
    res = runner.invoke(app, ["fewshot", "fit", str(setup["model"]), str(setup["data"]),
                              "--out", str(clf), "--classifier", "proto"])
    assert res.exit_code == 0, res.output
    saved = json.loads(clf.read_text())
    assert saved["model_sha256"] == Encoder(setup["model"]).sha256
    assert saved["centering"] == pytest.approx([0.3] * 8)
    preds = tmp_path / "p.csv"
    res = runner.invoke(app, ["fewshot", "predict", str(clf), str(setup["data"] / "class_1"),
                              "--out", str(preds)])
    rows = list(csv.DictReader(preds.open()))
    assert res.exit_code == 0 and [r["label"] for r in rows] == ["class_1"] * 6
    res = runner.invoke(app, ["fewshot", "predict", str(clf), str(setup["data"]), "--out",
                              str(preds), "--abstain", "1.0"])
    assert {r["label"] for r in csv.DictReader(preds.open())} == {"unknown"}
    res = runner.invoke(app, ["fewshot", "predict", str(clf), str(setup["data"]), "--out",
                              str(preds), "--model", str(setup["other"])])
    assert res.exit_code == 2 and "another model" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["fewshot", "eval", str(setup["model"]), str(setup["data"]),
                              "--shots", "1,2", "--episodes", "5", "--queries", "3",
                              "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "e.json").read_text())
    assert set(ev["shots"]) == {"1", "2"} and "auc" in ev["shots"]["1"]


def test_bench_cli_recommends(setup, tmp_path):
    res = runner.invoke(app, ["bench", str(setup["model"]), "--batch-sizes", "1,4",
                              "--threads", "1", "--seconds", "0.05", "--json",
                              str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert len(b["rows"]) == 2 and all(r["images_per_s"] > 0 for r in b["rows"])
    assert b["for_latency"] == {"threads": 1, "batch_size": 1}
    assert "--threads 1" in res.output


def test_embed_dicom_stride_embeds_every_other_slice(setup, tmp_path):
    from dicom_factory import ct_series

    ct_series(tmp_path / "ct", n=6)
    embedded = {}
    for stride in ("1", "2"):
        out = tmp_path / f"s{stride}.npz"
        res = runner.invoke(app, ["embed", str(setup["model"]), str(tmp_path / "ct"),
                                  "--out", str(out), "--dicom-stride", stride,
                                  "--threads", "1"])
        assert res.exit_code == 0, res.output
        embedded[stride] = load_embeddings(out)
    assert len(embedded["1"].ids) == 6 and embedded["2"].ids == embedded["1"].ids[::2]
    np.testing.assert_allclose(embedded["2"].vectors, embedded["1"].vectors[::2], atol=1e-6)
    res = runner.invoke(app, ["embed", str(setup["model"]), str(tmp_path / "ct"), "--out",
                              str(tmp_path / "bad.npz"), "--dicom-stride", "0"])
    assert res.exit_code == 2 and "--dicom-stride 1 or more" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_fewshot_takes_the_sampling_options(setup, tmp_path):
    from dicom_factory import ct_series

    for name in ("a", "b"):
        ct_series(tmp_path / "support" / name, n=4, series=name)
    clf = tmp_path / "c.json"
    res = runner.invoke(app, ["fewshot", "fit", str(setup["model"]), str(tmp_path / "support"),
                              "--out", str(clf), "--dicom-stride", "2"])
    assert res.exit_code == 0, res.output
    assert "proto classifier on 4 images" in res.output
    preds = tmp_path / "p.csv"
    res = runner.invoke(app, ["fewshot", "predict", str(clf), str(tmp_path / "support" / "a"),
                              "--out", str(preds), "--dicom-stride", "4"])
    assert res.exit_code == 0, res.output
    assert len(list(csv.DictReader(preds.open()))) == 1
