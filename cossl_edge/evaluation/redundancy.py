"""Redundancy of local representations (Aubret et al. 2025): for each image, the mean cosine
similarity between every pair of distinct local vectors of its last feature map. 1 means
all positions say the same thing; CO-SSL is expected to raise it.

The maps come after a ReLU, so local vectors are non-negative and the similarity is already
positive for a random encoder: compare against the random-init floor, not against 0.

>>> import numpy as np
>>> round(float(local_redundancy(np.ones((1, 4, 3, 3)))[0]), 6)
1.0
"""

from __future__ import annotations

import numpy as np


def local_redundancy(local_maps: np.ndarray, chunk: int = 256) -> np.ndarray:
    """N×C×h×w maps → N mean pairwise cosine similarities (positions i ≠ j)."""
    maps = np.asarray(local_maps, np.float32)
    n, c, h, w = maps.shape
    positions = h * w
    if positions < 2:
        raise ValueError(f"redundancy needs at least 2 local positions; the map is {h}×{w}")
    out = np.empty(n, np.float64)
    for start in range(0, n, chunk):
        v = maps[start:start + chunk].reshape(-1, c, positions).transpose(0, 2, 1)
        v = v / np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-12)
        gram = v @ v.transpose(0, 2, 1)
        off = gram.sum(axis=(1, 2)) - np.trace(gram, axis1=1, axis2=2)
        out[start:start + chunk] = off / (positions * (positions - 1))
    return out
