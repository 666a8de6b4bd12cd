"""The numpy leaves every few-shot head and the evaluation share: CL2N, a softmax, the
weighted kNN vote and a binary AUC. Nothing here imports the rest of the package.

>>> import numpy as np
>>> cl2n(np.array([[3.0, 4.0]])).tolist()
[[0.6000000238418579, 0.800000011920929]]
"""

from __future__ import annotations

import numpy as np


def cl2n(x: np.ndarray, centering: np.ndarray | None = None) -> np.ndarray:
    """Centre (subtract ``centering``) and L2-normalise each row (SimpleShot's CL2N, Wang et
    al. 2019)."""
    x = np.asarray(x, np.float32)
    if centering is not None:
        x = x - np.asarray(centering, np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of N×K scores."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def weighted_votes(sim: np.ndarray, codes: np.ndarray, n_classes: int, k: int,
                   temperature: float) -> np.ndarray:
    """Q×``n_classes`` votes from Q×B similarities to a bank whose rows have class ``codes``
    (0 … n_classes − 1): each query's k most similar rows vote exp((sim − 1) / T) for their
    class, summed nearest first (Wu et al. 2018; exp((sim − 1) / T) is the same vote as
    exp(sim / T), a constant factor, and cannot overflow)."""
    sim = np.asarray(sim)
    k = max(1, min(k, sim.shape[1]))
    near = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(sim, near, axis=1)
    order = np.argsort(-top, axis=1)
    near, top = np.take_along_axis(near, order, 1), np.take_along_axis(top, order, 1)
    votes = np.zeros((len(sim), n_classes))
    np.add.at(votes, (np.arange(len(sim))[:, None], np.asarray(codes)[near]),
              np.exp((top - 1.0) / temperature))
    return votes


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U, ties count one half)."""
    scores, positive = np.asarray(scores), np.asarray(positive, bool)
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)
