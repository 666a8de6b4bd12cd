"""The encoder's global pooling of its local map, in numpy: one definition that training,
export and the runtime read (the torch modules pool the same way, ``training/pooling.py``).

>>> import numpy as np
>>> pooled(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2), "max").tolist()
[[3.0, 7.0]]
"""

from __future__ import annotations

import numpy as np

POOLS = ("mean", "gem", "max")  # global poolings of a map, in training and export
GEM_P = 3.0  # generalised-mean exponent (Radenović et al. 2018), training's and export's


def pooled(local_maps: np.ndarray, how: str = "mean") -> np.ndarray:
    """The encoder's global pooling (``mean``, ``gem`` or ``max``), done in numpy so masking 0% is
    exactly it."""
    maps = np.asarray(local_maps, np.float32)
    if how == "gem":
        return np.power(np.power(np.maximum(maps, 1e-6), GEM_P).mean(axis=(2, 3)), 1 / GEM_P)
    if how == "max":
        return maps.max(axis=(2, 3))
    return maps.mean(axis=(2, 3))
