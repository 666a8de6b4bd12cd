"""Embedding diagnostics that the training loop logs: is it learning, is it collapsing?

- effective rank (RankMe, Garrido et al. 2023): exp of the entropy of the normalised singular
  values of the centred embeddings; 1 for a collapsed embedding, D for an isotropic one;
- std of the L2-normalised embeddings per dimension (SimSiam's collapse check: about 1/√D
  when healthy, 0 when collapsed);
- weighted kNN accuracy on a labelled monitor set (Wu et al. 2018, k = 20, T = 0.07).
"""

from __future__ import annotations

import numpy as np

from cossl_edge.evaluation import knn
from cossl_edge.evaluation.splits import stratified_split


def effective_rank(embeddings: np.ndarray) -> float:
    """>>> round(effective_rank(np.eye(8)), 3) > 6.9
    True
    """
    x = np.asarray(embeddings, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    if s.sum() <= 0:
        return 1.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def normalized_std(embeddings: np.ndarray) -> float:
    x = np.asarray(embeddings, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return float(x.std(axis=0).mean())


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray,
                 test_labels: np.ndarray, k: int = 20, temperature: float = 0.07) -> float:
    """Cosine-similarity weighted kNN: each of the k nearest votes exp(sim / T). No centring
    (the monitor's raw cosine), unlike the evaluation's kNN."""
    centre = np.zeros(np.shape(train)[1], np.float32)
    return knn.knn_accuracy(train, train_labels, test, test_labels, k, temperature, centre)


def stratified_halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a deterministic 50/50 split, stratified by label (the first half of each
    class, at least one, then the rest)."""
    second, first = stratified_split(labels, seed=seed, test_count=lambda n: max(1, n // 2))
    return first, second


def collapse_warning(rank: float, dim: int) -> str | None:
    if rank < max(2.0, 0.02 * dim):
        return f"embedding may be collapsing (effective rank {rank:.1f} of {dim})"
    return None
