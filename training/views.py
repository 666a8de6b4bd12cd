"""Two-view augmentation pipelines for CO-SSL pretraining, image by image with albumentations
and MONAI: the **reference** that the batched views the training loop draws
(``training/batch_views/``) are tested against, step by step and in distribution
(``tests/test_batch_views.py``); ``TwoViews.batched = False`` puts them back (benchmarks).

A pipeline takes a *prepared* image (the contract's deterministic output: size×size×C float32
in [0, 1], the thing the data cache stores) and returns two normalised C×size×size views.

Presets:
- ``camera``: BYOL's asymmetric pipeline (Grill et al. 2020, Table 6) with albumentations:
  random rotation (``rotate``; the configuration sets ±15° for one-channel images, none for
  colour), random resized crop, horizontal flip (``hflip``; the configuration turns it off
  for one-channel images), colour jitter (brightness/contrast only on 1-channel input),
  grayscale, Gaussian blur (``blur``: always in view 1, 10% in view 2), solarize (view 2
  only).
- ``medical``: intensity transforms that make sense for scans (see its builder's docstring).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.training.local_augment import cut_paste, scramble_texture  # noqa: E402, F401
from cossl_edge.training.view_settings import PRESETS, ViewSettings  # noqa: E402, F401


class View:
    """One view's pipeline: prepared H×W×C image → augmented H×W×C image, drawing only from
    its own random streams — its albumentations and MONAI pipelines' and a numpy Generator
    for the rest — which :meth:`reseed` sets from one seed. Nothing is drawn from the global
    generators, so a seed fixes the views whatever else the process draws."""

    def __init__(self, apply: Callable[[np.ndarray, np.random.Generator], np.ndarray],
                 albumentations: Sequence = (), monai: Sequence = ()):
        self.apply = apply
        self.albumentations, self.monai = list(albumentations), list(monai)
        self.rng = np.random.default_rng()

    def reseed(self, seed: int) -> None:
        own, *children = np.random.SeedSequence(seed).spawn(
            1 + len(self.albumentations) + len(self.monai))
        self.rng = np.random.default_rng(own)
        words = [int(c.generate_state(1)[0]) for c in children]  # 32-bit: MONAI's limit
        n = len(self.albumentations)
        for pipe, word in zip(self.albumentations, words[:n], strict=True):
            pipe.set_random_seed(word)
        for pipe, word in zip(self.monai, words[n:], strict=True):
            pipe.set_random_state(seed=word)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.apply(img, self.rng)


def _blur_kernel(size: int) -> int:
    k = max(3, int(0.1 * size) // 2 * 2 + 1)  # about 10% of the side, odd
    return k


def rotate(img: np.ndarray, degrees: float, reflect: bool = False) -> np.ndarray:
    """``img`` (H×W or H×W×C) turned by ``degrees`` about its centre, bilinear, the corners
    filled with black — or, for a patch of a larger image (``reflect``), with the patch's
    own mirrored content: a black corner inside a scan would look like a dark finding.

    The same pixels as ``albumentations.Affine(rotate=...)`` (its matrix: centre
    ``(w/2 − 0.5, h/2 − 0.5)``, bilinear, ``BORDER_CONSTANT`` 0 or ``BORDER_REFLECT_101``;
    ``tests/test_methods.py`` compares them) at a tenth of the cost: Affine spent about
    260 µs per call on parameter handling around a 20 µs ``cv2.warpAffine``, a third of the
    views' time (``docs/benchmarks.md``, "Where a step's time goes")."""
    import cv2

    h, w = img.shape[:2]
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    r = np.deg2rad(degrees % 360)
    c, s = np.cos(r), np.sin(r)
    m = np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101 if reflect else cv2.BORDER_CONSTANT,
                         borderValue=0)
    return out.reshape(img.shape)


def _one_cv2_thread() -> None:
    """OpenCV without its thread pool in the process that draws views: on one small image
    its parallel loops cost more than they save, and its threads compete with torch's for
    the cores (a batch of views took 55 instead of 75-110 ms on 2 busy cores; the same
    pixels)."""
    import cv2

    cv2.setNumThreads(1)


def _rotation(degrees: float, reflect: bool = False
              ) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """A random rotation within ±degrees (uniform, every view) drawn from the view's own
    generator; the identity when ``degrees`` is 0."""
    if degrees <= 0:
        return lambda img, rng: img
    return lambda img, rng: rotate(img, float(rng.uniform(-degrees, degrees)), reflect)


def camera_views(contract: PreprocessContract, min_scale: float, hflip: float = 0.5,
                 solarize: float = 0.2, blur: float = 1.0,
                 rotate: float = 0.0, size: int | None = None,
                 texture: float = 0.0, jitter: float = 0.4) -> tuple[View, View]:
    import albumentations as A

    s, gray = size or contract.size, contract.channels == 1
    k = _blur_kernel(s)

    def one(blur_p: float, solarize_p: float) -> View:
        colour = (
            A.RandomBrightnessContrast(brightness_limit=jitter, contrast_limit=jitter, p=0.8)
            if gray else
            A.ColorJitter(brightness=jitter, contrast=jitter, saturation=0.2, hue=0.1, p=0.8)
        )
        turn = _rotation(rotate, reflect=s < contract.size)
        ops = [
            A.RandomResizedCrop(size=(s, s), scale=(min_scale, 1.0), p=1.0),
            A.HorizontalFlip(p=hflip),
            colour,
        ]
        if not gray:
            ops.append(A.ToGray(p=0.2))
        ops += [
            A.GaussianBlur(blur_limit=(k, k), sigma_limit=(0.1, 2.0), p=blur_p),
            A.Solarize(threshold_range=(0.5, 0.5), p=solarize_p),
        ]
        pipe = A.Compose(ops)

        def apply(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            out = pipe(image=turn(img, rng))["image"]
            if texture > 0 and rng.random() < texture:
                out = scramble_texture(out, rng)
            return out

        return View(apply, albumentations=[pipe])

    return one(blur, 0.0), one(0.1 * blur, solarize)


class TwoViews:
    """prepared image → (view_a, view_b), each normalised C×size×size float32.

    Every random draw — the native-resolution patch, both views' albumentations and MONAI
    pipelines, texture scrambling, CutPaste — comes from streams that :meth:`reseed` sets
    from one seed. The training loop reseeds each loading process (the main one, or each
    DataLoader worker) at the start of every epoch with a seed derived from ``--seed``, the
    rank, the epoch and the worker (:func:`cossl_edge.training.dataset.stream_seed`). A
    process that has not been reseeded seeds itself on its first call from numpy's global
    generator (which PyTorch seeds per worker), so that ``np.random.seed`` still fixes the
    views of a :class:`TwoViews` used on its own."""

    def __init__(self, settings: ViewSettings | str, contract: PreprocessContract,
                 seed: int | None = None, **changes):
        """``settings``: the views' :class:`ViewSettings` (or a preset's name, with any of
        its fields as keyword arguments: ``TwoViews("camera", contract, min_scale=0.5)``)."""
        if isinstance(settings, str):
            settings = ViewSettings(preset=settings, **changes)
        elif changes:
            settings = replace(settings, **changes)
        _one_cv2_thread()
        self.settings = settings
        size = settings.view_size or contract.size
        self._per_image: tuple[View, View] | None = None  # built on first use (per_image)
        self._view_seeds: tuple[int, int] | None = None
        self.contract = contract
        self.size = size
        self.patch = patch_size(size, contract.size)
        self.cutpaste = settings.cutpaste
        # whole batches on tensors (training/batch_views/); False: image by image
        self.batched = BATCHED
        self.rng = np.random.default_rng()
        self._seeded_in: int | None = None  # the process id that last reseeded
        if seed is not None:
            self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Seed every random stream of the views from ``seed`` (a non-negative integer)."""
        a, b, own = np.random.SeedSequence(seed).spawn(3)
        self._view_seeds = (int(a.generate_state(1)[0]), int(b.generate_state(1)[0]))
        if self._per_image is not None:
            for view, word in zip(self._per_image, self._view_seeds, strict=True):
                view.reseed(word)
        self.rng = np.random.default_rng(own)
        self._seeded_in = os.getpid()

    @property
    def per_image(self) -> tuple[View, View]:
        """The two per-image pipelines (the reference views), built on first use — the
        batched path never needs them — and seeded as :meth:`reseed` last set them."""
        if self._per_image is None:
            s, c = self.settings, self.contract
            try:
                if s.preset == "camera":
                    pair = camera_views(c, s.min_scale, s.hflip, s.solarize, s.blur, s.rotate,
                                        self.size, s.texture, s.jitter)
                else:  # solarizing a window of HU means nothing: the medical views have none
                    pair = medical_views(c, s.min_scale, s.hflip, s.rotate, s.blur, self.size)
            except ModuleNotFoundError as e:  # a [train] install: training never needs them
                if e.name != "albumentations":
                    raise
                raise ModuleNotFoundError("the per-image reference views need albumentations "
                                          "(pip install 'cossl-edge[dev]')", name=e.name) from e
            if self._view_seeds is not None:
                for view, word in zip(pair, self._view_seeds, strict=True):
                    view.reseed(word)
            self._per_image = pair
        return self._per_image

    view_a = property(lambda self: self.per_image[0])
    view_b = property(lambda self: self.per_image[1])

    def __call__(self, prepared: np.ndarray) -> tuple[np.ndarray, ...]:
        """(view_a, view_b), and with ``cutpaste`` a third: view_b after :func:`cut_paste`,
        the hard negative of this image."""
        if self._seeded_in != os.getpid():  # first call here, or in a process forked since
            self.reseed(int(np.random.randint(2**31 - 1)))
        if self.patch < prepared.shape[0]:  # both views from one native-resolution patch
            top, left = self.rng.integers(0, prepared.shape[0] - self.patch + 1, size=2)
            prepared = prepared[top:top + self.patch, left:left + self.patch]
        a = np.clip(self.view_a(prepared), 0.0, 1.0)
        b = np.clip(self.view_b(prepared), 0.0, 1.0)
        if a.ndim == 2:
            a, b = a[:, :, None], b[:, :, None]
        views = [a, b]
        if self.cutpaste:
            views.append(np.clip(cut_paste(b, self.rng), 0.0, 1.0))
        return tuple(self.contract.normalize(v) for v in views)

    def batch(self, prepared: np.ndarray, index: np.ndarray | None = None) -> tuple:
        """The views of a batch of prepared images (B×S×S×C; with ``index``, the images
        ``prepared[index]``): a tuple of B×C×size×size float32 tensors, normalised, as
        :meth:`__call__` gives one image's — drawn for the whole batch at once on tensors
        where :attr:`batched` (the same distributions, ``training/batch_views/``), else
        image by image. With ``index`` and patches, only the patches are read."""
        import torch

        if self._seeded_in != os.getpid():
            self.reseed(int(np.random.randint(2**31 - 1)))
        if not self.batched:
            chosen = prepared if index is None else prepared[index]
            pairs = [self(np.asarray(img, np.float32)) for img in chosen]
            return tuple(torch.from_numpy(np.stack(v)) for v in zip(*pairs, strict=True))
        from cossl_edge.training.batch_views import batch_pairs

        prepared = np.asarray(prepared)
        if prepared.ndim != 4 or prepared.shape[1] != prepared.shape[2]:
            raise ValueError(f"TwoViews.batch takes a batch of square prepared images "
                             f"(B×S×S×C), got shape {prepared.shape}")
        rows = np.arange(len(prepared)) if index is None else np.asarray(index, np.int64)
        n, side = len(rows), prepared.shape[1]
        if self.patch < side:  # both views of an image from one native-resolution patch
            top, left = self.rng.integers(0, side - self.patch + 1, size=(2, n))
            span = np.arange(self.patch)
            prepared = prepared[rows[:, None, None], (top[:, None] + span)[:, :, None],
                                (left[:, None] + span)[:, None, :]]
        elif index is not None:
            prepared = prepared[rows]
        x = torch.from_numpy(np.ascontiguousarray(prepared, np.float32)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.contract.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.contract.std, dtype=torch.float32).view(1, -1, 1, 1)
        out = batch_pairs(x, self.settings, self.size, _blur_kernel(self.size),
                          self.size < self.contract.size, self.cutpaste, self.rng)
        return tuple(((v - mean) / std).contiguous() for v in out)


# Whole batches on tensors (``TwoViews.batched``); False: the per-image pipelines (benchmarks)
BATCHED = True


def patch_size(view_size: int, image_size: int) -> int:
    """Side of the patch that both views of a pair are cropped from, when the views are
    smaller than the image: a quarter larger than a view, so that a random resized crop of
    the patch keeps about the native scale (0.8–1.25×) and the two views overlap."""
    if view_size >= image_size:
        return image_size
    return min(image_size, int(round(1.25 * view_size)))


def medical_views(contract: PreprocessContract, min_scale: float,
                  hflip: float = 0.5, rotate: float = 0.0, blur: float = 1.0,
                  size: int | None = None) -> tuple[View, View]:
    """Views for scans: the camera geometry (rotation, random resized crop, horizontal flip)
    and MONAI intensity transforms instead of colour jitter, which means nothing for a
    window of HU:

    - ``RandAdjustContrast`` (gamma 0.7–1.5, p 0.8): another window shape;
    - ``RandHistogramShift`` (5–10 control points, p 0.3): a monotone remapping of
      intensities, as different scanners and reconstruction kernels give;
    - ``RandBiasField`` (degree 3, p 0.3): the smooth gain field of MR coils;
    - ``RandGaussianSmooth`` (σ 0.25–1 px) and ``RandGaussianNoise`` (σ 0.05): asymmetric as
      in BYOL's blur — view 1 is mostly smoothed (p 0.5 vs 0.1), view 2 mostly noisy
      (p 0.5 vs 0.1) — for thick and thin reconstructions, low and high dose.

    No vertical flip: anatomy has a canonical up and down. The MONAI transforms draw from
    their own generators, seeded with the albumentations ones by :meth:`View.reseed`."""
    import albumentations as A
    import torch
    from monai.data import set_track_meta
    from monai.transforms import (
        Compose,
        RandAdjustContrast,
        RandBiasField,
        RandGaussianNoise,
        RandGaussianSmooth,
        RandHistogramShift,
    )

    set_track_meta(False)  # plain tensors: MetaTensor bookkeeping costs more than the maths
    s = size or contract.size

    def one(smooth_p: float, noise_p: float) -> View:
        turn = _rotation(rotate, reflect=s < contract.size)
        geometry = A.Compose([
            A.RandomResizedCrop(size=(s, s), scale=(min_scale, 1.0), p=1.0),
            A.HorizontalFlip(p=hflip),
        ])
        intensity = Compose([
            RandAdjustContrast(prob=0.8, gamma=(0.7, 1.5)),
            RandHistogramShift(num_control_points=(5, 10), prob=0.3),
            RandBiasField(degree=3, coeff_range=(0.0, 0.1), prob=0.3),
            RandGaussianSmooth(sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), prob=smooth_p),
            RandGaussianNoise(prob=noise_p, mean=0.0, std=0.05),
        ])

        def apply(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            cropped = geometry(image=turn(img, rng))["image"]
            if cropped.ndim == 2:
                cropped = cropped[:, :, None]
            # One image's tensors are tiny: waking torch's thread pool for each op costs
            # 20× the maths (measured: 1 ms vs 20 ms per pair on 2 busy cores).
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                out = intensity(np.ascontiguousarray(np.moveaxis(cropped, -1, 0)))
            finally:
                torch.set_num_threads(threads)
            out = out.numpy() if hasattr(out, "numpy") else np.asarray(out)
            return np.moveaxis(out, 0, -1).astype(np.float32)

        return View(apply, albumentations=[geometry], monai=[intensity])

    return one(smooth_p=0.5 * blur, noise_p=0.1), one(smooth_p=0.1 * blur, noise_p=0.5)
