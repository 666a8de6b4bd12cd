"""Corruptions for robustness curves (Aubret et al. 2025, section on robustness).

- input noise: Gaussian noise of standard deviation σ added to the prepared image (intensity
  in [0, 1], before the contract's normalisation), clipped back to [0, 1];
- internal masking: a fraction of the positions of the last feature map set to zero before
  the global average pooling, and the mean taken over the positions that are left (as
  inverted dropout rescales). Dividing by all h·w positions instead would shrink every
  embedding by the kept fraction, and a standardised linear probe or a centred kNN would
  then punish that change of scale, the same for every encoder, hiding what the claim is
  about: how much class information the remaining local vectors still carry.

>>> import numpy as np
>>> maps = np.ones((2, 3, 2, 2), np.float32)
>>> masked_pooling(maps, 0.5, seed=0)[0].tolist()
[1.0, 1.0, 1.0]
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
    """N×C×h×w maps → N×C vectors: the mean over the positions left after zeroing
    round(fraction·h·w) random positions per image (the same positions across channels);
    zeros when every position is masked."""
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
    kept = positions - k
    if kept == 0:
        return np.zeros((n, c), np.float32)
    return np.einsum("ncp,np->nc", flat, keep) / np.float32(kept)
