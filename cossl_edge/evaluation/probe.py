"""Linear probe: L2 logistic regression on frozen, standardised embeddings.

The regularisation strength is chosen on a validation quarter of the training part (so the
test part is never looked at), then the probe is refitted on the whole training part.

>>> import numpy as np
>>> x = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 1.0], [1.1, 1.0]] * 4)
>>> y = np.array([0, 0, 1, 1] * 4)
>>> fit_linear_probe(x, y, seed=0).accuracy(x, y)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cossl_edge.evaluation.splits import stratified_split
from cossl_edge.fewshot.logreg import fit_logistic, predict_logistic_proba

# Larger C rarely wins on standardised features of a few hundred images, and on nearly
# separable data its L-BFGS runs take several times longer.
DEFAULT_CS = (0.01, 0.1, 1.0)
__all__ = ["DEFAULT_CS", "LinearProbe", "fit_linear_probe", "stratified_split"]


@dataclass
class LinearProbe:
    """Standardisation (train statistics) + logistic regression over ``classes``."""

    classes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    C: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean) / self.scale
        return self.classes[predict_logistic_proba(z, self.weights, self.bias).argmax(1)]

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())


def _fit_fixed(x: np.ndarray, y: np.ndarray, C: float) -> LinearProbe:
    classes, codes = np.unique(y, return_inverse=True)
    mean = x.mean(axis=0)
    scale = np.maximum(x.std(axis=0), 1e-6)  # constant dims (e.g. border pixels) stay finite
    w, b = fit_logistic((x - mean) / scale, codes, len(classes), C=C)
    return LinearProbe(classes, mean, scale, w, b, C)


def fit_linear_probe(x: np.ndarray, y: np.ndarray, seed: int = 0,
                     Cs: Sequence[float] = DEFAULT_CS) -> LinearProbe:
    """Fit on N×D features and N labels; C picked on a stratified validation quarter."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise ValueError("a linear probe needs at least two classes")
    best_c = float(Cs[0])
    if len(Cs) > 1:
        fit_idx, val_idx = stratified_split(y, 0.25, seed + 1)
        if len(np.unique(y[fit_idx])) >= 2 and len(val_idx):
            scores = [_fit_fixed(x[fit_idx], y[fit_idx], c).accuracy(x[val_idx], y[val_idx])
                      for c in Cs]
            best_c = float(Cs[int(np.argmax(scores))])  # ties: the smallest C (strongest L2)
    return _fit_fixed(x, y, best_c)
