"""The local few-shot classifier through an ONNX model and the CLI: heatmaps that point at
blobs, fewshot fit/predict/eval with heatmaps, the report's heatmap section, clear errors,
no torch imported. The classifier on synthetic local maps is in test_local_fewshot.py."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.models import build_local_model, build_tiny_model
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.fewshot import FewShotClassifier
from cossl_edge.report import ReportError, build_report
from cossl_edge.runtime.encoder import Encoder, ModelError

SIZE = 32  # blob images: SIZE px, an 8×8 local map (8-px patches every 4 px)
CONTRACT = PreprocessContract(channels=1, size=SIZE)
runner = CliRunner()


# -- blobs through an ONNX model -------------------------------------------------------------
def blob_image(kind: str, rng) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Diagonal stripes at a random phase plus noise; 'bright'/'dark' add a disk of radius
    ~2.5 px. Returns the image and the disk's box (y0, x0, y1, x1), None for 'normal'.
    The period (7 px) is prime to the map's stride (4 px), so the patches of one normal image
    show the stripes at many phases, as tissue shows its texture in many ways."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    img = 0.4 + 0.1 * np.sin(2 * np.pi * (xx + yy) / 7 + rng.uniform(0, 2 * np.pi))
    img += 0.05 * rng.random((SIZE, SIZE))
    if kind == "normal":
        return img.astype(np.float32), None
    cy, cx = rng.integers(6, SIZE - 6, 2)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 6] = 0.95 if kind == "bright" else 0.02
    return img.astype(np.float32), (cy - 2, cx - 2, cy + 2, cx + 2)


def blob_set(rng, per_class: int):
    images, labels, boxes = [], [], []
    for kind in ("normal", "bright", "dark"):
        for _ in range(per_class):
            img, box = blob_image(kind, rng)
            images.append(img)
            labels.append(kind)
            boxes.append(box)
    return images, labels, boxes


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> Path:
    return build_local_model(tmp_path_factory.mktemp("local") / "local.onnx", CONTRACT)


@pytest.mark.parametrize("scoring", ["memory", "hybrid"])
def test_heatmaps_point_at_the_blobs(local_model, scoring):
    enc = Encoder(local_model, threads=1)

    def maps(images):
        return enc.run_local(CONTRACT.normalize(np.stack([CONTRACT.prepare(i) for i in images])))

    rng = np.random.default_rng(0)
    s_img, s_lab, _ = blob_set(rng, 5)
    q_img, q_lab, q_box = blob_set(rng, 20)
    clf = FewShotClassifier.fit(maps(s_img), s_lab, kind="local", centering=enc.centering,
                                scoring=scoring)
    assert clf.params.get("scoring", "memory") == scoring
    proba, heat = clf.predict_local(maps(q_img))
    pred = np.asarray(clf.classes)[proba.argmax(1)]
    assert (pred == np.asarray(q_lab)).mean() >= 0.8
    cell = SIZE / heat.shape[1]
    hits = []
    for p, truth, box, h in zip(pred, q_lab, q_box, heat, strict=True):
        if truth == "normal" or p != truth:
            continue
        r, c = np.unravel_index(h.argmax(), h.shape)
        y, x = (r + 0.5) * cell, (c + 0.5) * cell  # the cell's centre in image pixels
        y0, x0, y1, x1 = box
        hits.append(y0 - cell <= y <= y1 + cell and x0 - cell <= x <= x1 + cell)
    assert len(hits) >= 25 and np.mean(hits) >= 0.8


# -- the CLI ---------------------------------------------------------------------------------
def _write(folder: Path, images, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names, strict=True):
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / name)


@pytest.fixture(scope="module")
def blob_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(7)
    for kind in ("normal", "bright"):
        images = [blob_image(kind, rng)[0] for _ in range(4)]
        _write(root / "support" / kind, images, [f"patient_{kind}_{i}.png" for i in range(4)])
    images = [blob_image(k, rng)[0] for k in ("normal", "bright") for _ in range(3)]
    _write(root / "query", images, [f"patient_{i}.png" for i in range(6)])
    return root


def test_cli_fit_predict_heatmaps_eval_report(local_model, blob_folders, tmp_path):
    run = tmp_path / "run"  # heatmaps in RUN_DIR/heatmaps show in the run's report
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "step": 0, "event": "init"}))
    clf, preds, heat = tmp_path / "clf.json", tmp_path / "p.csv", run / "heatmaps"
    res = runner.invoke(app, ["fewshot", "fit", str(local_model), str(blob_folders / "support"),
                              "--classifier", "local", "--out", str(clf)])
    assert res.exit_code == 0, res.output
    saved = json.loads(clf.read_text())
    assert saved["params"]["normal_class"] == "normal"
    assert saved["model_sha256"] == Encoder(local_model).sha256
    assert Encoder(local_model).pooling == "mean"  # so the model's centring serves (none here)
    res = runner.invoke(app, ["fewshot", "predict", str(clf), str(blob_folders / "query"),
                              "--out", str(preds), "--heatmaps", str(heat)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(preds.open()))
    assert [r["label"] for r in rows] == ["normal"] * 3 + ["bright"] * 3
    pngs = sorted(p.name for p in heat.glob("*.png"))
    assert pngs == sorted(f"{r['id']}.png" for r in rows)
    assert not any("patient" in name for name in pngs)
    index = list(csv.DictReader((heat / "heatmaps.csv").open()))
    assert [r["id"] for r in index] == [r["id"] for r in rows]
    assert b"patient" not in (heat / "heatmaps.csv").read_bytes()
    picture = np.asarray(Image.open(heat / pngs[0]))
    assert picture.shape == (SIZE, SIZE, 3)
    res = runner.invoke(app, ["fewshot", "eval", str(local_model), str(blob_folders / "support"),
                              "--classifier", "local", "--shots", "2", "--episodes", "3",
                              "--queries", "2", "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e.json").read_text())["classifier"] == "local"
    page = build_report(run)
    shown = re.search('<section id="heatmaps">(.*?)</section>', page, re.S).group(1)
    # the six most abnormal-looking images (all of them here), then the colour scale
    assert shown.count("data:image/png;base64,") == 2 and "the 6 of 6 images" in shown
    with pytest.raises(ReportError, match="--heatmaps"):
        build_report(run, heatmaps=tmp_path / "nowhere")
    (heat / "heatmaps.csv").unlink()  # without heatmaps, no section (not a 'missing' one)
    assert 'id="heatmaps"' not in build_report(run)


def test_cli_clear_errors(local_model, blob_folders, tmp_path):
    plain = build_tiny_model(tmp_path / "plain.onnx", CONTRACT, dim=8)
    labels_csv = tmp_path / "labels.csv"  # two classes, neither named like 'normal'
    labels_csv.write_text("path,label\n" + "".join(f"patient_{i}.png,{'ab'[i % 2]}\n"
                                                   for i in range(6)))
    with pytest.raises(ModelError, match="export RUN --local-map"):
        Encoder(plain).require_local_map()
    res = runner.invoke(app, ["fewshot", "fit", str(plain), str(blob_folders / "support"),
                              "--classifier", "local", "--out", str(tmp_path / "c.json")])
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1
    assert "plain.onnx" in lines[0] and "cossl-edge export RUN --local-map" in lines[0]
    res = runner.invoke(app, ["fewshot", "fit", str(local_model), str(blob_folders / "query"),
                              "--classifier", "local", "--out", str(tmp_path / "c.json"),
                              "--labels", str(labels_csv)])
    assert res.exit_code == 2 and "pass --normal-class NAME" in res.output
    assert len(res.output.strip().splitlines()) == 1
    clf = tmp_path / "proto.json"
    res = runner.invoke(app, ["fewshot", "fit", str(plain), str(blob_folders / "support"),
                              "--out", str(clf)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["fewshot", "predict", str(clf), str(blob_folders / "query"),
                              "--out", str(tmp_path / "p.csv"), "--heatmaps", str(tmp_path)])
    assert res.exit_code == 2 and "--classifier local" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_nothing_added_imports_torch():
    code = ("import sys; import cossl_edge.fewshot.local, cossl_edge.runtime.heatmaps, "
            "cossl_edge.commands.fewshot; print([m for m in ('torch', 'onnx', 'matplotlib') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
