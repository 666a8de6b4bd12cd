"""End-to-end pretraining on generated images: runs, learns, resumes, refuses bad resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cossl_edge import rundir
from cossl_edge.contract import PreprocessContract
from cossl_edge.training.checkpoint import CheckpointError
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.loop import pretrain


def tiny_config(**kw) -> PretrainConfig:
    base = dict(arch="resnet10", width=0.25, proj_hidden=256, pred_hidden=256, local_hidden=128,
                batch_size=32, contract=PreprocessContract(size=32))
    base.update(kw)
    return PretrainConfig(**base)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()]


def test_short_run_writes_the_run_directory(shapes_dir, tmp_path):
    out = tmp_path / "run"
    summary = pretrain(tiny_config(epochs=1), shapes_dir, out, progress=False)
    assert summary["steps"] == 160 // 32
    for name in (rundir.CONFIG, rundir.METRICS, rundir.LAST_CHECKPOINT, rundir.ENCODER,
                 rundir.FINGERPRINT):
        assert (out / name).is_file(), name
    cfg = json.loads((out / rundir.CONFIG).read_text())
    assert cfg["contract"]["size"] == 32 and cfg["feature_grid"] == 4
    weights = torch.load(out / rundir.ENCODER, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    assert str(shapes_dir) not in (out / rundir.METRICS).read_text()
    # CO-SSL's two terms are logged beside the weighted total, and add up to it
    w_s = cfg["w_s_resolved"]
    epoch = [r for r in metrics(out) if r.get("loss") is not None][-1]
    assert {"loss_global", "loss_local"} <= set(epoch)
    assert epoch["loss"] == pytest.approx((1 - w_s) * epoch["loss_global"]
                                          + w_s * epoch["loss_local"], rel=0.05)
    assert cfg["cossl_edge_version"]


def test_monitor_beats_random_init_and_rank_stays_up(shapes_dir, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_config(epochs=12, monitor=str(shapes_dir), lr=2e-3), shapes_dir, out,
             progress=False)
    recs = metrics(out)
    init, last = recs[0], recs[-1]
    assert init["event"] == "init"
    assert last["knn_monitor"] > init["knn_monitor"] + 0.05, (init, last)
    assert last["effective_rank"] > 4.0


def test_resume_continues_and_refuses_changed_config(shapes_dir, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_config(epochs=1), shapes_dir, out, progress=False)
    with pytest.raises(ValueError, match="already exists"):
        pretrain(tiny_config(epochs=2), shapes_dir, out, progress=False)
    with pytest.raises(ValueError, match="changed configuration"):
        pretrain(tiny_config(epochs=2, width=0.5), shapes_dir, out, resume=True, progress=False)
    summary = pretrain(tiny_config(epochs=2), shapes_dir, out, resume=True, progress=False)
    assert summary["steps"] == 2 * (160 // 32)
    steps = [r["step"] for r in metrics(out)]
    assert steps == sorted(steps) and steps[-1] == 10


def test_corrupt_checkpoint_is_a_clear_error(shapes_dir, tmp_path):
    out = tmp_path / "run"
    pretrain(tiny_config(epochs=1), shapes_dir, out, progress=False)
    ckpt = out / rundir.LAST_CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        pretrain(tiny_config(epochs=2), shapes_dir, out, resume=True, progress=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cossl_edge", "pretrain", *args]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, "timed out waiting for a checkpoint"
        time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_resumes(shapes_dir, tmp_path, sig):
    out = tmp_path / "run"
    args = [str(shapes_dir), "--out", str(out), "--image-size", "32", "--arch", "resnet10",
            "--width", "0.25", "--batch-size", "32", "--epochs", "200", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    _wait_for(out / rundir.LAST_CHECKPOINT, proc)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 0, err
        assert "--resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    done = json.loads((out / rundir.CONFIG).read_text())
    assert done["method"] == "co-simclr"
    step_before = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["state"]
    resumed = subprocess.run(_cli(*args[:-3], "--epochs", str(step_before["epoch"] + 1),
                                  "--resume", "--quiet"),
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch" in resumed.stderr
    after = torch.load(out / rundir.LAST_CHECKPOINT, weights_only=True)["state"]
    assert after["global_step"] > step_before["global_step"]
    assert after["epoch"] == step_before["epoch"] + 1


def test_cli_options_reach_the_config(shapes_dir, tmp_path):
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "pretrain", str(shapes_dir), "--out", str(out), "--arch", "resnet10", "--width", "0.25",
        "--image-size", "16", "--batch-size", "16", "--max-steps", "1", "--quiet",
        "--method", "co-simclr", "--w-s", "0.4", "--temperature", "0.1", "--proj-dim", "32",
        "--local-grid", "1", "--min-scale", "0.5", "--resize", "pad", "--ema-base", "0.98"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / rundir.CONFIG).read_text())
    assert (cfg["method"], cfg["w_s"], cfg["temperature"], cfg["proj_dim"]) == \
        ("co-simclr", 0.4, 0.1, 32)
    assert (cfg["local_grid"], cfg["min_scale"], cfg["ema_base"]) == (1, 0.5, 0.98)
    assert cfg["contract"]["resize"] == "pad" and cfg["contract"]["size"] == 16


@pytest.mark.parametrize("side, size, stem, arch, grid", [
    (28, 32, "small", "resnet10", 4), (72, 64, "strided", "resnet10", 4),
    (150, 128, "standard", "resnet10", 4), (300, 224, None, "efficientnet-lite0", 7)])
def test_image_size_auto_follows_the_data(tmp_path, side, size, stem, arch, grid):
    """With no --image-size the recipe size nearest the images' short side is used, with the
    stem that keeps the first feature map at 32×32; images with detail (here noise at
    300 px) start from the ImageNet EfficientNet-Lite0 at 224 px (--arch auto), smooth
    ones (6×6 noise drawn large) train the ResNet-10; a resumed run keeps its size and
    backbone."""
    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):  # landscape images: the short side counts
        noise = rng.integers(0, 255, (side, side + 10), np.uint8)
        img = Image.fromarray(noise)
        if arch == "resnet10":  # little detail: a 6×6 image drawn at the size
            img = Image.fromarray(noise[:6, :6]).resize((side + 10, side),
                                                       Image.Resampling.BICUBIC)
        img.save(data / f"{i}.png")
    out = tmp_path / "run"
    common = ["pretrain", str(data), "--out", str(out), "--batch-size", "4", "--quiet",
              "--proj-dim", "16", "--proj-hidden", "32", "--local-hidden", "16"]
    result = CliRunner().invoke(app, [*common, "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((out / rundir.CONFIG).read_text())
    assert (cfg["contract"]["size"], cfg["arch"], cfg["feature_grid"]) == (size, arch, grid)
    assert "the images' detail is" in result.output
    assert stem is None or cfg["stem_resolved"] == stem
    assert (out / rundir.NORMAL_MODEL).is_file()  # the finished run's normal model
    assert cfg["hflip"] is None and cfg["hflip_resolved"] == 0.0  # one channel: no flip
    assert cfg["rotate"] is None and cfg["rotate_resolved"] == 15.0  # ... and ±15°
    result = CliRunner().invoke(app, [*common, "--max-steps", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / rundir.CONFIG).read_text())["contract"]["size"] == size


def test_hflip_option_is_checked(tmp_path):
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    result = CliRunner().invoke(app, ["pretrain", str(tmp_path), "--out", str(tmp_path / "r"),
                                      "--hflip", "often"])
    assert result.exit_code != 0
    assert "--hflip 'often'" in result.output and "between 0 and 1" in result.output
    result = CliRunner().invoke(app, ["pretrain", str(tmp_path), "--out", str(tmp_path / "r"),
                                      "--rotate", "400"])
    assert result.exit_code != 0
    assert "--rotate '400'" in result.output and "between 0 and 180" in result.output
