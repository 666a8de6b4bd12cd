"""The scores of a local head, position by position (:mod:`cossl_edge.fewshot.local`
fits and applies it): local vectors through CL2N, a(i) against a memory or against class
prototypes, the two standardised and added (hybrid), an image's evidence, and its
calibration into P(finding).

>>> import numpy as np
>>> z = local_vectors(np.eye(3, dtype=np.float32).reshape(1, 3, 1, 3), None)
>>> anomaly(z, z[0, :2]).round(3).tolist()
[[0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import numpy as np

from cossl_edge.fewshot.errors import ClassifierError
from cossl_edge.fewshot.logreg import fit_logistic
from cossl_edge.fewshot.maths import cl2n

DECIMALS = 4  # memory vectors are unit-norm; 4 decimals is about float16's precision


def as_maps(maps: np.ndarray) -> np.ndarray:
    m = np.asarray(maps, np.float32)
    if m.ndim != 4:
        raise ClassifierError(f"a local classifier takes local maps N×C×h×w (the model's "
                              f"local_map output), got an array of shape {m.shape}")
    return m


def local_vectors(maps: np.ndarray, center: np.ndarray | None) -> np.ndarray:
    """N×C×h×w local maps → N×(h·w)×C CL2N vectors, positions in row-major order."""
    m = as_maps(maps)
    n, c, h, w = m.shape
    v = m.reshape(n, c, h * w).transpose(0, 2, 1).reshape(-1, c)
    return cl2n(v, center).reshape(n, h * w, c)


def anomaly(z: np.ndarray, memory: np.ndarray) -> np.ndarray:
    """a(i) = 1 − cosine to the nearest memory vector: N×P×C against M×C → N×P (one image
    at a time, so memory use stays P×M)."""
    out = np.zeros(z.shape[:2], np.float32)
    for n, zn in enumerate(z):
        out[n] = 1.0 - (zn @ memory.T).max(axis=1)
    return out


def evidence(a: np.ndarray, top_positions: int = 1) -> np.ndarray:
    """An image's evidence of a finding: the mean of its ``top_positions`` highest a(i)."""
    return np.sort(a, axis=1)[:, -top_positions:].mean(axis=1)


def finding_probability(calibration: dict, scores: np.ndarray) -> np.ndarray:
    """P(finding) for evidence values (or for each a(i) of a heatmap), any shape."""
    t = (np.asarray(scores, np.float64) - calibration["center"]) / calibration["scale"]
    return 1.0 / (1.0 + np.exp(-(calibration["weight"] * t + calibration["bias"])))


def prototype_scores(z: np.ndarray, prototypes: dict[str, np.ndarray],
                     normal: str) -> np.ndarray:
    """a(i) = max over finding classes of cos(z_i, p_f) − cos(z_i, p_normal): N×P."""
    base = z @ prototypes[normal]
    return np.max([z @ p for c, p in prototypes.items() if c != normal], axis=0) - base


def class_prototypes(pooled: np.ndarray, y: np.ndarray, center: np.ndarray) -> dict:
    zp = cl2n(pooled, center)
    return {c: cl2n(zp[y == c].mean(0, keepdims=True))[0] for c in sorted(set(y))}


def hybrid_scores(proto_a: np.ndarray, memory_a: np.ndarray, stats: dict) -> np.ndarray:
    """The sum of the two scores, each standardised on the normal support's positions."""
    (mp, sp), (mm, sm) = stats["prototype"], stats["memory"]
    return (proto_a - mp) / sp + (memory_a - mm) / sm


def left_out_evidence(zn: np.ndarray, top: int) -> np.ndarray:
    """Each normal image's evidence against the other normal images' memory; a single
    normal image's positions against its own other positions (a weaker stand-in)."""
    if len(zn) == 1:
        sims = zn[0] @ zn[0].T
        np.fill_diagonal(sims, -np.inf)
        return evidence((1.0 - sims.max(axis=1))[None], top)
    rest = [np.delete(zn, j, axis=0).reshape(-1, zn.shape[2]) for j in range(len(zn))]
    return np.concatenate([evidence(anomaly(zn[j:j + 1], m), top) for j, m in enumerate(rest)])


def calibrate(normal: np.ndarray, finding: np.ndarray, C: float) -> dict:
    """A one-feature logistic regression of finding against normal on the evidence,
    standardised around the midpoint of the two groups' means."""
    scores = np.concatenate([normal, finding])
    center = float((normal.mean() + finding.mean()) / 2)
    scale = float(max(scores.std(), 1e-6))
    y = np.r_[np.zeros(len(normal)), np.ones(len(finding))].astype(int)
    w, b = fit_logistic(((scores - center) / scale)[:, None], y, 2, C=C)
    return {"center": center, "scale": scale, "weight": float(w[0, 0]), "bias": float(b[0]),
            "normal_evidence": rounded(normal), "finding_evidence": rounded(finding)}


def rounded(x: np.ndarray) -> list:
    return np.round(np.asarray(x, np.float64), DECIMALS).tolist()
