"""What a model implies for fitting a head, shared by ``fewshot fit``/``eval`` and the
benchmarks: the local scoring ``auto`` picks, and the centring vector a head is given.

>>> local_scoring("gem"), local_scoring("mean"), local_scoring("gem", "prototype")
('hybrid', 'memory', 'prototype')
"""

from __future__ import annotations

import numpy as np


def local_scoring(pooling: str, given: str = "auto") -> str:
    """--local-scoring auto: hybrid for a GeM- or max-pooled model (pretrain --findings
    local), memory for a mean-pooled one."""
    if given == "auto":
        return "memory" if pooling == "mean" else "hybrid"
    return given


def fit_centering(model_centering: np.ndarray | None, pooling: str, kind: str,
                  scoring: str = "memory") -> np.ndarray | None:
    """The model's centring vector is its mean embedding: what the prototype scoring
    compares with, and the mean local vector too when the model pools by the mean;
    otherwise (GeM) the memory scoring centres on its support (None)."""
    if kind == "local" and scoring == "memory" and pooling != "mean":
        return None
    return model_centering
