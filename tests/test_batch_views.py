"""The batched camera views (``training/batch_views.py``) are the per-image albumentations
views: each step gives albumentations' (or ``views.rotate``'s) pixels for the same
parameters, the random draws follow the same distributions, and whole views drawn batch by
batch are distributed as those drawn image by image (two-sample Kolmogorov–Smirnov)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.training import batch_views as bv  # noqa: E402
from cossl_edge.training.views import TwoViews, rotate  # noqa: E402


def _nchw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


def _params(n: int, colour_image: bool, seed: int = 0) -> bv.ViewParams:
    return bv.draw(np.random.default_rng(seed), n, 32, 32, min_scale=0.2, hflip=0.5,
                   rotate=15.0, jitter=0.4, colour_image=colour_image, blur=1.0, solarize=0.5)


@pytest.mark.parametrize("shape", [(32, 32, 1), (24, 40, 3)])
@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_gives_views_rotate_pixels(shape, reflect):
    img = np.random.default_rng(0).random((6,) + shape).astype(np.float32)
    angles = np.array([-15.0, -7.3, 0.0, 0.4, 11.9, 180.0])
    got = _nhwc(bv.rotate_batch(_nchw(img), angles, reflect))
    for i, angle in enumerate(angles):
        want = rotate(img[i], float(angle), reflect).reshape(shape)
        np.testing.assert_allclose(got[i], want, atol=2e-5)


def test_crop_resize_flip_gives_opencv_resize_of_the_box():
    import cv2

    img = np.random.default_rng(1).random((5, 32, 32, 1)).astype(np.float32)
    # the whole image, small boxes (enlarged), a box at the corner, a larger one (reduced)
    boxes = np.array([[0, 0, 32, 32], [3, 5, 10, 13], [10, 0, 22, 20], [29, 29, 3, 3],
                      [0, 0, 30, 31]])
    flips = np.array([False, True, False, True, True])
    for size in (32, 24):
        got = _nhwc(bv.crop_resize_flip(_nchw(img), boxes, flips, size))
        for i, (top, left, h, w) in enumerate(boxes):
            want = cv2.resize(img[i, top:top + h, left:left + w], (size, size),
                              interpolation=cv2.INTER_LINEAR)
            if flips[i]:
                want = want[:, ::-1]
            np.testing.assert_allclose(got[i, :, :, 0], want, atol=1e-5)


@pytest.mark.parametrize("shape,min_scale", [((32, 32), 0.2), ((64, 48), 0.08),
                                             ((10, 40), 0.9)])
def test_crop_boxes_follow_random_resized_crop(shape, min_scale):
    """Area, aspect ratio and position of the boxes against albumentations' own draws
    (its ``get_params_dependent_on_data``), 2,000 each; the 10×40 image at scale ≥ 0.9
    never fits the ratios and falls back to albumentations' centre crop."""
    import albumentations as A
    from scipy.stats import ks_2samp

    h, w = shape
    n = 2000
    t = A.RandomResizedCrop(size=(16, 16), scale=(min_scale, 1.0), p=1.0)
    t.set_random_seed(3)
    theirs = []
    for _ in range(n):
        x0, y0, x1, y1 = t.get_params_dependent_on_data({"shape": shape}, {})["crop_coords"]
        theirs.append((y0, x0, y1 - y0, x1 - x0))
    theirs = np.array(theirs)
    ours = bv.crop_boxes(np.random.default_rng(4), n, h, w, min_scale)
    assert ours.dtype == np.int64 and ours.shape == (n, 4)
    assert (ours[:, 2] >= 1).all() and (ours[:, 0] + ours[:, 2] <= h).all()
    assert (ours[:, 3] >= 1).all() and (ours[:, 1] + ours[:, 3] <= w).all()
    if shape == (10, 40):
        assert (ours == theirs[0]).all() and (theirs == theirs[0]).all()
        return
    stats = {"area": lambda b: b[:, 2] * b[:, 3], "ratio": lambda b: b[:, 3] / b[:, 2],
             "top": lambda b: b[:, 0], "left": lambda b: b[:, 1]}
    for name, stat in stats.items():
        p = ks_2samp(stat(ours), stat(theirs)).pvalue
        assert p > 0.001, (name, p)


def test_brightness_contrast_gives_albumentations_pixels():
    import albumentations as A

    img = np.random.default_rng(2).random((8, 32, 32, 1)).astype(np.float32)
    p = _params(8, colour_image=False)
    p.colour[:] = [True, False] * 4
    got = _nhwc(bv.colour(_nchw(img), p))
    t = A.RandomBrightnessContrast(p=1.0)
    for i in range(8):
        want = (t.apply(img[i], alpha=p.contrast[i], beta=p.brightness[i]) if p.colour[i]
                else img[i])
        np.testing.assert_allclose(got[i], want.reshape(img[i].shape), atol=1e-6)


def test_colour_jitter_and_grayscale_give_albumentations_pixels():
    """Colour images: ColorJitter's four steps in each image's own order, then ToGray, for
    the same factors (hue goes through HSV: float round-off only)."""
    import albumentations as A

    img = np.random.default_rng(3).random((16, 20, 20, 3)).astype(np.float32)
    p = bv.draw(np.random.default_rng(5), 16, 20, 20, min_scale=0.2, hflip=0.5, rotate=0.0,
                jitter=0.4, colour_image=True, blur=1.0, solarize=0.2)
    p.colour[:] = np.arange(16) % 4 != 0
    p.gray[:] = np.arange(16) % 5 == 1
    assert len({tuple(o) for o in p.order}) > 4  # the orders differ between images
    got = _nhwc(bv.colour(_nchw(img), p))
    jitter, gray = A.ColorJitter(p=1.0), A.ToGray(p=1.0)
    for i in range(16):
        want = img[i]
        if p.colour[i]:
            want = jitter.apply(want, brightness=p.brightness[i], contrast=p.contrast[i],
                                saturation=p.saturation[i], hue=p.hue[i],
                                order=list(p.order[i]))
        if p.gray[i]:
            want = gray.apply(want)
        np.testing.assert_allclose(got[i], want, atol=2e-5)


def test_blur_and_solarize_give_albumentations_pixels():
    from albumentations.augmentations.blur.functional import create_gaussian_kernel_1d
    from albumentations.augmentations.pixel import functional as fp

    img = np.random.default_rng(4).random((6, 9, 9, 2)).astype(np.float32)
    sigma = np.array([0.1, 0.5, 1.0, 1.5, 2.0, 0.7])
    applied = np.array([True, True, False, True, True, True])
    for k in (3, 7, 11):  # 11 > the side: the reflected borders by index
        got = _nhwc(bv.blur(_nchw(img), sigma, applied, k))
        for i in range(6):
            want = (fp.separable_convolve(img[i], create_gaussian_kernel_1d(sigma[i], k))
                    if applied[i] else img[i])
            np.testing.assert_allclose(got[i], want, atol=1e-6)
    got = _nhwc(bv.solarize(_nchw(img), applied))
    for i in range(6):
        np.testing.assert_array_equal(got[i], fp.solarize(img[i], 0.5) if applied[i]
                                      else img[i])


def test_draws_have_the_pipelines_ranges_and_rates():
    n = 20000
    p = bv.draw(np.random.default_rng(6), n, 32, 32, min_scale=0.2, hflip=0.5, rotate=15.0,
                jitter=0.4, colour_image=True, blur=0.1, solarize=0.2)
    for rate, want in ((p.flip, 0.5), (p.colour, 0.8), (p.gray, 0.2), (p.blur, 0.1),
                       (p.solarize, 0.2)):
        assert abs(rate.mean() - want) < 4 * np.sqrt(want * (1 - want) / n)
    for values, lo, hi in ((p.angle, -15, 15), (p.brightness, 0.6, 1.4),
                           (p.contrast, 0.6, 1.4), (p.saturation, 0.8, 1.2),
                           (p.hue, -0.1, 0.1), (p.sigma, 0.1, 2.0)):
        assert lo <= values.min() < lo + 0.01 * (hi - lo) and hi - 0.01 * (hi - lo) < \
            values.max() <= hi
        assert abs(values.mean() - (lo + hi) / 2) < 0.02 * (hi - lo)
    assert all(sorted(o) == [0, 1, 2, 3] for o in p.order[:100])
    firsts = np.bincount(p.order[:, 0], minlength=4) / n
    assert np.all(np.abs(firsts - 0.25) < 0.02)
    gray = bv.draw(np.random.default_rng(7), n, 32, 32, min_scale=0.2, hflip=0.0,
                   rotate=0.0, jitter=0.4, colour_image=False, blur=1.0, solarize=0.0)
    assert not gray.flip.any() and not gray.gray.any() and not gray.solarize.any()
    assert gray.blur.all() and (gray.angle == 0).all()
    assert -0.4 <= gray.brightness.min() and gray.brightness.max() <= 0.4
    assert 0.6 <= gray.contrast.min() and gray.contrast.max() <= 1.4


def _orientation(v: np.ndarray) -> float:
    w = np.clip(v - np.median(v), 0.0, None)
    ys, xs = np.mgrid[:v.shape[0], :v.shape[1]]
    m = w.sum() + 1e-9
    cy, cx = (w * ys).sum() / m, (w * xs).sum() / m
    mu20, mu02 = (w * (xs - cx) ** 2).sum() / m, (w * (ys - cy) ** 2).sum() / m
    mu11 = (w * (xs - cx) * (ys - cy)).sum() / m
    return float(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))


def _bar_contrast(v: np.ndarray) -> float:
    return float(np.percentile(v, 95) - np.percentile(v, 5))


@pytest.mark.parametrize("channels,changes", [
    (1, {"rotate": 15.0, "hflip": 0.0}),  # the one-channel defaults
    (3, {}),  # colour: flip, ColorJitter, ToGray, solarize
    (1, {"rotate": 15.0, "view_size": 24}),  # patches of a larger image, mirrored corners
])
def test_batched_views_are_distributed_as_per_image_views(channels, changes):
    """1,000 pairs of an off-centre bar drawn batch by batch and image by image: the bar's
    orientation, each view's mean, spread and contrast (and for colour images the mean of
    each channel and a pixel's saturation) have the same distributions in both views."""
    from scipy.stats import ks_2samp

    c = PreprocessContract(channels=channels, size=32, mean=(0.5,) * channels,
                           std=(0.25,) * channels)
    img = np.zeros((32, 32, channels), np.float32)
    img[4:28, 10:15] = np.array([0.9, 0.5, 0.2][:channels])  # a bar, left of centre
    img[6:9, 20:26] = np.array([0.3, 0.8, 0.6][:channels])
    n = 1000
    batched = TwoViews("camera", c, seed=1, min_scale=0.2, **changes)
    assert batched.batched
    per_image = TwoViews("camera", c, seed=2, min_scale=0.2, **changes)
    per_image.batched = False
    new = [_nhwc(v) * 0.25 + 0.5 for v in batched.batch(np.repeat(img[None], n, axis=0))]
    old = [_nhwc(v) * 0.25 + 0.5 for v in per_image.batch(np.repeat(img[None], n, axis=0))]
    side = changes.get("view_size", 32)
    assert new[0].shape == old[0].shape == (n, side, side, channels)
    stats = {"orientation": lambda v: _orientation(v.mean(axis=-1)), "mean": np.mean,
             "std": np.std, "contrast": _bar_contrast}
    if channels == 3:
        stats |= {f"channel {k}": (lambda v, k=k: v[..., k].mean()) for k in range(3)}
        stats["saturation"] = lambda v: float(np.mean(v.max(-1) - v.min(-1)))
        stats["left-right"] = lambda v: float(v[:, :16].mean() - v[:, 16:].mean())
    for view in (0, 1):
        for name, stat in stats.items():
            p = ks_2samp([stat(v) for v in new[view]], [stat(v) for v in old[view]]).pvalue
            assert p > 0.001, (view, name, p)


def test_the_test_tells_a_different_pipeline():
    """The distribution test above is not blind: ±10° against ±15°, or half the jitter,
    fails it."""
    from scipy.stats import ks_2samp

    c = PreprocessContract(channels=1, size=32)
    img = np.zeros((1000, 32, 32, 1), np.float32)
    img[:, 4:28, 10:15] = 0.9
    a = TwoViews("camera", c, seed=1, min_scale=0.2, rotate=15.0, hflip=0.0).batch(img)[0]
    b = TwoViews("camera", c, seed=2, min_scale=0.2, rotate=10.0, hflip=0.0)
    b.batched = False
    b = b.batch(img)[0]
    d = TwoViews("camera", c, seed=3, min_scale=0.2, rotate=15.0, hflip=0.0, jitter=0.2)
    d.batched = False
    d = d.batch(img)[0]
    a, b, d = (_nhwc(v)[..., 0] for v in (a, b, d))
    assert ks_2samp([_orientation(v) for v in a], [_orientation(v) for v in b]).pvalue < 1e-3
    assert ks_2samp([_bar_contrast(v) for v in a],
                    [_bar_contrast(v) for v in d]).pvalue < 1e-3


def test_batched_views_depend_on_their_seed_only():
    c = PreprocessContract(channels=3, size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    views = TwoViews("camera", c, min_scale=0.3, view_size=24)
    imgs = np.random.default_rng(0).random((8, 32, 32, 3)).astype(np.float16)

    def draw(seed: int, disturb: bool):
        views.reseed(seed)
        if disturb:
            np.random.seed(1)
            torch.manual_seed(1)
            np.random.random(), torch.rand(3)
        return views.batch(imgs) + views.batch(imgs)

    base = draw(5, False)
    assert all(torch.equal(x, y) for x, y in zip(base, draw(5, True), strict=True))
    assert not any(torch.equal(x, y) for x, y in zip(base, draw(6, False), strict=True))
    assert all(x.dtype == torch.float32 and x.shape == (8, 3, 24, 24) for x in base)


@pytest.mark.parametrize("preset,changes", [("camera", {"texture": 0.5}),
                                            ("camera", {"cutpaste": True}),
                                            ("medical", {})])
def test_other_views_go_image_by_image(preset, changes):
    """What the batched module does not draw (texture scrambling, CutPaste negatives, the
    MONAI intensity steps of the medical views) keeps the per-image pipeline, with the
    same batch interface."""
    c = PreprocessContract(channels=1, size=32)
    views = TwoViews(preset, c, seed=0, min_scale=0.3, **changes)
    assert not views.batched
    out = views.batch(np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float16))
    assert len(out) == (3 if changes.get("cutpaste") else 2)
    assert all(v.shape == (4, 1, 32, 32) and v.dtype == torch.float32 for v in out)
