"""Corruptions for robustness curves (Aubret et al. 2025, section on robustness).

- input noise: Gaussian noise of standard deviation σ added to the prepared image (intensity
  in [0, 1], before the contract's normalisation), clipped back to [0, 1];
- internal masking: a fraction of the positions of the last feature map set to zero before
  the global average pooling (the mean still divides by all h·w positions, as the encoder's
  pooling would).

>>> import numpy as np
>>> maps = np.ones((2, 3, 2, 2), np.float32)
>>> masked_pooling(maps, 0.5, seed=0)[0].tolist()
[0.5, 0.5, 0.5]
"""

from __future__ import annotations

import numpy as np


def gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Prepared images (any shape, values in [0, 1]) with N(0, σ²) noise, clipped to [0, 1]."""
    if sigma < 0:
        raise ValueError(f"noise σ must be ≥ 0, got {sigma}")
    images = np.asarray(images, np.float32)
    if sigma == 0:
        return images.copy()
    rng = np.random.default_rng(seed)
    noisy = images + sigma * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(noisy, 0.0, 1.0)


def masked_pooling(local_maps: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """N×C×h×w maps → N×C pooled vectors after zeroing round(fraction·h·w) random positions
    per image (the same positions across channels)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"masking fraction must be in [0, 1], got {fraction}")
    maps = np.asarray(local_maps, np.float32)
    n, c, h, w = maps.shape
    positions = h * w
    k = int(round(fraction * positions))
    if k == 0:
        return maps.mean(axis=(2, 3))
    rng = np.random.default_rng(seed)
    drop = np.argsort(rng.random((n, positions)), axis=1)[:, :k]
    keep = np.ones((n, positions), np.float32)
    np.put_along_axis(keep, drop, 0.0, axis=1)
    flat = maps.reshape(n, c, positions)
    return np.einsum("ncp,np->nc", flat, keep) / positions
