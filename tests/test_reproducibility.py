"""`--seed` reaches every random source: two runs with one seed and `--epochs` give the same
weights bit for bit; views differ between workers, ranks, epochs and seeds, and only there."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import ct_series
from support.folders import write_shapes

from cossl_edge import rundir
from cossl_edge.contract import PreprocessContract
from cossl_edge.training.checkpoint import load_checkpoint
from cossl_edge.training.dataset import TwoViewDataset, epoch_loader, stream_seed
from cossl_edge.training.views import TwoViews

# --no-bf16: --bf16 auto times the machine at the start, and two runs may choose differently
TINY = ["--arch", "resnet10", "--width", "0.25", "--image-size", "32", "--proj-dim", "16",
        "--proj-hidden", "32", "--local-hidden", "16", "--quiet", "--no-bf16"]


def _pretrain(data: Path, out: Path, seed: int, *extra: str) -> dict[str, torch.Tensor]:
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    result = CliRunner().invoke(app, ["pretrain", str(data), "--out", str(out), "--seed",
                                      str(seed), "--epochs", "1", *TINY, *extra])
    assert result.exit_code == 0, result.output
    return load_checkpoint(out / rundir.LAST_CHECKPOINT)["model"]


def _identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_with_workers_and_the_local_findings_views(tmp_path):
    """Camera views with everything random switched on — ±15° rotation, patch views, texture
    scrambling, CutPaste negatives (--findings local) — drawn by two DataLoader workers."""
    data = write_shapes(tmp_path / "shapes", per_class=4)  # 16 images: 2 steps, one a worker
    extra = ("--findings", "local", "--view-size", "24", "--batch-size", "8", "--workers", "2")
    first = _pretrain(data, tmp_path / "a", 7, *extra)
    again = _pretrain(data, tmp_path / "b", 7, *extra)
    other = _pretrain(data, tmp_path / "c", 8, *extra)
    assert _identical(first, again)
    assert not _identical(first, other)


def test_same_seed_same_weights_on_dicom_with_the_medical_views(tmp_path):
    """MONAI's intensity transforms (the medical preset, chosen for DICOM), no workers."""
    ct_series(tmp_path / "ct", n=8, rows=32, cols=32)
    extra = ("--batch-size", "4")
    first = _pretrain(tmp_path / "ct", tmp_path / "a", 3, *extra)
    again = _pretrain(tmp_path / "ct", tmp_path / "b", 3, *extra)
    other = _pretrain(tmp_path / "ct", tmp_path / "c", 4, *extra)
    assert _identical(first, again)
    assert not _identical(first, other)


@pytest.mark.parametrize("preset", ["camera", "medical"])
def test_views_depend_on_their_seed_only(preset):
    """Reseeded, the views repeat whatever the global generators do in between: no transform
    draws from python's, numpy's or torch's global state."""
    c = PreprocessContract(channels=1, size=32)
    views = TwoViews(preset, c, min_scale=0.3, rotate=15.0, view_size=24,
                     texture=0.8 if preset == "camera" else 0.0, cutpaste=True)
    img = np.random.default_rng(0).random((32, 32, 1)).astype(np.float32)

    def draw(seed: int, disturb: bool) -> list[np.ndarray]:
        views.reseed(seed)
        out = []
        for i in range(6):
            if disturb:
                random.seed(i)
                np.random.seed(i)
                torch.manual_seed(i)
                np.random.random(), random.random(), torch.rand(1)
            out += views(img)
        return out

    base = draw(5, disturb=False)
    assert all(np.array_equal(x, y) for x, y in zip(base, draw(5, disturb=True), strict=True))
    assert not any(np.array_equal(x, y) for x, y in zip(base, draw(6, disturb=False),
                                                        strict=True))


def test_each_worker_rank_and_epoch_draws_its_own_views():
    """One image four times, one item per batch, two workers (worker 0 loads batches 0 and 2,
    worker 1 batches 1 and 3): workers forked from one main process would draw the same views
    unless each is reseeded, and every epoch would repeat the first."""
    c = PreprocessContract(channels=1, size=16)
    image = np.random.default_rng(0).random((1, 16, 16, 1)).astype(np.float16)
    dataset = TwoViewDataset(np.repeat(image, 4, axis=0), TwoViews("camera", c, min_scale=0.3))

    def draw(workers: int, seed: int = 0, rank: int = 0, epoch: int = 0) -> list[torch.Tensor]:
        loader = epoch_loader(dataset, [[0], [1], [2], [3]], workers, seed, rank, epoch)
        return [views[0][0] for views in loader]  # view a of each batch's only image

    first = draw(2)
    assert all(torch.equal(x, y) for x, y in zip(first, draw(2), strict=True))
    assert not torch.equal(first[0], first[1])  # the workers' first draws
    for other in (draw(2, epoch=1), draw(2, rank=1), draw(2, seed=1)):
        assert not any(torch.equal(x, y) for x, y in zip(first, other, strict=True))
    main = draw(0)  # no workers: the main process's stream, also per epoch
    assert all(torch.equal(x, y) for x, y in zip(main, draw(0), strict=True))
    assert not torch.equal(main[0], draw(0, epoch=1)[0])


def test_stream_seeds_are_distinct_and_in_range():
    seeds = {stream_seed(s, kind, rank, epoch, worker) for s in (0, 1, -1) for kind in (0, 1)
             for rank in range(3) for epoch in range(3) for worker in range(3)}
    assert len(seeds) == 3 * 2 * 3 * 3 * 3
    assert all(0 <= s < 2**63 for s in seeds)
    assert stream_seed(0, 1, 1) != stream_seed(1, 1, 0)  # unlike seed + rank
