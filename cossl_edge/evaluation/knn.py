"""Weighted kNN on embeddings (Wu et al. 2018, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination"): the k most cosine-similar bank vectors vote with
weight exp(sim / T). Vectors go through CL2N first, centred on the bank's mean, as the
few-shot classifiers do (the training monitor passes a zero centre: plain cosine).

:func:`~cossl_edge.fewshot.maths.weighted_votes` is the vote itself, shared by
:func:`knn_predict`, the training monitor (``cossl_edge.training.diagnostics``) and the
``knn`` few-shot head.

>>> import numpy as np
>>> bank = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
>>> knn_predict(bank, np.array(["a", "a", "b", "b"]), np.array([[1.0, 0.2]]), k=2).tolist()
['a']
"""

from __future__ import annotations

import numpy as np

from cossl_edge.fewshot.maths import cl2n, weighted_votes


def knn_predict(bank: np.ndarray, bank_labels: np.ndarray, query: np.ndarray, k: int = 20,
                temperature: float = 0.07, centering: np.ndarray | None = None,
                chunk: int = 1024) -> np.ndarray:
    """Labels predicted for each query row. ``centering`` defaults to the bank's mean."""
    bank = np.asarray(bank, np.float32)
    bank_labels = np.asarray(bank_labels)
    center = bank.mean(axis=0) if centering is None else np.asarray(centering, np.float32)
    a = cl2n(bank, center)
    classes, codes = np.unique(bank_labels, return_inverse=True)
    out = []
    for start in range(0, len(query), chunk):
        b = cl2n(np.asarray(query[start:start + chunk], np.float32), center)
        votes = weighted_votes(b @ a.T, codes, len(classes), k, temperature)
        out.append(classes[votes.argmax(axis=1)])
    return np.concatenate(out) if out else np.asarray([], bank_labels.dtype)


def knn_accuracy(bank: np.ndarray, bank_labels: np.ndarray, query: np.ndarray,
                 query_labels: np.ndarray, k: int = 20, temperature: float = 0.07,
                 centering: np.ndarray | None = None) -> float:
    pred = knn_predict(bank, bank_labels, query, k, temperature, centering)
    return float((pred == np.asarray(query_labels)).mean())
