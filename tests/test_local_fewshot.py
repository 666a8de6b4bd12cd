"""The local few-shot classifier: memory of local vectors, calibration, heatmaps, CLI."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from make_edge_fixtures import build_local_model, build_tiny_model
from PIL import Image
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.contract import PreprocessContract
from cossl_edge.encoder import Encoder, ModelError
from cossl_edge.episodes import evaluate_episodes
from cossl_edge.fewshot import ClassifierError, FewShotClassifier
from cossl_edge.local_fewshot import normal_class_of
from cossl_edge.report import ReportError, build_report

SIZE = 32  # blob images: SIZE px, an 8×8 local map (8-px patches every 4 px)
CONTRACT = PreprocessContract(channels=1, size=SIZE)
runner = CliRunner()


# -- synthetic local maps --------------------------------------------------------------------
TISSUES = np.array([[2.0, 1.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 2.0, 1.0, 0.0, 1.0],
                    [1.0, 0.0, 0.0, 2.0, 1.0, 1.0]])


def synthetic_maps(rng, n: int, finding: np.ndarray | None, grid=(4, 5)):
    """N×6×h×w maps whose positions each hold one of three 'tissue' vectors plus noise (as a
    real encoder's local vectors cluster by content); with ``finding``, one position per map
    (random, returned) holds that vector instead."""
    kinds = rng.integers(0, len(TISSUES), (n, *grid))
    maps = TISSUES[kinds].transpose(0, 3, 1, 2) + rng.normal(0, 0.1, (n, 6, *grid))
    where = []
    for m in maps:
        r, c = rng.integers(0, grid[0]), rng.integers(0, grid[1])
        if finding is not None:
            m[:, r, c] = finding
        where.append((r, c))
    return maps.astype(np.float32), where


CRACK = np.array([3.0, 0.0, 0.0, 0.0, 0.0, 3.0])
NODULE = np.array([0.0, 3.0, 0.0, 0.0, 3.0, 0.0])


def test_finding_at_one_position_is_found_and_pointed_at():
    rng = np.random.default_rng(0)
    normal, _ = synthetic_maps(rng, 4, None)
    crack, _ = synthetic_maps(rng, 4, CRACK)
    clf = FewShotClassifier.fit(np.concatenate([normal, crack]), ["normal"] * 4 + ["crack"] * 4,
                                kind="local")
    q_normal, _ = synthetic_maps(rng, 10, None)
    q_crack, where = synthetic_maps(rng, 10, CRACK)
    proba, heat = clf.predict_local(np.concatenate([q_normal, q_crack]))
    assert proba.shape == (20, 2) and heat.shape == (20, 4, 5)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    labels = [p.label for p in clf.predict(np.concatenate([q_normal, q_crack]))]
    assert labels == ["normal"] * 10 + ["crack"] * 10
    peaks = [np.unravel_index(h.argmax(), h.shape) for h in heat[10:]]
    assert [(int(r), int(c)) for r, c in peaks] == where
    cal = clf.params["calibration"]
    assert max(cal["normal_evidence"]) < min(cal["finding_evidence"])


def test_several_finding_classes_and_abstain():
    rng = np.random.default_rng(1)
    parts = [synthetic_maps(rng, 3, f)[0] for f in (None, CRACK, NODULE)]
    clf = FewShotClassifier.fit(np.concatenate(parts), ["good"] * 3 + ["crack"] * 3 +
                                ["nodule"] * 3, kind="local", abstain_threshold=0.3)
    assert clf.params["normal_class"] == "good" and clf.classes == ["crack", "good", "nodule"]
    queries = np.concatenate([synthetic_maps(rng, 5, f)[0] for f in (None, CRACK, NODULE)])
    preds = clf.predict(queries)
    assert [p.label for p in preds] == ["good"] * 5 + ["crack"] * 5 + ["nodule"] * 5
    assert all(p.probability > 0.5 for p in preds)
    unsure = clf.predict(queries, abstain_threshold=1.0)
    assert {p.label for p in unsure} == {"unknown"}


def test_one_normal_shot_calibrates_on_its_own_positions():
    rng = np.random.default_rng(2)
    normal, _ = synthetic_maps(rng, 1, None)
    crack, _ = synthetic_maps(rng, 1, CRACK)
    clf = FewShotClassifier.fit(np.concatenate([normal, crack]), ["normal", "crack"],
                                kind="local")
    queries = np.concatenate([synthetic_maps(rng, 5, f)[0] for f in (None, CRACK)])
    assert [p.label for p in clf.predict(queries)] == ["normal"] * 5 + ["crack"] * 5


def test_save_load_roundtrip_model_binding_and_schema(tmp_path):
    rng = np.random.default_rng(3)
    x = np.concatenate([synthetic_maps(rng, 3, f)[0] for f in (None, CRACK)])
    clf = FewShotClassifier.fit(x, ["normal"] * 3 + ["crack"] * 3, kind="local",
                                centering=np.full(6, 0.5))
    clf.bind_model("a" * 64, "model.onnx", CONTRACT.to_dict())
    path = clf.save(tmp_path / "clf.json")
    saved = json.loads(path.read_text())
    assert saved["kind"] == "local" and saved["centering"] == [0.5] * 6
    assert len(saved["params"]["normal_memory"]) == 3 * 20  # every normal position
    back = FewShotClassifier.load(path)
    np.testing.assert_allclose(back.predict_proba(x), clf.predict_proba(x), atol=1e-6)
    with pytest.raises(ClassifierError, match="another model"):
        back.check_model("b" * 64, "other.onnx", source=path)
    del saved["params"]["calibration"]
    path.write_text(json.dumps(saved))
    with pytest.raises(ClassifierError, match="malformed.*calibration"):
        FewShotClassifier.load(path)


def test_normal_class_and_shape_errors():
    assert normal_class_of(["No Finding", "nodule"]) == "No Finding"
    assert normal_class_of(["a", "b"], "b") == "b"
    with pytest.raises(ClassifierError, match="pass --normal-class NAME"):
        normal_class_of(["crack", "dent"])
    with pytest.raises(ClassifierError, match="pass --normal-class NAME"):
        normal_class_of(["normal", "ok", "crack"])
    with pytest.raises(ClassifierError, match="not a support class"):
        normal_class_of(["normal", "crack"], "nodule")
    rng = np.random.default_rng(4)
    x = np.concatenate([synthetic_maps(rng, 2, f)[0] for f in (None, CRACK)])
    clf = FewShotClassifier.fit(x, ["normal"] * 2 + ["crack"] * 2, kind="local")
    with pytest.raises(ClassifierError, match="local maps N×C×h×w"):
        clf.predict_proba(x.mean(axis=(2, 3)))
    with pytest.raises(ClassifierError, match="do not match"):
        clf.predict_proba(x[:, :, :3])
    proto = FewShotClassifier.fit(x.mean(axis=(2, 3)), ["normal"] * 2 + ["crack"] * 2)
    with pytest.raises(ClassifierError, match="--classifier local"):
        proto.predict_local(x)


def test_episodes_keep_the_normal_class():
    rng = np.random.default_rng(5)
    x = np.concatenate([synthetic_maps(rng, 6, f)[0] for f in (None, CRACK, NODULE)])
    labels = ["normal"] * 6 + ["crack"] * 6 + ["nodule"] * 6
    res = evaluate_episodes(x, labels, shots=(1, 3), episodes=8, ways=2, kind="local",
                            queries=3, seed=0)
    three = res["shots"]["3"]
    assert three["accuracy"] > 0.9 and "auc" in three and res["classifier"] == "local"
    assert three["per_class_recall"]["normal"] > 0.9  # in every episode


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
    assert shown.count("data:image/png;base64,") == 1 and "The 6 of 6 images" in shown
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
    code = ("import sys; import cossl_edge.local_fewshot, cossl_edge.heatmaps, "
            "cossl_edge.commands.fewshot; print([m for m in ('torch', 'onnx', 'matplotlib') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_prototype_scoring_of_a_gem_model_points_at_the_finding(tmp_path):
    """--local-scoring prototype: each local vector against the prototypes of the pooled
    (GeM) support embeddings; the heatmap's maximum is the finding's position."""
    rng = np.random.default_rng(3)

    def maps(n, finding):
        m = np.abs(rng.normal(0.5, 0.1, (n, 6, 5, 5))).astype(np.float32)
        where = []
        for x in m:
            r, c = rng.integers(0, 5, 2)
            if finding:
                x[:, r, c] = [0.2, 0.2, 3.0, 0.2, 3.0, 0.2]
            where.append((r, c))
        return m, where

    normal, _ = maps(5, False)
    finding, _ = maps(5, True)
    clf = FewShotClassifier.fit(np.concatenate([normal, finding]), ["normal"] * 5 +
                                ["defect"] * 5, kind="local", scoring="prototype", pool="gem")
    assert clf.params["scoring"] == "prototype" and set(clf.params["prototypes"]) == \
        {"defect", "normal"}
    qn, _ = maps(10, False)
    qf, where = maps(10, True)
    proba, heat = clf.predict_local(np.concatenate([qn, qf]))
    pred = np.asarray(clf.classes)[proba.argmax(1)]
    assert (pred == np.array(["normal"] * 10 + ["defect"] * 10)).mean() >= 0.9
    assert all(np.unravel_index(h.argmax(), h.shape) == tuple(w)
               for h, w in zip(heat[10:], where, strict=True))
    clf.save(tmp_path / "clf.json")
    again = FewShotClassifier.load(tmp_path / "clf.json")
    np.testing.assert_allclose(again.predict_local(qf)[0], clf.predict_local(qf)[0], atol=1e-3)


def test_hybrid_scoring_is_the_sum_of_both_standardised_scores(tmp_path):
    """--local-scoring hybrid: a(i) = standardised prototype score + standardised distance to
    the nearest normal support vector, both standardised on the normal support images (each
    left out of its own prototype and memory); the decision and the heatmap use that sum."""
    from cossl_edge.local_fewshot import anomaly, local_vectors, prototype_scores

    rng = np.random.default_rng(4)
    normal, _ = synthetic_maps(rng, 4, None)
    crack, where = synthetic_maps(rng, 4, CRACK)
    x = np.abs(np.concatenate([normal, crack]))
    labels = ["normal"] * 4 + ["crack"] * 4
    clf = FewShotClassifier.fit(x, labels, kind="local", scoring="hybrid", pool="gem")
    params = clf.params
    assert params["scoring"] == "hybrid" and len(params["normal_memory"]) == 4 * 20
    q, qwhere = synthetic_maps(rng, 3, CRACK)
    q = np.abs(q)
    proba, heat = clf.predict_local(q)
    z = local_vectors(q, np.asarray(clf.centering, np.float32))
    protos = {c: np.asarray(p, np.float32) for c, p in params["prototypes"].items()}
    (mp, sp), (mm, sm) = params["standardise"]["prototype"], params["standardise"]["memory"]
    expected = (prototype_scores(z, protos, "normal") - mp) / sp + \
        (anomaly(z, np.asarray(params["normal_memory"], np.float32)) - mm) / sm
    np.testing.assert_allclose(heat.reshape(3, -1), expected, atol=1e-4)
    assert sp > 0 and sm > 0 and (proba.argmax(1) == clf.classes.index("crack")).all()
    assert all(np.unravel_index(h.argmax(), h.shape) == tuple(w)
               for h, w in zip(heat, qwhere, strict=True))
    clf.save(tmp_path / "clf.json")
    again = FewShotClassifier.load(tmp_path / "clf.json")
    np.testing.assert_allclose(again.predict_local(q)[0], proba, atol=1e-3)
    broken = json.loads((tmp_path / "clf.json").read_text())
    del broken["params"]["standardise"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ClassifierError, match="standardise"):
        FewShotClassifier.load(tmp_path / "broken.json")
    with pytest.raises(ClassifierError, match="two normal images"):
        FewShotClassifier.fit(x[3:], labels[3:], kind="local", scoring="hybrid")
