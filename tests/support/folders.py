"""Image folders for the tests: labelled class folders (``root/<class>/<i>.png``) and plain
folders of PNGs, written from a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SHAPES = ("square", "disk", "hbar", "vbar")


def shape_image(shape: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A bright shape at a random place on a noisy dark background, float in [0, 1]."""
    img = rng.random((size, size)).astype(np.float32) * 0.2
    s = size / 32
    cx, cy = rng.integers(int(8 * s), int(24 * s), 2)
    r = int(rng.integers(int(4 * s), int(8 * s)))
    yy, xx = np.mgrid[:size, :size]
    masks = {
        "square": (abs(xx - cx) < r) & (abs(yy - cy) < r),
        "disk": (xx - cx) ** 2 + (yy - cy) ** 2 < r * r,
        "hbar": (abs(yy - cy) < 2 * s) & (abs(xx - cx) < r + 4 * s),
        "vbar": (abs(xx - cx) < 2 * s) & (abs(yy - cy) < r + 4 * s),
    }
    img[masks[shape]] = 0.8 + 0.2 * rng.random()
    return img.clip(0, 1)


def write_shapes(root: Path, per_class: int, seed: int = 0, size: int = 32) -> Path:
    """ImageFolder-style PNGs: root/<shape>/<i>.png."""
    rng = np.random.default_rng(seed)
    for shape in SHAPES:
        d = root / shape
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = shape_image(shape, rng, size)
            Image.fromarray((img * 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    return root


def write_class_folders(root: Path, classes: int = 3, per_class: int = 8, size: int = 20,
                        seed: int = 0) -> Path:
    """PNG images in ``root/class_k/``; each class has its own brightness and texture, so a
    random-feature encoder separates them."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = 40 + 70 * k
            img = rng.normal(base, 6 + 8 * k, size=(size, size)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"img_{i:03d}.png")
    return root


def write_stripes(folder: Path, n: int = 24, seed: int = 0) -> Path:
    """Stripes and blobs with noise: varied enough for kNN and calibration."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:40]
    for i in range(n):
        angle = rng.uniform(0, np.pi)
        img = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / rng.uniform(1.5, 5))
        img = 128 + 70 * img + rng.normal(0, 15, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


def write_noise_pngs(folder: Path, n: int, size: int = 16, seed: int = 0,
                     name: str = "{i:02d}.png") -> Path:
    """``n`` size×size 8-bit PNGs of uniform noise in ``folder`` (file names from ``name``):
    the smallest data a pretraining or a command runs on."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = (rng.random((size, size)) * 255).astype(np.uint8)
        Image.fromarray(img).save(folder / name.format(i=i))
    return folder
