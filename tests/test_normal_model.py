"""The normal model (statistics of the unlabeled training images) from the training side to
the edge: its maths in numpy and torch, the anomaly map in the exported fp32 and int8 ONNX
files, the anomaly classifier, the choice of a reading from the support, and the CLI. And
EfficientNet-Lite0 from ImageNet weights: the grey stem, the frozen blocks, --arch auto."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from support.runs import write_calibrated_run
from typer.testing import CliRunner

from cossl_edge.cli import app
from cossl_edge.export import export_run
from cossl_edge.export.loaded_run import load_run
from cossl_edge.fewshot import ClassifierError, FewShotClassifier
from cossl_edge.fewshot.anomaly import (
    MAX_SEPARATION,
    choose_reading,
    fit_anomaly,
    predict_anomaly,
    separation,
)
from cossl_edge.runtime import metadata as mm
from cossl_edge.training import normal_stats
from cossl_edge.training.config import PretrainConfig, resolve_arch

runner = CliRunner()
SIZE = 64


def cell(rng, dark: bool) -> np.ndarray:
    """A registered 'cell': two horizontal busbars on a grainy background; ``dark`` adds an
    inactive region (a dark square at a random place), the finding."""
    img = 0.7 + 0.05 * rng.standard_normal((SIZE, SIZE))
    img[20:22], img[44:46] = 0.2, 0.2
    box = None
    if dark:
        y, x = rng.integers(4, SIZE - 20, 2)
        img[y:y + 16, x:x + 16] = 0.25
        box = (y, x, y + 16, x + 16)
    return np.clip(img, 0, 1).astype(np.float32), box


def write_cells(root: Path, n_unlabeled: int = 60, per_class: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    boxes = {}
    (root / "unlabeled").mkdir(parents=True)
    for i in range(n_unlabeled):
        img, _ = cell(rng, dark=i % 10 == 0)  # unlabeled scans: mostly normal
        Image.fromarray(np.round(255 * img).astype(np.uint8)).save(root / "unlabeled" /
                                                                   f"u{i:03d}.png")
    for cls in ("functional", "defective"):
        (root / "labeled" / cls).mkdir(parents=True)
        for i in range(per_class):
            img, box = cell(rng, dark=cls == "defective")
            name = f"{cls[0]}{i:02d}"
            Image.fromarray(np.round(255 * img).astype(np.uint8)).save(
                root / "labeled" / cls / f"{name}.png")
            boxes[name] = box
    return boxes


# -- the maths ----------------------------------------------------------------------------
def test_numpy_and_torch_normal_model_agree_and_find_the_dark_place():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((50, 6, 3, 3)).astype(np.float32)
    pix = (0.5 + 0.01 * rng.standard_normal((50, 3, 3))).astype(np.float32)
    stats = normal_stats.fit_normal_model(feats, pix)
    q_feats, q_pix = feats[:4].copy(), pix[:4].copy()
    q_pix[1, 2, 0] = 0.2  # darker than that place ever is
    q_feats[2, :, 1, 1] += 8.0  # features unlike that place's
    want = normal_stats.anomaly_maps(stats, q_feats, q_pix)
    assert np.unravel_index(want[1].argmax(), (3, 3)) == (2, 0)
    assert np.unravel_index(want[2].argmax(), (3, 3)) == (1, 1)
    assert np.median(normal_stats.anomaly_maps(stats, feats, pix)) == pytest.approx(0, abs=0.1)
    model = normal_stats.NormalModel(stats)
    image = torch.from_numpy(np.repeat(np.repeat(q_pix, 4, 1), 4, 2)[:, None])  # 12 px
    got = model(image, torch.from_numpy(q_feats)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_normal_model_file_round_trips_and_refuses_another(tmp_path):
    rng = np.random.default_rng(1)
    stats = normal_stats.fit_normal_model(rng.standard_normal((10, 3, 2, 2)),
                                          rng.random((10, 2, 2)))
    normal_stats.save(stats, tmp_path / "n.npz")
    back = normal_stats.load(tmp_path / "n.npz")
    np.testing.assert_array_equal(back["chol"], stats["chol"])
    np.savez(tmp_path / "other.npz", mean=np.zeros(3))
    with pytest.raises(ValueError, match="not a normal model"):
        normal_stats.load(tmp_path / "other.npz")


def test_anomaly_classifier_and_its_errors():
    maps = np.zeros((8, 3, 3), np.float32)
    maps[4:, 0, 2] = 5.0
    labels = ["ok"] * 4 + ["crack"] * 4
    clf = FewShotClassifier.fit(maps, labels, kind="anomaly")
    assert clf.params["normal_class"] == "ok"
    proba, heat = clf.predict_local(maps)
    assert (np.asarray(clf.classes)[proba.argmax(1)] == np.asarray(labels)).all()
    assert heat.shape == (8, 3, 3)
    with pytest.raises(ClassifierError, match="exactly two classes"):
        fit_anomaly(maps[:6], ["ok", "ok", "a", "a", "b", "b"], ["a", "b", "ok"], None)
    with pytest.raises(ClassifierError, match="anomaly maps N×h×w"):
        clf.predict_proba(maps.reshape(8, -1))
    with pytest.raises(ClassifierError, match="do not match"):
        predict_anomaly(clf.params, clf.classes, maps[:, :2])


def test_separation_is_the_class_gap_in_pooled_standard_deviations():
    finding = np.array([False, False, True, True])
    # means 0 and 3, each class's standard deviation 1: d′ = 3
    assert separation(np.array([-1.0, 1.0, 2.0, 4.0]), finding) == pytest.approx(3.0)
    assert separation(np.array([2.0, 4.0, -1.0, 1.0]), finding) == pytest.approx(-3.0)
    # no spread at all: capped, with the gap's sign; a class missing: none
    assert separation(np.array([0.0, 0.0, 1.0, 1.0]), finding) == MAX_SEPARATION
    assert separation(np.array([1.0, 2.0]), np.array([False, False])) == 0.0


def test_auto_chooses_the_reading_that_separates_the_support():
    rng = np.random.default_rng(2)
    labels = ["normal"] * 5 + ["finding"] * 5
    emb_noise = rng.standard_normal((10, 8)).astype(np.float32)
    emb_sep = emb_noise.copy()
    emb_sep[5:, 0] += 6.0
    maps_sep = rng.random((10, 2, 2)).astype(np.float32)
    maps_sep[5:] += 3.0
    maps_noise = rng.random((10, 2, 2)).astype(np.float32)
    kind, fits = choose_reading({"embedding": emb_noise, "anomaly_map": maps_sep}, labels)
    assert kind == "anomaly" and fits["anomaly"]["accuracy"] == fits["anomaly"]["auc"] == 1.0
    assert fits["anomaly"]["separation"] > fits["proto"]["separation"] + 1
    kind, fits = choose_reading({"embedding": emb_sep, "anomaly_map": maps_noise}, labels)
    assert kind == "proto" and fits["proto"]["auc"] == 1.0 > fits["anomaly"]["auc"]
    # both separate the support: the anomaly reading keeps the task
    assert choose_reading({"embedding": emb_sep, "anomaly_map": maps_sep}, labels)[0] == \
        "anomaly"
    # both put every support image on the right side, but the anomaly evidence only just
    # (as a reading at chance does on ten images now and then): the wide separation wins
    maps_edge = np.zeros((10, 2, 2), np.float32)
    maps_edge[:, 0, 0] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    kind, fits = choose_reading({"embedding": emb_sep, "anomaly_map": maps_edge}, labels)
    assert fits["anomaly"]["auc"] == fits["proto"]["auc"] == 1.0
    assert kind == "proto"
    assert fits["proto"]["separation"] > fits["anomaly"]["separation"] + 1
    # three classes, or no normal class: prototypes only
    kind, fits = choose_reading({"embedding": emb_sep, "anomaly_map": maps_sep},
                                ["a"] * 5 + ["b"] * 5)
    assert kind == "proto" and fits == {}


# -- through export and the CLI ------------------------------------------------------------
@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    return root, write_cells(root)


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, cells):
    """A run (random-init ResNet) whose normal model was computed on the unlabeled cells,
    exported to fp32 and int8."""
    root, _ = cells
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.sources import discover, load_many

    run = write_calibrated_run(tmp_path_factory.mktemp("run"), root / "unlabeled")
    contract = PreprocessContract(channels=1, size=SIZE, mean=(0.5,), std=(0.25,))
    config = json.loads((run / "config.json").read_text())
    config["contract"], config["stem"] = contract.to_dict(), "strided"
    (run / "config.json").write_text(json.dumps(config))
    loaded = load_run(run)
    images, _, _ = load_many(discover(root / "unlabeled").samples, contract)
    np.save(run / "calibration.npy", images.astype(np.float16), allow_pickle=False)
    stats = normal_stats.compute(loaded.encoder, images, contract, torch.device("cpu"))
    normal_stats.save(stats, run / "normal-stats.npz")
    report = export_run(run, calibration_count=32, latency_budget_s=0.0)
    return run, report


def test_export_carries_the_anomaly_map_in_fp32_and_int8(exported_run, cells):
    run, report = exported_run
    assert report["anomaly_map"] is True and report["int8"]["fp32_nodes"] > 0
    agree = report["int8_agreement"]["anomaly_map"]
    assert agree["pearson"] > 0.9, agree
    from cossl_edge.runtime.encoder import Encoder

    for name in ("encoder.onnx", "encoder.int8.onnx"):
        sess = ort.InferenceSession(str(run / name), providers=["CPUExecutionProvider"])
        assert [o.name for o in sess.get_outputs()] == [mm.OUTPUT, mm.ANOMALY_MAP]
        enc = Encoder(run / name)
        root, boxes = cells
        found = 0
        for path in sorted((root / "labeled" / "defective").glob("*.png")):
            img = np.asarray(Image.open(path), np.float32) / 255
            amap = enc.run_anomaly(enc.contract.apply(img)[None])[0]
            y, x = np.unravel_index(amap.argmax(), amap.shape)
            cy, cx = (y + 0.5) * SIZE / amap.shape[0], (x + 0.5) * SIZE / amap.shape[1]
            y0, x0, y1, x1 = boxes[path.stem]
            found += (y0 - 8 <= cy <= y1 + 8) and (x0 - 8 <= cx <= x1 + 8)
        assert found >= 10, f"{name}: the map's maximum on the dark region {found}/12"


def test_cli_auto_fit_eval_predict_with_heatmaps(exported_run, cells, tmp_path):
    run, _ = exported_run
    root, _ = cells
    model = str(run / "encoder.int8.onnx")
    clf = tmp_path / "clf.json"
    res = runner.invoke(app, ["fewshot", "fit", model, str(root / "labeled"), "--out",
                              str(clf)])
    assert res.exit_code == 0, res.output
    saved = json.loads(clf.read_text())
    assert f"auto: {saved['kind']} (on the support, each image left out" in res.output
    assert set(saved["settings"]["chosen_by"]) == {"proto", "anomaly"}
    res = runner.invoke(app, ["fewshot", "fit", model, str(root / "labeled"), "--out",
                              str(clf), "--classifier", "anomaly"])
    assert res.exit_code == 0 and json.loads(clf.read_text())["kind"] == "anomaly"
    res = runner.invoke(app, ["fewshot", "predict", str(clf), str(root / "labeled"),
                              "--out", str(tmp_path / "p.csv"), "--heatmaps",
                              str(tmp_path / "heat")])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "heat").glob("*.png"))) == 24
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert sum(r.split(",")[1] == "defective" for r in rows) >= 10
    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["fewshot", "eval", model, str(root / "labeled"), "--shots",
                              "5", "--episodes", "20", "--queries", "5", "--json", str(out)],
                        env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "raw pixels" in res.output and "auto chose" in res.output
    result = json.loads(out.read_text())
    assert result["raw_pixel_floor"]["shots"]["5"]["accuracy"] > 0.5
    assert result["shots"]["5"]["accuracy"] > 0.8
    assert sum(result["shots"]["5"]["chosen"].values()) == 20


def test_anomaly_classifier_on_a_model_without_the_map_says_what_to_do(tmp_path, cells):
    from support.models import build_tiny_model

    from cossl_edge.contract import PreprocessContract

    root, _ = cells
    model = build_tiny_model(tmp_path / "m.onnx", PreprocessContract(channels=1, size=SIZE))
    res = runner.invoke(app, ["fewshot", "fit", str(model), str(root / "labeled"), "--out",
                              str(tmp_path / "c.json"), "--classifier", "anomaly"])
    assert res.exit_code != 0 and "no 'anomaly_map' output" in res.output
    res = runner.invoke(app, ["fewshot", "fit", str(model), str(root / "labeled"), "--out",
                              str(tmp_path / "c.json")])  # auto without a map: proto
    assert res.exit_code == 0 and "proto classifier" in res.output, res.output


# -- EfficientNet-Lite0 from ImageNet ----------------------------------------------------
def test_grey_stem_equals_the_imagenet_network_on_a_repeated_grey_image():
    from efficientnet_lite_pytorch import EfficientNet

    from cossl_edge.training.efficientnet import ARCH, EfficientNetLiteEncoder, imagenet_state_dict

    enc = EfficientNetLiteEncoder(1, "imagenet").eval()
    net = EfficientNet.from_name(ARCH)
    net.load_state_dict(imagenet_state_dict())
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        np.testing.assert_allclose(enc.forward_features(x).numpy(),
                                   net.eval().extract_features(x.repeat(1, 3, 1, 1)).numpy(),
                                   atol=1e-4)
    frozen = [p.requires_grad for p in enc.lower.parameters()]
    assert not any(frozen) and all(p.requires_grad for p in enc.head.parameters())
    enc.train()
    assert not enc.lower.training and enc.upper.training  # ImageNet BN statistics kept


def test_arch_auto_takes_the_pretrained_network_for_images_with_detail():
    cfg = PretrainConfig(arch="auto")
    big = resolve_arch(cfg, 300, True, weights=True, detail=150.0)
    assert big.arch == "efficientnet-lite0" and big.contract.size == 224
    assert big.contract.mean == pytest.approx((127 / 255,))
    # small images: the detail decides (MNIST's strokes 24 px, sklearn's digits 10 px)
    small = resolve_arch(cfg, 28, True, weights=True, detail=24.0)
    assert small.arch == "efficientnet-lite0" and small.contract.size == 112
    assert resolve_arch(cfg, 32, True, weights=True, detail=10.0).arch == "resnet10"
    # so do large ones: a large image with little detail trains from scratch
    assert resolve_arch(cfg, 300, True, weights=True, detail=12.0).arch == "resnet10"
    # an explicit --image-size too small for the ImageNet start keeps the scratch recipe
    sized = replace(cfg, contract=replace(cfg.contract, size=16))
    assert resolve_arch(sized, 28, False, weights=True, detail=24.0).arch == "resnet10"
    sized = replace(cfg, contract=replace(cfg.contract, size=128))
    assert resolve_arch(sized, 28, False, weights=True, detail=24.0).arch == \
        "efficientnet-lite0"
    # no measure: the size decides
    assert resolve_arch(cfg, 300, True, weights=True).arch == "efficientnet-lite0"
    assert resolve_arch(cfg, 28, True, weights=True).arch == "resnet10"
    asked = resolve_arch(PretrainConfig(arch="efficientnet-lite0"), 28, True, weights=True)
    assert asked.arch == "efficientnet-lite0" and asked.contract.size == 112
    assert resolve_arch(cfg, 300, True, weights=False, detail=150.0).arch == "resnet10"
    local = PretrainConfig(arch="auto", findings="local")
    assert resolve_arch(local, 300, True, weights=True, detail=150.0).arch == "resnet10"
    with pytest.raises(ValueError, match="arch must be one of"):
        resolve_arch(PretrainConfig(arch="vgg"), 300, True, weights=True)


def test_detail_side_reads_what_an_image_holds_not_its_size():
    """An image drawn large from a small one has the small one's detail; noise and sharp
    edges have detail up to the stored size; the measure does not depend on the scale the
    same content is stored at, nor on brightness."""
    from PIL import Image

    from cossl_edge.sources import detail_side

    rng = np.random.default_rng(0)
    small = rng.random((8, 8)).astype(np.float32)
    drawn = np.asarray(Image.fromarray(small).resize((64, 64), Image.Resampling.BILINEAR))
    assert detail_side(drawn) < 16
    assert detail_side(rng.random((64, 64))) > 48
    square = np.zeros((64, 64))
    square[20:44, 16:40] = 1.0  # a silhouette: sharp edges
    assert detail_side(square) >= 16
    yy, xx = np.mgrid[0:1:64j, 0:1:64j]
    blob = np.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) / 0.02)
    yy, xx = np.mgrid[0:1:512j, 0:1:512j]  # the same smooth content at 512 px
    big = np.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) / 0.02)
    assert abs(detail_side(big) - detail_side(blob)) <= 4  # integer cycles per image
    assert detail_side(0.2 + 0.5 * square) == pytest.approx(detail_side(square))
    assert detail_side(np.full((32, 32), 0.4)) is None
    rgb = np.stack([square] * 3, axis=2)
    assert detail_side(rgb) == pytest.approx(detail_side(square))


def test_node_series_classifier_serves_an_anomaly_classifier(exported_run, cells, tmp_path):
    """The DICOM node's classifier: per image P(finding) and a heatmap from the anomaly map,
    the series called by its most abnormal image, the normal class from the classifier."""
    from dicom_factory import CR_STORAGE, base_dataset, set_pixels, write

    from cossl_edge.node.classify import SeriesClassifier

    run, _ = exported_run
    root, _ = cells
    clf = FewShotClassifier.fit(
        *_maps_and_labels(run / "encoder.int8.onnx", root / "labeled"), kind="anomaly",
        normal_class="functional")
    from cossl_edge.runtime.encoder import Encoder

    enc = Encoder(run / "encoder.int8.onnx")
    clf.bind_model(enc.sha256, run / "encoder.int8.onnx", enc.contract.to_dict())
    clf.save(tmp_path / "clf.json")
    items = []
    for i, path in enumerate(sorted((root / "labeled" / "defective").glob("*.png"))[:2] +
                             sorted((root / "labeled" / "functional").glob("*.png"))[:2]):
        ds = set_pixels(base_dataset(CR_STORAGE, "CR", f"cell{i}"),
                        (np.asarray(Image.open(path), np.uint16) * 16))
        items.append((str(ds.SOPInstanceUID), write(ds, tmp_path / f"{i}.dcm")))
    node = SeriesClassifier(tmp_path / "clf.json")
    assert node.has_heatmaps and node.normal == "functional"
    per_image, series = node.classify(items)
    assert [r.label for r in per_image] == ["defective"] * 2 + ["functional"] * 2
    assert all(list(np.asarray(r.heatmap).shape) == clf.params["grid"] for r in per_image)
    assert series.label == "defective" and series.key_image == items[np.argmax(
        [r.probabilities[clf.classes.index("defective")] for r in per_image])][0]


def _maps_and_labels(model: Path, folder: Path):
    from cossl_edge.runtime.encoder import Encoder
    from cossl_edge.sources import labelled_samples, load_many

    enc = Encoder(model)
    refs, labels, _ = labelled_samples(folder)
    images, kept, _ = load_many(refs, enc.contract)
    return enc.run_anomaly(enc.contract.normalize(images)), [labels[i] for i in kept]


def test_export_writes_the_network_before_adaptation_and_eval_scores_it(cells, tmp_path):
    """A run started from ImageNet weights: export adds encoder.init.onnx (the ImageNet
    network, the run's contract), and ``fewshot eval`` scores it beside raw pixels on the
    same episodes; a ResNet run gets no such file."""
    from cossl_edge import rundir
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.runtime.encoder import Encoder
    from cossl_edge.sources import discover, load_many
    from cossl_edge.training.backbones import build_encoder
    from cossl_edge.training.efficientnet import IMAGENET_MEAN, IMAGENET_STD

    root, _ = cells
    run = tmp_path / "run"
    run.mkdir()
    contract = PreprocessContract(channels=1, size=SIZE, mean=(IMAGENET_MEAN,),
                                  std=(IMAGENET_STD,))
    cfg = PretrainConfig(arch="efficientnet-lite0", init="imagenet", contract=contract)
    adapted = build_encoder(cfg).eval()
    with torch.no_grad():  # stands in for CO-SSL's changes to the upper blocks
        for p in adapted.upper.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(adapted.state_dict(), run / rundir.ENCODER)
    cfg.save(run / rundir.CONFIG)
    (run / rundir.FINGERPRINT).write_text("ab" * 32 + "\n")
    images, _, _ = load_many(discover(root / "unlabeled").samples, contract)
    np.save(run / rundir.CALIBRATION, images.astype(np.float16), allow_pickle=False)
    report = export_run(run, calibration_count=16, latency_budget_s=0.0, int8=False)
    assert report["init_model"] == rundir.INIT_MODEL and (run / rundir.INIT_MODEL).is_file()
    before = Encoder(run / rundir.INIT_MODEL)
    x = contract.normalize(images[:4])
    with torch.no_grad():
        imagenet = build_encoder(cfg).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(before.run(x), imagenet, atol=1e-4)  # the weights it started from
    assert not np.allclose(Encoder(run / "encoder.onnx").run(x), imagenet, atol=1e-3)

    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["fewshot", "eval", str(run / "encoder.onnx"),
                              str(root / "labeled"), "--shots", "5", "--episodes", "10",
                              "--queries", "5", "--json", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "before adaptation" in res.output
    floor = json.loads(out.read_text())["init_floor"]
    assert floor["model"] == rundir.INIT_MODEL and 0 <= floor["shots"]["5"]["accuracy"] <= 1
    res = runner.invoke(app, ["fewshot", "eval", str(run / "encoder.onnx"),
                              str(root / "labeled"), "--shots", "5", "--episodes", "10",
                              "--no-init-floor", "--json", str(out)])
    assert res.exit_code == 0 and "init_floor" not in json.loads(out.read_text())
    res = runner.invoke(app, ["fewshot", "eval", str(run / "encoder.onnx"),
                              str(root / "labeled"), "--init-model", str(tmp_path / "no.onnx")])
    assert res.exit_code != 0 and "--init-model" in res.output


def test_a_resnet_run_has_no_network_before_adaptation(exported_run):
    _, report = exported_run
    assert report["init_model"] is None and "init" not in report["files"]


def test_backbone_lr_scales_only_an_imagenet_starts_trained_blocks():
    """--backbone-lr: the trained blocks of an ImageNet start learn at that multiple of the
    schedule, the heads (and a BYOL predictor's own scale) are unchanged; 1 or a scratch
    backbone change nothing."""
    from cossl_edge.training.methods import build_method
    from cossl_edge.training.optim import build_optimizer

    cfg = replace(PretrainConfig(arch="efficientnet-lite0", backbone_lr=0.1,
                                 proj_hidden=32, proj_dim=16, local_hidden=16),
                  contract=replace(PretrainConfig().contract, size=112))
    method = build_method(cfg)
    scales = method.lr_scales()
    trained = [p for p in method.backbone.parameters() if p.requires_grad]
    assert trained and all(scales[id(p)] == 0.1 for p in trained)
    assert not any(id(p) in scales for p in method.backbone.lower.parameters())
    head = [p for n, p in method.named_parameters() if not n.startswith("backbone.")]
    assert head and not any(id(p) in scales for p in head)
    opt = build_optimizer("adamw", method, 1e-3, 1e-4)
    assert sorted({round(g["lr"], 6) for g in opt.param_groups}) == [1e-4, 1e-3]
    byol = build_method(replace(cfg, method="co-byol", pred_hidden=32))
    b = byol.lr_scales()
    assert b[id(next(byol.q1.parameters()))] == 10.0
    assert b[id(next(p for p in byol.backbone.parameters() if p.requires_grad))] == 0.1
    assert build_method(replace(cfg, backbone_lr=1.0)).lr_scales() == {}
    scratch = replace(PretrainConfig(backbone_lr=0.1, proj_hidden=32, proj_dim=16,
                                     local_hidden=16))
    assert build_method(scratch).lr_scales() == {}
    with pytest.raises(ValueError, match="backbone_lr must be positive"):
        build_method(replace(cfg, backbone_lr=0.0))
