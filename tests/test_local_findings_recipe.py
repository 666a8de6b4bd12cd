"""The recipe for small local findings: native-resolution patch views, texture scrambling,
GeM pooling, and the scans of the local-findings benchmark."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cossl_edge.contract import PreprocessContract
from cossl_edge.training.backbones import ResNetEncoder, global_pool
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.views import TwoViews, cut_paste, patch_size, scramble_texture

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from clinical_examples.finding_scans import finding_scan, read_boxes, write_dataset  # noqa: E402


def test_gem_pooling_follows_a_single_strong_position():
    fmap = torch.zeros(2, 3, 8, 8)
    fmap[0, 0, 2, 5] = 8.0  # one position of 64 fires
    mean, gem = global_pool(fmap, "mean"), global_pool(fmap, "gem")
    assert mean[0, 0] == pytest.approx(8.0 / 64)
    assert gem[0, 0] == pytest.approx(8.0 / 64 ** (1 / 3), rel=1e-4)  # 2.0, not 0.125
    assert torch.allclose(global_pool(torch.full((1, 2, 4, 4), 0.7), "gem"),
                          torch.full((1, 2), 0.7))  # a flat map pools to itself
    enc = ResNetEncoder("resnet10", 0.25, 1, "strided", pool="gem")
    x = torch.randn(2, 1, 64, 64)
    assert torch.allclose(enc(x), global_pool(enc.forward_features(x), "gem"))
    with pytest.raises(ValueError, match="pool must be one of"):
        ResNetEncoder("resnet10", 0.25, 1, "small", pool="median")


def test_patch_views_are_native_resolution_crops_of_one_patch():
    c = PreprocessContract(channels=1, size=96, mean=(0.5,), std=(0.25,))
    views = TwoViews("camera", c, min_scale=0.9, hflip=0.0, solarize=0.0, blur=0.0,
                     view_size=32)
    assert patch_size(32, 96) == 40 and patch_size(64, 64) == 64
    img = np.zeros((96, 96, 1), np.float32)
    img[:, 48:] = 1.0  # left half black, right half white
    np.random.seed(0)
    pairs = [views(img) for _ in range(60)]
    assert all(a.shape == b.shape == (1, 32, 32) for a, b in pairs)
    # both views come from one 40-px patch: they never see opposite halves of the image
    for a, b in pairs:
        ma, mb = a.mean(), b.mean()
        assert not (ma < -1.9 and mb > 1.9) and not (ma > 1.9 and mb < -1.9)
    # and patches come from everywhere: all-black and all-white views both occur
    means = np.asarray([a.mean() for a, _ in pairs])
    assert (means < -1.5).any() and (means > 1.5).any()


def test_view_size_is_checked_and_sets_the_stem():
    cfg = PretrainConfig(contract=PreprocessContract(size=256), view_size=64)
    assert cfg.resolved_view_size() == 64 and cfg.resolved_stem() == "strided"
    assert PretrainConfig(contract=PreprocessContract(size=256)).resolved_stem() == "standard"
    with pytest.raises(ValueError, match="view_size must be between"):
        PretrainConfig(contract=PreprocessContract(size=64), view_size=128).resolved_view_size()


def test_scramble_texture_keeps_a_small_dark_blob_and_changes_the_shading():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64].astype(np.float32)
    shading = 0.5 + 0.3 * np.sin(xx / 20.0) * np.cos(yy / 25.0)  # large-scale layout
    img = shading.copy()
    img[30:34, 40:44] -= 0.4  # a 4×4 dark blob
    out = scramble_texture(img[:, :, None], rng)[:, :, 0]
    assert out.shape == (64, 64)
    # the blob is still the darkest thing relative to its surroundings
    local = out - np.median(out)
    r, c = np.unravel_index(np.argmin(local), local.shape)
    assert 29 <= r <= 34 and 39 <= c <= 44
    # the large-scale shading is no longer the image's own
    low_before = shading - shading.mean()
    smooth = out - out.mean()
    corr = np.corrcoef(low_before.ravel(), smooth.ravel())[0, 1]
    assert corr < 0.6


def test_finding_scans_write_labelled_dicom_with_boxes(tmp_path):
    areas = []
    for seed in range(20):
        img, boxes, mask = finding_scan(np.random.default_rng(seed), grade=3, with_mask=True)
        assert len(boxes) == 2 and mask.any()
        rows, cols = np.nonzero(mask)  # every finding pixel lies in a box
        inside = np.zeros_like(mask)
        for r0, c0, r1, c1 in boxes:
            inside[max(0, r0 - 2):r1 + 2, max(0, c0 - 2):c1 + 2] = True
        assert inside[rows, cols].all()
        areas.append(mask.mean())
    assert max(areas) <= 0.02  # "at most 2% of the area"
    normal, none = finding_scan(np.random.default_rng(3), grade=0)
    assert none == [] and 0.0 <= normal.min() and normal.max() <= 1.0
    write_dataset(tmp_path, unlabeled=3, labeled=4, seed=1, size=64)
    assert len(list((tmp_path / "unlabeled").glob("*.dcm"))) == 3
    table = read_boxes(tmp_path)
    assert sorted(v[0] for v in table.values()) == ["defective", "defective", "normal",
                                                      "normal"]
    assert all((lab == "normal") == (boxes == []) for lab, _, boxes in table.values())


def test_findings_local_sets_the_recipe_and_explicit_options_win(tmp_path):
    """`--findings local`: up to 256 px from the data, 64-px patch views, GeM, texture
    scrambling; an option given on the command line keeps its value; the run exports."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from cossl_edge import rundir
    from cossl_edge.cli import app

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (300, 320), np.uint8)).save(data / f"{i}.png")
    common = ["pretrain", str(data), "--batch-size", "4", "--quiet", "--max-steps", "1",
              "--proj-dim", "16", "--proj-hidden", "32", "--local-hidden", "16",
              "--findings", "local"]
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [*common, "--out", str(out)])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / rundir.CONFIG).read_text())
    assert cfg["findings"] == "local" and cfg["contract"]["size"] == 256
    assert (cfg["view_size"], cfg["pool"], cfg["texture"], cfg["blur"]) == (64, "gem", 0.8, 0.0)
    assert (cfg["jitter"], cfg["cutpaste"], cfg["embed_pool"]) == (0.2, True, "max")
    assert (cfg["preset_resolved"], cfg["stem_resolved"]) == ("camera", "strided")
    assert (cfg["feature_grid"], cfg["inference_grid"]) == (4, 16)
    out2 = tmp_path / "run2"
    result = CliRunner().invoke(app, [*common, "--out", str(out2), "--view-size", "32",
                                      "--blur", "1.0", "--image-size", "128"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out2 / rundir.CONFIG).read_text())
    assert (cfg["view_size"], cfg["blur"], cfg["contract"]["size"]) == (32, 1.0, 128)
    assert cfg["stem_resolved"] == "small"
    small = tmp_path / "small"
    small.mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (28, 28), np.uint8)).save(small / f"{i}.png")
    out3 = tmp_path / "run3"
    result = CliRunner().invoke(app, [*common[:1], str(small), *common[2:], "--out", str(out3)])
    assert result.exit_code == 0, result.output  # 32-px images: the views are whole images
    cfg = json.loads((out3 / rundir.CONFIG).read_text())
    assert cfg["contract"]["size"] == 32 and cfg["view_size_resolved"] == 32
    # the exported embedding is the maximum of the map (trained with GeM on 4×4 maps)
    from cossl_edge.evaluation.features import OnnxFeatures
    from cossl_edge.export.pipeline import export_run
    from cossl_edge.runtime.pooling import pooled

    export_run(out, local_map=True, int8=False, measure_latency=False)
    feats = OnnxFeatures(out / "encoder.onnx")
    assert feats.pool == "max"
    prepared = rng.random((3, 256, 256, 1)).astype(np.float32)
    x = feats.contract.normalize(prepared)
    emb, maps = feats.encoder.session.run(["embedding", "local_map"], {"image": x})
    assert maps.shape[2:] == (16, 16)
    np.testing.assert_allclose(emb, pooled(maps, "max"), rtol=1e-4, atol=1e-5)


def test_cut_paste_changes_one_small_region():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64, 1)).astype(np.float32)
    for _ in range(20):
        out = cut_paste(img, rng)
        changed = np.abs(out - img)[..., 0] > 1e-6
        rows, cols = np.nonzero(changed)
        assert changed.any()
        # one rectangle: at most 16% of the side square, or a scar ≤ 3 × 45% of the side
        assert (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1) <= 64 * 64 * 0.03


def test_hard_negatives_enter_nt_xent_and_views():
    from cossl_edge.training.losses import nt_xent_loss

    torch.manual_seed(0)
    z_a, z_b = torch.randn(4, 8), torch.randn(4, 8)
    base = nt_xent_loss(z_a, z_b, 0.2)
    far = nt_xent_loss(z_a, z_b, 0.2, extra_negatives=-torch.cat([z_a, z_b]))
    near = nt_xent_loss(z_a, z_b, 0.2, extra_negatives=z_b.clone())
    assert near > far  # a negative as close as the positive costs more than a far one
    assert far > base  # every extra negative adds to the partition function
    c = PreprocessContract(channels=1, size=64)
    np.random.seed(0)
    views = TwoViews("camera", c, min_scale=0.5, hflip=0.0, solarize=0.0, blur=0.0, rotate=0.0,
                     view_size=32, cutpaste=True)
    a, b, neg = views(np.random.default_rng(1).random((64, 64, 1)).astype(np.float32))
    assert a.shape == b.shape == neg.shape == (1, 32, 32)
    diff = np.abs(neg - b) > 1e-5
    assert 0 < diff.mean() < 0.1  # the negative is view b with one small piece moved


def test_cutpaste_needs_a_contrastive_method():
    from cossl_edge.training.methods import build_method

    cfg = PretrainConfig(method="co-byol", cutpaste=True,
                         contract=PreprocessContract(size=32))
    with pytest.raises(ValueError, match="--cutpaste adds negatives"):
        build_method(cfg)
    local = PretrainConfig(method="byol", findings="local").with_findings_recipe()
    assert local.cutpaste is False and local.view_size == 64
