"""The local-finding augmentations of the camera views: texture scrambling (the per-image
texture stops telling images apart) and CutPaste (a small local change makes another image)."""

from __future__ import annotations

import numpy as np


def scramble_texture(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace an H×W×C view's large-scale shading by a random one and drown its fine grain
    in new grain, keeping what stands out from both: edges, thin lines and small blobs.

    ``img − lowpass(img) + mean + field + grain``: the low-pass is a Gaussian at σ = 1/8 of
    the side, ``field`` smooth noise of that scale and the shading's own strength, ``grain``
    noise smoothed at σ 0.5–1.5 px with a standard deviation of 0.02–0.06.

    In scans whose every image has its own texture (crystal grain, trabecular bone, film
    grain), that texture is what tells one image from another best, and what instance
    discrimination learns first. Two views that no longer share it must be matched on what
    they still share — structures of higher contrast than the texture, the size of the
    findings."""
    import cv2

    h, w = img.shape[:2]
    sigma = max(h, w) / 8
    low = cv2.GaussianBlur(img, (0, 0), sigma).reshape(img.shape)
    spread = float(low.std()) + 0.02
    field = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    field *= spread / (float(field.std()) + 1e-6)
    grain = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0),
                             float(rng.uniform(0.5, 1.5)))
    grain *= float(rng.uniform(0.02, 0.06)) / (float(grain.std()) + 1e-6)
    noise = field + grain  # one shading and grain for every channel
    return img - low + float(low.mean()) + (noise[:, :, None] if img.ndim == 3 else noise)


def cut_paste(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The view with one small piece of itself cut out and pasted elsewhere (CutPaste, Li et
    al., CVPR 2021): a rectangle of 8–16% of the side, or a thin "scar" 2–3 px wide and
    20–45% of the side long, turned by a multiple of 90°, its contrast changed by ±20%.
    Used as a hard negative: the same image with a small local irregularity is another
    image, so the embedding must change when something small and local appears."""
    h, w = img.shape[:2]
    out = img.copy()
    if rng.random() < 0.5:
        ph = pw = max(2, int(round(rng.uniform(0.08, 0.16) * h)))
    else:
        ph, pw = max(2, int(rng.integers(2, 4))), max(4, int(round(rng.uniform(0.2, 0.45) * w)))
    k = int(rng.integers(4))
    if k % 2:
        ph, pw = pw, ph
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    piece = img[sy:sy + ph, sx:sx + pw]
    mean = piece.mean()
    piece = (piece - mean) * rng.uniform(0.8, 1.2) + mean + rng.uniform(-0.1, 0.1)
    ty, tx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out[ty:ty + ph, tx:tx + pw] = piece
    return out
