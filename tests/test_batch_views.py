"""The batched camera views (``training/batch_views/``) are the per-image albumentations
views: each step gives albumentations' (or ``views.rotate``'s) pixels for the same
parameters, the random draws follow the same distributions, and whole views drawn batch by
batch are distributed as those drawn image by image (two-sample Kolmogorov–Smirnov)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from view_stats import orientation  # noqa: E402

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


@pytest.mark.parametrize("shape", [(32, 32, 1), (24, 40, 3), (2, 2, 1)])
@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_gives_views_rotate_pixels(shape, reflect):
    """Mirrored corners through a padded copy, or (an image smaller than the padding)
    through mirrored coordinates: either way OpenCV's pixels."""
    img = np.random.default_rng(0).random((8,) + shape).astype(np.float32)
    angles = np.array([-15.0, -7.3, 0.0, 0.4, 11.9, 45.0, 90.0, 180.0])
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
    img = np.full((32, 32, channels), 0.35, np.float32)  # grey: black corners would show
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
    stats = {"orientation": lambda v: orientation(v.mean(axis=-1)), "mean": np.mean,
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
    assert ks_2samp([orientation(v) for v in a], [orientation(v) for v in b]).pvalue < 1e-3
    assert ks_2samp([_bar_contrast(v) for v in a],
                    [_bar_contrast(v) for v in d]).pvalue < 1e-3


@pytest.mark.parametrize("preset,channels", [("camera", 3), ("medical", 1)])
def test_batched_views_depend_on_their_seed_only(preset, channels):
    c = PreprocessContract(channels=channels, size=32, mean=(0.5,) * channels,
                           std=(0.25,) * channels)
    views = TwoViews(preset, c, min_scale=0.3, view_size=24, rotate=15.0)
    imgs = np.random.default_rng(0).random((8, 32, 32, channels)).astype(np.float16)

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
    assert all(x.dtype == torch.float32 and x.shape == (8, channels, 24, 24) for x in base)


@pytest.mark.parametrize("view_size", [32, 16])
def test_batch_of_an_index_reads_the_same_images(view_size):
    """``batch(images, index)`` (the loader's call: only the patches are read) gives the views
    of ``batch(images[index])`` for the same seed, with patches and without."""
    c = PreprocessContract(channels=1, size=32)
    imgs = np.random.default_rng(0).random((20, 32, 32, 1)).astype(np.float16)
    index = np.array([7, 3, 3, 19, 0])
    a = TwoViews("camera", c, seed=4, view_size=view_size, rotate=15.0)
    b = TwoViews("camera", c, seed=4, view_size=view_size, rotate=15.0)
    for x, y in zip(a.batch(imgs, index), b.batch(imgs[index]), strict=True):
        assert x.shape == (5, 1, view_size, view_size) and torch.equal(x, y)


@pytest.mark.parametrize("shape,k", [((20, 7), 5), ((7, 20), 9), ((9, 30), 31), ((3, 4), 13)])
@pytest.mark.parametrize("reflect", [True, False])
def test_separable_filter_is_opencvs_either_way(shape, k, reflect):
    """Both ways of the batched 1-D filtering (band matrices, grouped convolutions) give
    OpenCV's sepFilter2D (cross-correlation; reflect-101 or zero borders) for per-image,
    asymmetric kernels, on non-square images and kernels longer than the image."""
    import cv2

    rng = np.random.default_rng(0)
    h, w = shape
    x = rng.random((3, 2, h, w)).astype(np.float32)
    rows, cols = rng.random((3, k)), rng.random((3, k + 2))
    rows, cols = rows / rows.sum(1, keepdims=True), cols / cols.sum(1, keepdims=True)
    border = cv2.BORDER_REFLECT_101 if reflect else cv2.BORDER_CONSTANT
    for method in ("matmul", "conv"):
        got = bv.separable_filter(torch.from_numpy(x), torch.from_numpy(rows),
                                  torch.from_numpy(cols), reflect=reflect, method=method)
        for i in range(3):
            for ch in range(2):
                want = cv2.sepFilter2D(x[i, ch], -1, cols[i].astype(np.float32),
                                       rows[i].astype(np.float32), borderType=border)
                np.testing.assert_allclose(got[i, ch].numpy(), want, atol=2e-5,
                                           err_msg=f"{method} {i} {ch}")


# --- the local-finding steps: texture scrambling and CutPaste, batched --------------------

class _Replay:
    """A stand-in for a numpy Generator that answers each call with the next given value:
    the per-image functions then make the draws the batched ones made."""

    def __init__(self, values):
        self.values = list(values)

    def _next(self, *args, **kwargs):
        return self.values.pop(0)

    random = uniform = integers = standard_normal = _next


@pytest.mark.parametrize("channels,side", [(1, 32), (3, 24), (1, 64)])
def test_texture_scrambling_gives_the_per_image_pixels(channels, side):
    """For the same noise and draws, the batched scrambling is local_augment's (OpenCV's
    Gaussian kernels, reflect-101 borders, the spreads matched image by image)."""
    from cossl_edge.training.local_augment import scramble_texture

    rng = np.random.default_rng(3)
    imgs = rng.random((6, side, side, channels)).astype(np.float32)
    imgs[:, side // 4:side // 2] += 0.5  # a shading the low-pass takes away
    t = bv.draw_texture(rng, 6, side, 0.7)
    t.applied[:2] = [True, False]  # at least one of each; the noise drawn again to match
    m = int(t.applied.sum())
    t.field, t.grain = (torch.from_numpy(rng.standard_normal((m, side, side), dtype=np.float32))
                        for _ in range(2))
    t.grain_sigma, t.grain_std = rng.uniform(0.5, 1.5, m), rng.uniform(0.02, 0.06, m)
    got = _nhwc(bv.scramble_texture(_nchw(imgs), t))
    j = 0
    for i, img in enumerate(imgs):
        if not t.applied[i]:
            np.testing.assert_array_equal(got[i], img)
            continue
        replay = _Replay([t.field[j].numpy(), t.grain[j].numpy(), t.grain_sigma[j],
                          t.grain_std[j]])
        want = scramble_texture(img if channels > 1 else img[..., 0], replay)
        assert not replay.values  # every draw used, in order
        np.testing.assert_allclose(got[i], want.reshape(img.shape), atol=2e-5)
        j += 1


def test_texture_draws_have_the_rate_and_ranges():
    t = bv.draw_texture(np.random.default_rng(0), 4000, 16, 0.8)
    assert abs(t.applied.mean() - 0.8) < 0.03
    m = int(t.applied.sum())
    assert t.field.shape == t.grain.shape == (m, 16, 16)
    for noise in (t.field, t.grain):  # white, standard normal
        assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 1) < 0.01
        a, b = noise[:, :, :-1].flatten(), noise[:, :, 1:].flatten()
        assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.01
    assert 0.5 <= t.grain_sigma.min() and t.grain_sigma.max() <= 1.5
    assert 0.02 <= t.grain_std.min() and t.grain_std.max() <= 0.06


@pytest.mark.parametrize("channels", [1, 3])
def test_cut_paste_gives_the_per_image_pixels(channels):
    """For the same draws, the batched CutPaste is local_augment.cut_paste: squares and
    scars, turned or not, their contrast changed about the piece's mean."""
    from cossl_edge.training.local_augment import cut_paste

    side, n = 32, 64
    rng = np.random.default_rng(1)
    imgs = rng.random((n, side, side, channels)).astype(np.float32)
    p = bv.draw_cut(rng, n, side, side)
    square = p.ph == p.pw
    assert 0.3 < square.mean() < 0.7 and (p.ph > p.pw).any() and (p.ph < p.pw).any()
    got = _nhwc(bv.cut_paste(_nchw(imgs), p))
    for i, img in enumerate(imgs):
        tail = [p.sy[i], p.sx[i], p.gain[i], p.shift[i], p.ty[i], p.tx[i]]
        if square[i]:
            replay = _Replay([0.25, p.ph[i] / side, 0, *tail])
        else:  # the thin side first; a turn (odd k) swaps the sides
            turned = p.ph[i] > p.pw[i]
            thin, long = (p.pw[i], p.ph[i]) if turned else (p.ph[i], p.pw[i])
            replay = _Replay([0.75, thin, long / side, int(turned), *tail])
        want = cut_paste(img, replay)
        assert not replay.values  # every draw used, in order
        np.testing.assert_allclose(got[i], want, atol=1e-6)


def test_cut_draws_have_cut_pastes_ranges():
    side = 64
    p = bv.draw_cut(np.random.default_rng(0), 5000, side, side)
    square = p.ph == p.pw
    assert abs(square.mean() - 0.5) < 0.03
    assert round(0.08 * side) <= p.ph[square].min() and p.ph[square].max() <= round(0.16 * side)
    thin = np.minimum(p.ph, p.pw)[~square]
    long = np.maximum(p.ph, p.pw)[~square]
    assert set(thin) == {2, 3} and round(0.2 * side) <= long.min() <= long.max() <= 29
    assert abs((p.ph > p.pw)[~square].mean() - 0.5) < 0.04  # turned half the time
    assert (p.sy + p.ph <= side).all() and (p.tx + p.pw <= side).all()
    assert 0.8 <= p.gain.min() and p.gain.max() <= 1.2 and abs(p.shift).max() <= 0.1


def _grain(v: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels: the fine grain of a view."""
    return float(np.abs(np.diff(v, axis=0)).mean() + np.abs(np.diff(v, axis=1)).mean())


def test_local_findings_views_are_distributed_as_per_image_views():
    """The views of ``--findings local`` (patches, texture scrambling, CutPaste negatives):
    1,000 drawn batch by batch and image by image have the same distributions of each
    view's mean, spread, contrast and grain and of the size and strength of the pasted
    change; the same statistics tell texture 0.8 from 0.4."""
    from scipy.stats import ks_2samp

    c = PreprocessContract(channels=1, size=32, mean=(0.5,), std=(0.25,))
    img = np.full((32, 32, 1), 0.35, np.float32)
    img[4:28, 10:15] = 0.9
    img[6:9, 20:26] = 0.1
    local = dict(min_scale=0.5, hflip=0.5, rotate=15.0, view_size=24, texture=0.8,
                 jitter=0.2, blur=0.0, solarize=0.0, cutpaste=True)
    n = 1000
    imgs = np.repeat(img[None], n, axis=0)

    def views(seed: int, batched: bool, **changes):
        v = TwoViews("camera", c, seed=seed, **(local | changes))
        v.batched = batched
        return [_nhwc(x)[..., 0] * 0.25 + 0.5 for x in v.batch(imgs)]

    new, old = views(1, True), views(2, False)
    assert len(new) == len(old) == 3 and new[2].shape == (n, 24, 24)
    stats = {"mean": np.mean, "std": np.std, "contrast": _bar_contrast, "grain": _grain}
    for view in (0, 1, 2):
        for name, stat in stats.items():
            p = ks_2samp([stat(v) for v in new[view]], [stat(v) for v in old[view]]).pvalue
            assert p > 0.001, (view, name, p)
    for name, stat in {"pasted area": lambda d: (np.abs(d) > 1e-6).sum(),
                       "pasted change": lambda d: np.abs(d).sum()}.items():
        p = ks_2samp([stat(d) for d in new[2] - new[1]],
                     [stat(d) for d in old[2] - old[1]]).pvalue
        assert p > 0.001, (name, p)
    less = views(3, False, texture=0.4)
    assert ks_2samp([_grain(v) for v in new[0]], [_grain(v) for v in less[0]]).pvalue < 1e-3


@pytest.mark.parametrize("preset,changes", [("camera", {"texture": 0.5}),
                                            ("camera", {"cutpaste": True}),
                                            ("medical", {"cutpaste": True})])
def test_local_finding_views_are_batched(preset, changes):
    """Texture scrambling and CutPaste negatives are drawn batch by batch too, with the
    same batch interface (a third view: the hard negative)."""
    c = PreprocessContract(channels=1, size=32)
    views = TwoViews(preset, c, seed=0, min_scale=0.3, **changes)
    assert views.batched
    out = views.batch(np.random.default_rng(0).random((4, 32, 32, 1)).astype(np.float16))
    assert len(out) == (3 if changes.get("cutpaste") else 2)
    assert all(v.shape == (4, 1, 32, 32) and v.dtype == torch.float32 for v in out)
    if changes.get("cutpaste"):  # the negative is view 2 with one piece changed
        diff = (out[2] - out[1]).abs().flatten(1) > 1e-6
        assert diff.any(dim=1).all() and (diff.float().mean(dim=1) < 0.2).all()


# --- the medical views: MONAI's intensity transforms, batched ------------------------------

def _scan_like(n: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Smooth blobs on a dark background with noise: a windowed slice's kind of histogram."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:24, :24] / 23.0
    out = np.empty((n, channels, 24, 24), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7, 3)
        blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (0.05 + 0.1 * r))
        out[i] = (0.7 * blob + 0.1 * rng.random((channels, 24, 24)))
    return out


def test_contrast_and_histogram_shift_give_monai_pixels():
    from monai.transforms import AdjustContrast, RandHistogramShift

    img = _scan_like(6)
    img[5] = 0.3  # one value: the histogram shift leaves it alone
    gammas = np.array([0.7, 0.9, 1.0, 1.2, 1.5, 1.1])
    got = bv.adjust_contrast(torch.from_numpy(img), gammas).numpy()
    for i in range(6):
        want = np.asarray(AdjustContrast(float(gammas[i]))(torch.from_numpy(img[i])))
        np.testing.assert_allclose(got[i], want, atol=1e-6)
    points, floating = [], np.ones((6, bv.HIST_POINTS[1]))
    wants = []
    for i in range(6):
        t = RandHistogramShift(num_control_points=(5, 10), prob=1.0)
        t.set_random_state(seed=i)
        t.randomize()
        k = len(t.reference_control_points)
        np.testing.assert_allclose(t.reference_control_points, np.linspace(0, 1, k))
        points.append(k)
        floating[i, :k] = t.floating_control_points
        with pytest.warns(UserWarning) if i == 5 else _no_warning():
            wants.append(np.asarray(t(torch.from_numpy(img[i]), randomize=False)))
    assert len(set(points)) > 2
    got = bv.histogram_shift(torch.from_numpy(img), np.array(points), floating).numpy()
    for i in range(6):
        np.testing.assert_allclose(got[i], wants[i], atol=2e-6)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_bias_field_and_smoothing_give_monai_pixels():
    from monai.transforms import GaussianSmooth, RandBiasField

    img = _scan_like(5, channels=2)
    coeffs = []
    wants = []
    for i in range(5):
        t = RandBiasField(degree=3, coeff_range=(0.0, 0.1), prob=1.0)
        t.set_random_state(seed=i)
        t.randomize(img_size=img.shape[2:])
        coeffs.append(t._coeff)
        wants.append(np.asarray(t(torch.from_numpy(img[i]), randomize=False)))
    got = bv.bias_field(torch.from_numpy(img), np.array(coeffs)).numpy()
    for i in range(5):
        np.testing.assert_allclose(got[i], wants[i], rtol=1e-6, atol=1e-7)
    rows = np.array([0.25, 0.4, 0.6, 0.8, 1.0])
    cols = np.array([1.0, 0.3, 0.6, 0.25, 0.9])
    got = bv.gaussian_smooth(torch.from_numpy(img), rows, cols).numpy()
    for i in range(5):
        want = np.asarray(GaussianSmooth(sigma=(rows[i], cols[i]))(torch.from_numpy(img[i])))
        np.testing.assert_allclose(got[i], want, atol=1e-6)


def test_medical_draws_follow_monai():
    """Probabilities, gamma, σ ranges, and the histogram shift's control points against
    MONAI's own draws (their number, and the first and middle inner points, KS)."""
    from monai.transforms import RandHistogramShift
    from scipy.stats import ks_2samp

    n = 4000
    p = bv.draw_medical(np.random.default_rng(0), n, smooth_p=0.5, noise_p=0.1)
    for rate, want in ((p.contrast, 0.8), (p.shift, 0.3), (p.bias, 0.3), (p.smooth, 0.5),
                       (p.noise, 0.1)):
        assert abs(rate.mean() - want) < 4 * np.sqrt(want * (1 - want) / n)
    for values, lo, hi in ((p.gamma, 0.7, 1.5), (p.sigma_rows, 0.25, 1.0),
                           (p.sigma_cols, 0.25, 1.0), (p.noise_std, 0.0, 0.05),
                           (p.coeff.ravel(), 0.0, 0.1)):
        assert lo <= values.min() and values.max() <= hi
        assert abs(values.mean() - (lo + hi) / 2) < 0.02 * (hi - lo)
    assert p.coeff.shape == (n, 10)
    t = RandHistogramShift(num_control_points=(5, 10), prob=1.0)
    t.set_random_state(seed=1)
    theirs = []
    for _ in range(n):
        t.randomize()
        theirs.append(t.floating_control_points)
    k_theirs = np.array([len(f) for f in theirs])
    assert np.abs(np.bincount(p.points, minlength=11)[5:] / n
                  - np.bincount(k_theirs, minlength=11)[5:] / n).max() < 0.03
    for k in (5, 8, 10):
        ours = p.floating[p.points == k]
        ref = np.array([f for f in theirs if len(f) == k])
        assert (np.diff(ours[:, :k], axis=1) >= 0).all() and (ours[:, k - 1] == 1).all()
        for j in (1, k // 2):
            assert ks_2samp(ours[:, j], ref[:, j]).pvalue > 0.001, (k, j)


def test_medical_noise_has_the_drawn_spread():
    x = torch.full((300, 1, 24, 24), 0.5)
    p = bv.draw_medical(np.random.default_rng(1), 300, smooth_p=0.0, noise_p=1.0)
    p.contrast[:] = p.shift[:] = p.bias[:] = False
    out = bv.medical_intensity(x, p)
    spread = (out - x).reshape(300, -1).std(dim=1).numpy()
    np.testing.assert_allclose(spread, p.noise_std, rtol=0.15, atol=2e-3)
    again = bv.medical_intensity(x, p)
    assert torch.equal(out, again)  # the noise comes from the drawn seed


@pytest.mark.parametrize("changes", [{"rotate": 15.0}, {"rotate": 15.0, "view_size": 20}])
def test_batched_medical_views_are_distributed_as_per_image_views(changes):
    from scipy.stats import ks_2samp

    c = PreprocessContract(channels=1, size=24)
    img = np.moveaxis(_scan_like(1, seed=3), 1, -1)[0]
    n = 1000
    batched = TwoViews("medical", c, seed=1, min_scale=0.3, **changes)
    assert batched.batched
    per_image = TwoViews("medical", c, seed=2, min_scale=0.3, **changes)
    per_image.batched = False
    new = [_nhwc(v)[..., 0] for v in batched.batch(np.repeat(img[None], n, axis=0))]
    old = [_nhwc(v)[..., 0] for v in per_image.batch(np.repeat(img[None], n, axis=0))]
    stats = {"mean": np.mean, "std": np.std, "contrast": _bar_contrast,
             "median": np.median, "max": np.max,
             "roughness": lambda v: float(np.abs(np.diff(v, axis=1)).mean())}
    for view in (0, 1):
        for name, stat in stats.items():
            p = ks_2samp([stat(v) for v in new[view]], [stat(v) for v in old[view]]).pvalue
            assert p > 0.001, (view, name, p)


# --- whole views for the per-image pipeline's own draws ------------------------------------

def _camera_params(applied: dict, angle: float, channels: int) -> bv.ViewParams:
    """The batched draws of one image from what the albumentations Compose applied."""
    x0, y0, x1, y1 = applied["RandomResizedCrop"]["crop_coords"]
    jit = applied.get("ColorJitter") or {}
    bc = applied.get("RandomBrightnessContrast") or {}
    sigma = 1.0
    if "GaussianBlur" in applied:  # σ from the kernel: k[m+1]/k[m] = exp(−1/(2σ²))
        k = applied["GaussianBlur"]["kernel"]
        m = len(k) // 2
        sigma = float(np.sqrt(-0.5 / np.log(k[m + 1] / k[m])))

    def one(v):
        return np.array([v])

    return bv.ViewParams(
        angle=one(angle), box=np.array([[y0, x0, y1 - y0, x1 - x0]]),
        flip=one("HorizontalFlip" in applied), colour=one(bool(jit or bc)),
        contrast=one(jit.get("contrast", bc.get("alpha", 1.0))),
        brightness=one(jit.get("brightness", bc.get("beta", 0.0 if channels == 1 else 1.0))),
        saturation=one(jit.get("saturation", 1.0)), hue=one(jit.get("hue", 0.0)),
        order=np.array([jit.get("order", [0, 1, 2, 3])]), gray=one("ToGray" in applied),
        blur=one("GaussianBlur" in applied), sigma=one(sigma),
        solarize=one("Solarize" in applied))


@pytest.mark.parametrize("channels,size,view_size,degrees", [
    (1, 32, None, 15.0), (3, 32, None, 0.0), (1, 48, 24, 15.0), (3, 64, 40, 10.0)])
def test_camera_views_equal_the_per_image_pipeline_for_its_draws(channels, size, view_size,
                                                                degrees):
    """Each view of the per-image pipeline (views.rotate, then albumentations' Compose with
    the parameters it applied recorded) against the batched view for those same
    parameters: the same pixels, every step taken several times."""
    from collections import Counter

    from cossl_edge.training.views import _blur_kernel

    c = PreprocessContract(channels=channels, size=size, mean=(0.5,) * channels,
                           std=(0.25,) * channels)
    tv = TwoViews("camera", c, seed=0, min_scale=0.2, rotate=degrees, view_size=view_size,
                  hflip=0.5)
    reflect = tv.size < c.size
    rng = np.random.default_rng(1)
    seen: Counter = Counter()
    for view in (tv.view_a, tv.view_b):
        pipe = view.albumentations[0]
        pipe.save_applied_params = True
        for _ in range(40):
            img = rng.random((tv.patch, tv.patch, channels)).astype(np.float32)
            angle = float(rng.uniform(-degrees, degrees)) if degrees else 0.0
            out = pipe(image=rotate(img, angle, reflect) if degrees else img)
            want = np.clip(out["image"], 0, 1).reshape(tv.size, tv.size, channels)
            applied = dict(out["applied_transforms"])
            seen.update(list(applied))
            got = bv.apply_view(_nchw(img[None]), _camera_params(applied, angle, channels),
                                tv.size, _blur_kernel(tv.size), reflect)
            np.testing.assert_allclose(_nhwc(got)[0], want, atol=5e-5)
    steps = ["HorizontalFlip", "GaussianBlur", "Solarize"]
    steps += ["ColorJitter", "ToGray"] if channels == 3 else ["RandomBrightnessContrast"]
    assert all(seen[s] >= 3 for s in steps), seen


@pytest.mark.parametrize("size,view_size,degrees,channels", [
    (24, None, 15.0, 1), (40, 20, 15.0, 1), (24, None, 0.0, 3)])
def test_medical_views_equal_the_per_image_pipeline_for_its_draws(size, view_size, degrees,
                                                                 channels):
    """The same for the medical views: the geometry's recorded parameters and the MONAI
    transforms' drawn state (the noise itself taken out), constant images included."""
    import warnings

    c = PreprocessContract(channels=channels, size=size)
    tv = TwoViews("medical", c, seed=0, min_scale=0.3, rotate=degrees, view_size=view_size)
    reflect = tv.size < c.size
    rng = np.random.default_rng(1)
    taken = np.zeros(5, int)
    for view in (tv.view_a, tv.view_b):
        geo = view.albumentations[0]
        geo.save_applied_params = True
        contrast, shift, bias, smooth, noise = view.monai[0].transforms
        for i in range(40):
            img = rng.random((tv.patch, tv.patch, channels)).astype(np.float32) * 0.6 + 0.2
            if i % 10 == 0:
                img[:] = 0.4
            angle = float(rng.uniform(-degrees, degrees)) if degrees else 0.0
            out = geo(image=rotate(img, angle, reflect) if degrees else img)
            cropped = out["image"].reshape(tv.size, tv.size, channels)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MONAI on a constant image
                want = np.asarray(view.monai[0](np.ascontiguousarray(np.moveaxis(cropped, -1,
                                                                                  0))))
            if noise._do_transform:
                want = want - np.asarray(noise.noise)
            x0, y0, x1, y1 = dict(out["applied_transforms"])["RandomResizedCrop"][
                "crop_coords"]
            p = bv.draw(np.random.default_rng(0), 1, tv.patch, tv.patch, min_scale=0.3,
                        hflip=0.0, rotate=0.0, jitter=0.0, colour_image=False, blur=0.0,
                        solarize=0.0)
            p.angle[:], p.box[:] = angle, [y0, x0, y1 - y0, x1 - x0]
            p.flip[:] = "HorizontalFlip" in dict(out["applied_transforms"])
            floating = np.ones((1, bv.HIST_POINTS[1]))
            points = 5
            if shift._do_transform:
                points = len(shift.floating_control_points)
                floating[0, :points] = shift.floating_control_points
            m = bv.MedicalParams(
                contrast=np.array([contrast._do_transform]),
                gamma=np.array([contrast.gamma_value]),
                shift=np.array([shift._do_transform]), points=np.array([points]),
                floating=floating, bias=np.array([bias._do_transform]),
                coeff=np.array([bias._coeff if bias._do_transform else [0.0] * 10]),
                smooth=np.array([smooth._do_transform]), sigma_rows=np.array([smooth.x]),
                sigma_cols=np.array([smooth.y]), noise=np.array([False]),
                noise_std=np.array([0.0]), noise_seed=0)
            taken += [t._do_transform for t in view.monai[0].transforms]
            got = bv.medical_intensity(bv.geometry(_nchw(img[None]), p, tv.size, reflect), m)
            np.testing.assert_allclose(_nhwc(got)[0], np.moveaxis(want, 0, -1), atol=2e-5)
    assert (taken >= 3).all(), taken


def test_batched_draws_use_the_per_image_pipelines_settings():
    """The probabilities and ranges batch_views/ draws from are those of the transforms
    the per-image pipelines build: a change to views.py without batch_views/ fails."""
    import albumentations as A
    from monai.transforms import (
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandHistogramShift,
    )

    for channels in (1, 3):
        c = PreprocessContract(channels=channels, size=32, mean=(0.5,) * channels,
                               std=(0.25,) * channels)
        tv = TwoViews("camera", c, min_scale=0.2, jitter=0.4, solarize=0.2, blur=1.0)
        for which, view in enumerate((tv.view_a, tv.view_b)):
            ts = {type(t): t for t in view.albumentations[0].transforms}
            crop = ts[A.RandomResizedCrop]
            assert tuple(crop.ratio) == pytest.approx(bv.RATIO) and crop.p == 1
            blur = ts[A.GaussianBlur]
            assert tuple(blur.sigma_limit) == (0.1, 2.0) and blur.p == [1.0, 0.1][which]
            sol = ts[A.Solarize]
            assert tuple(sol.threshold_range) == (0.5, 0.5) and sol.p == [0.0, 0.2][which]
            if channels == 1:
                bc = ts[A.RandomBrightnessContrast]
                assert bc.p == 0.8 and tuple(bc.brightness_limit) == (-0.4, 0.4)
                assert tuple(bc.contrast_limit) == (-0.4, 0.4) and bc.brightness_by_max
            else:
                cj = ts[A.ColorJitter]
                assert cj.p == 0.8 and tuple(cj.brightness) == (0.6, 1.4)
                assert tuple(cj.contrast) == (0.6, 1.4)
                assert tuple(cj.saturation) == (0.8, 1.2)
                assert tuple(cj.hue) == (-0.1, 0.1)
                assert ts[A.ToGray].p == 0.2 and ts[A.ToGray].method == "weighted_average"
    c = PreprocessContract(channels=1, size=32)
    tv = TwoViews("medical", c, blur=1.0)
    for which, view in enumerate((tv.view_a, tv.view_b)):
        ts = {type(t): t for t in view.monai[0].transforms}
        assert [type(t) for t in view.monai[0].transforms] == [
            RandAdjustContrast, RandHistogramShift, RandBiasField, RandGaussianSmooth,
            RandGaussianNoise]  # the order medical_intensity applies them in
        assert ts[RandAdjustContrast].prob == 0.8
        assert tuple(ts[RandAdjustContrast].gamma) == (0.7, 1.5)
        assert ts[RandHistogramShift].prob == 0.3
        assert tuple(ts[RandHistogramShift].num_control_points) == bv.HIST_POINTS
        assert ts[RandBiasField].prob == 0.3 and ts[RandBiasField].degree == bv.BIAS_DEGREE
        assert tuple(ts[RandBiasField].coeff_range) == (0.0, 0.1)
        sm = ts[RandGaussianSmooth]
        assert sm.prob == [0.5, 0.1][which] and sm.approx == "erf"
        assert tuple(sm.sigma_x) == tuple(sm.sigma_y) == (0.25, 1.0)
        noise = ts[RandGaussianNoise]
        assert noise.prob == [0.1, 0.5][which] and noise.std == 0.05 and noise.sample_std
        assert noise.mean == 0.0


@pytest.mark.parametrize("preset", ["camera", "medical"])
def test_loader_batches_repeat_and_differ_across_epochs_and_workers(preset):
    """Batches of several images through epoch_loader: the same seed repeats them (0 and 2
    workers), another epoch draws others, and a batch holds the images it was asked for."""
    from cossl_edge.training.dataset import TwoViewDataset, epoch_loader

    c = PreprocessContract(channels=1, size=16)
    images = np.zeros((12, 16, 16, 1), np.float16)
    for i in range(12):
        images[i, :, i] = 1.0  # image i: a bright column at x = i
    views = TwoViews(preset, c, min_scale=1.0, hflip=0.0, rotate=0.0, blur=0.0)
    dataset = TwoViewDataset(images, views)
    batches = [[0, 5, 7], [1, 2, 3], [11, 4, 6], [8, 9, 10]]

    def draw(workers: int, epoch: int = 0) -> list[torch.Tensor]:
        return [b[0] for b in epoch_loader(dataset, batches, workers, 0, 0, epoch)]

    first = draw(0)
    assert [tuple(b.shape) for b in first] == [(3, 1, 16, 16)] * 4
    for b, idx in zip(first, batches, strict=True):  # min_scale 1: the whole image
        assert [int(v[0].mean(dim=0).argmax()) for v in b] == idx
    assert all(torch.equal(x, y) for x, y in zip(first, draw(0), strict=True))
    assert not torch.equal(first[0], draw(0, epoch=1)[0])
    two = draw(2)
    assert all(torch.equal(x, y) for x, y in zip(two, draw(2), strict=True))


def test_batch_refuses_non_square_images():
    views = TwoViews("camera", PreprocessContract(channels=1, size=16), seed=0)
    with pytest.raises(ValueError, match="square"):
        views.batch(np.zeros((2, 16, 20, 1), np.float32))


@pytest.mark.parametrize("preset", ["camera", "medical"])
def test_per_image_pipelines_are_built_only_when_used(preset):
    """The batched path builds no per-image pipeline; one built later draws as one built at
    the start and reseeded with the same seed."""
    c = PreprocessContract(channels=1, size=24)
    img = np.random.default_rng(0).random((24, 24, 1)).astype(np.float32)
    views = TwoViews(preset, c, seed=3, min_scale=0.3)
    views.batch(img[None])
    assert views._per_image is None
    eager = TwoViews(preset, c, min_scale=0.3)
    eager.per_image  # noqa: B018  built before its seed
    eager.reseed(5)
    lazy = TwoViews(preset, c, seed=5, min_scale=0.3)
    assert lazy._per_image is None
    for x, y in zip(eager(img), lazy(img), strict=True):
        np.testing.assert_array_equal(x, y)
