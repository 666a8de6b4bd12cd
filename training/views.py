"""Two-view augmentation pipelines (presets) for CO-SSL pretraining.

A pipeline takes a *prepared* image (the contract's deterministic output: size×size×C float32
in [0, 1], the thing the data cache stores) and returns two normalised C×size×size views.

Presets:
- ``camera``: BYOL's asymmetric pipeline (Grill et al. 2020, Table 6) with albumentations:
  random resized crop, flip, colour jitter (brightness/contrast only on 1-channel input),
  grayscale, Gaussian blur (always in view 1, 10% in view 2), solarize (view 2 only).
- ``medical``: intensity transforms that make sense for scans (see its builder's docstring).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from cossl_edge.contract import PreprocessContract  # noqa: E402

PRESETS = ("camera", "medical")

ViewFn = Callable[[np.ndarray], np.ndarray]


def _blur_kernel(size: int) -> int:
    k = max(3, int(0.1 * size) // 2 * 2 + 1)  # about 10% of the side, odd
    return k


def camera_views(contract: PreprocessContract, min_scale: float) -> tuple[ViewFn, ViewFn]:
    import albumentations as A

    s, gray = contract.size, contract.channels == 1
    k = _blur_kernel(s)

    def one(blur_p: float, solarize_p: float) -> ViewFn:
        colour = (
            A.RandomBrightnessContrast(brightness_limit=0.4, contrast_limit=0.4, p=0.8)
            if gray else
            A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, p=0.8)
        )
        ops = [
            A.RandomResizedCrop(size=(s, s), scale=(min_scale, 1.0), p=1.0),
            A.HorizontalFlip(p=0.5),
            colour,
        ]
        if not gray:
            ops.append(A.ToGray(p=0.2))
        ops += [
            A.GaussianBlur(blur_limit=(k, k), sigma_limit=(0.1, 2.0), p=blur_p),
            A.Solarize(threshold_range=(0.5, 0.5), p=solarize_p),
        ]
        pipe = A.Compose(ops)
        return lambda img: pipe(image=img)["image"]

    return one(1.0, 0.0), one(0.1, 0.2)


class TwoViews:
    """prepared image → (view_a, view_b), each normalised C×size×size float32."""

    def __init__(self, preset: str, contract: PreprocessContract, min_scale: float = 0.2):
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
        builder = {"camera": camera_views, "medical": _medical_views}[preset]
        self.view_a, self.view_b = builder(contract, min_scale)
        self.contract = contract

    def __call__(self, prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.clip(self.view_a(prepared), 0.0, 1.0)
        b = np.clip(self.view_b(prepared), 0.0, 1.0)
        if a.ndim == 2:
            a, b = a[:, :, None], b[:, :, None]
        return self.contract.normalize(a), self.contract.normalize(b)


def _medical_views(contract: PreprocessContract, min_scale: float) -> tuple[ViewFn, ViewFn]:
    return medical_views(contract, min_scale)


def medical_views(contract: PreprocessContract, min_scale: float) -> tuple[ViewFn, ViewFn]:
    """Placeholder until the MONAI intensity preset lands: the camera geometry without
    colour operations."""
    import albumentations as A

    s = contract.size

    def one() -> ViewFn:
        pipe = A.Compose([
            A.RandomResizedCrop(size=(s, s), scale=(min_scale, 1.0), p=1.0),
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.8),
        ])
        return lambda img: pipe(image=img)["image"]

    return one(), one()
