"""The data path's speed-ups keep what they replace: the views' rotation (``views.rotate``,
cv2 directly) gives albumentations.Affine's pixels for every angle, the views built with it
are distributed as those built with Affine; the effective-rank diagnostics, now at most every
``DIAGNOSE_SECONDS``, still end every run and follow every epoch with --monitor."""

from __future__ import annotations

import numpy as np
import pytest
from view_stats import orientation

from cossl_edge.contract import PreprocessContract
from cossl_edge.training.views import camera_views, rotate


@pytest.mark.parametrize("shape", [(32, 32, 1), (64, 48, 3), (24, 24)])
@pytest.mark.parametrize("reflect", [False, True])
def test_rotate_equals_albumentations_affine(shape, reflect):
    import albumentations as A

    img = np.random.default_rng(0).random(shape).astype(np.float32)
    for angle in (-15.0, -7.3, 0.0, 0.4, 11.9, 45.0, 180.0):
        affine = A.Affine(rotate=(angle, angle), border_mode=4 if reflect else 0, fill=0, p=1.0)
        want = A.Compose([affine])(image=img)["image"]
        got = rotate(img, angle, reflect)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_camera_views_are_distributed_as_with_affine():
    """The default one-channel camera view 1 (±15°, crop, jitter, blur) against the same
    pipeline with Affine's rotation first in the Compose, as before, on a long bar: the
    bar's orientation (which the rotation sets) and a view's brightness and spread have the
    same distributions (two-sample Kolmogorov–Smirnov over 1,000 views each). The test
    tells ±15° from ±10°."""
    import albumentations as A
    from scipy.stats import ks_2samp

    contract = PreprocessContract(size=32)
    img = np.zeros((32, 32, 1), np.float32)
    img[2:30, 14:18] = 1.0  # a long vertical bar: its angle is the rotation's
    new, _ = camera_views(contract, 0.2, hflip=0.0, rotate=15.0)
    new.reseed(1)
    old_pipe, _ = camera_views(contract, 0.2, hflip=0.0, rotate=0.0)
    transforms = list(old_pipe.albumentations[0].transforms)
    old = A.Compose([A.Affine(rotate=(-OLD_DEGREES, OLD_DEGREES), border_mode=0, fill=0,
                              p=1.0), *transforms])
    old.set_random_seed(2)
    n = 1000
    a = np.stack([new(img)[..., 0] for _ in range(n)])
    b = np.stack([old(image=img)["image"][..., 0] for _ in range(n)])
    for stat in (orientation, np.mean, np.std):
        p = ks_2samp([stat(v) for v in a], [stat(v) for v in b]).pvalue
        assert p > 0.001, (stat, p)


OLD_DEGREES = 15.0


def test_diagnostics_at_most_every_few_seconds_and_after_the_last_epoch(shapes_dir, tmp_path,
                                                                        monkeypatch):
    import json

    from cossl_edge import rundir
    from cossl_edge.training import loop, monitoring
    from cossl_edge.training.config import PretrainConfig

    monkeypatch.setattr(monitoring, "DIAGNOSE_SECONDS", 3600.0)
    cfg = PretrainConfig(arch="resnet10", width=0.25, proj_hidden=32, pred_hidden=32,
                         local_hidden=16, proj_dim=16, batch_size=64, epochs=3, bf16=False,
                         contract=PreprocessContract(size=16))
    loop.pretrain(cfg, shapes_dir, tmp_path / "run", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "run" / rundir.METRICS).read_text().splitlines()]
    assert ["effective_rank" in r for r in recs] == [True, False, False, True]  # init, 3 epochs
    monkeypatch.setattr(monitoring, "DIAGNOSE_SECONDS", 0.0)  # every epoch
    monkeypatch.setattr(monitoring, "DIAGNOSE_SHARE", float("inf"))
    loop.pretrain(cfg, shapes_dir, tmp_path / "every", progress=False)
    recs = [json.loads(x) for x in (tmp_path / "every" / rundir.METRICS).read_text().splitlines()]
    assert all("effective_rank" in r for r in recs) and len(recs) == 4
