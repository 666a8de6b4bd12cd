"""3D CO-SSL pretraining (``pretrain --volumes``): the 3D views, the local term on a 3D
map, and the command on a folder of tiny phantom CT series (with a bad one)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cossl_edge import rundir
from cossl_edge.training.backbones3d import ResNet3DEncoder
from cossl_edge.training.heads import MLPHead, local_vectors
from cossl_edge.training.losses import co_byol_loss, co_local_loss
from cossl_edge.training.pooling import global_pool
from cossl_edge.training.volume_views import (
    VolumeViews,
    VolumeViewSettings,
    crop_box,
    normalize_cubes,
    whole_cube,
)


@pytest.mark.parametrize("shape", [(11, 90, 90), (40, 40, 40), (3, 64, 50)])
@pytest.mark.parametrize("min_scale", [0.2, 0.5, 0.9])
def test_crops_hold_the_minimum_scale_and_fit(shape, min_scale):
    rng = np.random.default_rng(0)
    fractions = []
    for _ in range(200):
        start, size = crop_box(shape, min_scale, rng)
        assert all(0 <= s and s + n <= dim for s, n, dim in zip(start, size, shape, strict=True))
        fractions.append(np.prod(size) / np.prod(shape))
    assert min(fractions) >= min_scale - 1e-9
    assert max(fractions) <= 1.0
    if shape[0] > 3 and min_scale < 0.9:
        assert np.std(fractions) > 0.02  # crops, not the whole volume every time


def test_views_shapes_ranges_and_reseed():
    rng = np.random.default_rng(1)
    volumes = [rng.random((d, 30, 26)).astype(np.float16) for d in (9, 12, 20)]
    s = VolumeViewSettings(size=16, min_scale=0.3, flip=0.5, rotate=15, mean=0.5, std=0.25)
    views = VolumeViews(s, seed=3)
    a, b = views.batch(volumes, np.array([0, 2, 1, 1]))
    assert a.shape == b.shape == (4, 1, 16, 16, 16) and a.dtype == torch.float32
    lo, hi = (0 - s.mean) / s.std, (1 - s.mean) / s.std
    assert a.min() >= lo - 1e-6 and a.max() <= hi + 1e-6 and b.min() >= lo - 1e-6
    assert not torch.equal(a[2], a[3])  # two draws of one volume differ
    views.reseed(7)
    again = views.batch(volumes, np.array([0, 1]))
    views.reseed(7)
    assert torch.equal(again[0], views.batch(volumes, np.array([0, 1]))[0])


def test_whole_cube_and_normalize():
    vol = np.linspace(0, 1, 8 * 20 * 24, dtype=np.float32).reshape(8, 20, 24)
    cube = whole_cube(vol, 16)
    assert cube.shape == (16, 16, 16) and 0 <= cube.min() and cube.max() <= 1
    x = normalize_cubes(cube[None], 0.5, 0.25)
    assert x.shape == (1, 1, 16, 16, 16) and np.isclose(x.min(), (cube.min() - 0.5) / 0.25)


def test_encoder_3d_map_and_pooling():
    enc = ResNet3DEncoder("resnet10", width=0.125, stem="small")
    x = torch.randn(2, 1, 16, 16, 16)
    fmap = enc.forward_features(x)
    assert fmap.shape == (2, enc.out_channels, 2, 2, 2)
    assert enc.feature_grid(16) == 2
    assert torch.allclose(enc(x), fmap.mean(dim=(2, 3, 4)))
    assert torch.allclose(global_pool(fmap, "max"), fmap.flatten(2).amax(-1))


def test_local_term_on_a_3d_map_is_the_2d_term_on_its_flattened_positions():
    torch.manual_seed(0)
    fmap3 = torch.randn(3, 16, 2, 3, 4)  # B×C×d×h×w
    fmap2 = fmap3.reshape(3, 16, 2 * 3, 4)  # the same positions as a 2D map
    head = MLPHead(16, 32, 8).eval()
    target = torch.randn(3, 8)
    l3, l2 = local_vectors(fmap3), local_vectors(fmap2)
    assert l3.shape == (3, 24, 16) and torch.equal(l3, l2)
    assert torch.equal(co_local_loss(head(l3), target), co_local_loss(head(l2), target))
    p, z = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.equal(co_byol_loss(p, z, head(l3), target, 0.3),
                       co_byol_loss(p, z, head(l2), target, 0.3))
    assert local_vectors(fmap3, grid=1).shape == (3, 1, 16)  # adaptive pooling in 3D


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    """Six tiny phantom CT series and one cut to three slices (too thin at 4 mm)."""
    from clinical_examples.ct_volumes import write_series_set

    root = tmp_path_factory.mktemp("ct3d")
    write_series_set(root, series=7, seed=0, size=48, length_mm=40)
    thin = sorted(p for p in root.rglob("*") if p.is_dir() and any(
        f.is_file() for f in p.iterdir()))[-1]
    files = sorted(f for f in thin.iterdir() if f.is_file())
    for f in files[3:]:
        f.unlink()
    return root


def _run(args):
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    return CliRunner().invoke(app, args)


def test_pretrain_volumes_writes_a_3d_run_reports_the_bad_series_and_resumes(series_dir,
                                                                             tmp_path):
    out = tmp_path / "run"
    common = ["pretrain", str(series_dir), "--volumes", "--spacing", "4", "--volume-size",
              "16", "--batch-size", "3", "--out", str(out), "--quiet", "--no-bf16",
              "--proj-hidden", "64", "--pred-hidden", "64", "--local-hidden", "32",
              "--proj-dim", "32"]
    result = _run([*common, "--max-steps", "2", "--method", "co-byol"])
    assert result.exit_code == 0, result.output
    assert "skipped series" in result.output and "too few slices" in result.output
    assert "volumes: 6 at 4 mm" in result.output
    cfg = json.loads((out / rundir.CONFIG).read_text())
    assert cfg["volumes"] is True and cfg["dim"] == 3 and cfg["spacing"] == 4.0
    assert cfg["num_images"] == 6 and cfg["contract"]["size"] == 16
    for name in (rundir.METRICS, rundir.ENCODER, rundir.LAST_CHECKPOINT, rundir.CALIBRATION):
        assert (out / name).is_file(), name
    assert np.load(out / rundir.CALIBRATION).shape == (6, 16, 16, 16)
    state = torch.load(out / rundir.ENCODER, weights_only=True)
    assert any(v.dim() == 5 for v in state.values())  # 3D convolutions
    before = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["state"]
    assert before["global_step"] == 2
    resumed = _run([*common, "--max-steps", "4", "--method", "co-byol", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    after = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["state"]
    assert after["global_step"] == 4
    records = [json.loads(line) for line in (out / rundir.METRICS).read_text().splitlines()]
    assert any(r.get("loss_local") is not None for r in records)
    exported = _run(["export", str(out), "--no-latency", "--no-int8"])  # tests/test_export_3d
    assert exported.exit_code == 0, exported.output
    assert (out / "encoder.onnx").is_file() and "3D encoder" in exported.output
