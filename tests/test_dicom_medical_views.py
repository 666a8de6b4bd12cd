"""The `medical` view preset: crops, flips and MONAI intensity transforms, no colour jitter."""

from __future__ import annotations

import numpy as np
import pytest

from cossl_edge.contract import PreprocessContract
from cossl_edge.training.views import TwoViews


def _unnormalise(view: np.ndarray, c: PreprocessContract) -> np.ndarray:
    return view * np.asarray(c.std)[:, None, None] + np.asarray(c.mean)[:, None, None]


def test_medical_views_shapes_range_and_randomness():
    c = PreprocessContract(channels=1, size=24, mean=(0.5,), std=(0.25,))
    views = TwoViews("medical", c, min_scale=0.3)
    yy, xx = np.mgrid[:24, :24]
    img = ((xx + yy) / 46.0).astype(np.float32)[:, :, None]  # a ramp: crops and flips show
    np.random.seed(0)
    pairs = [views(img) for _ in range(20)]
    for a, b in pairs:
        assert a.shape == b.shape == (1, 24, 24) and a.dtype == np.float32
        for v in (a, b):
            raw = _unnormalise(v, c)
            assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    assert all(not np.allclose(a, b) for a, b in pairs)  # two different views of one image
    assert not np.allclose(pairs[0][0], pairs[1][0])  # and different on every call


@pytest.mark.filterwarnings("ignore:The image's intensity is a single value")
def test_medical_intensity_transforms_act_on_a_flat_image():
    c = PreprocessContract(channels=1, size=16)
    views = TwoViews("medical", c)
    flat = np.full((16, 16, 1), 0.5, np.float32)
    np.random.seed(1)
    raw = [_unnormalise(v, c) for _ in range(40) for v in views(flat)]
    stds = [float(r.std()) for r in raw]
    # crops and flips leave a flat image flat: any texture comes from noise or bias field
    assert sum(s > 0.01 for s in stds) >= 10
    # no brightness/colour jitter: most views keep the mean (gamma leaves a flat image as
    # it is, noise has mean 0; only the bias field moves it). The camera preset keeps ~25%.
    means = np.asarray([float(r.mean()) for r in raw])
    assert np.isclose(means, 0.5, atol=0.02).sum() >= 40


def test_medical_views_on_rgb_ultrasound():
    c = PreprocessContract(channels=3, size=16, mean=(0.5,), std=(0.25,))
    rng = np.random.default_rng(0)
    a, b = TwoViews("medical", c)(rng.random((16, 16, 3)).astype(np.float32))
    assert a.shape == b.shape == (3, 16, 16) and np.isfinite(a).all()
