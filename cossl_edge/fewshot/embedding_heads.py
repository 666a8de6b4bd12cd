"""The heads on the pooled embedding: CL2N prototypes (SimpleShot, Wang et al. 2019), L2
logistic regression and weighted kNN. Each first applies CL2N: subtract the centring vector
(the model's, else the support mean), then L2-normalise.

>>> import numpy as np
>>> x = np.array([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.8]], np.float32)
>>> head = ProtoHead()
>>> params, center = head.fit(x, ["a", "a", "b", "b"], ["a", "b"], None, None)
>>> head.proba(params, ["a", "b"], center, np.array([[1.0, 0.0]]))[0].argmax(1).tolist()
[0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cossl_edge.fewshot.head import lists_problem
from cossl_edge.fewshot.logreg import fit_logistic, predict_logistic_proba
from cossl_edge.fewshot.maths import cl2n, softmax, weighted_votes


@dataclass
class EmbeddingHead:
    """What the three embedding heads share: CL2N, and one record of settings (C, k and the
    temperature; each head reads the ones it needs, as the files written before hold all
    three)."""

    C: float = 1.0  # logreg: inverse L2 strength (scikit-learn's meaning)
    k: int = 5  # knn: neighbours that vote
    temperature: float = 0.1  # proto, knn: softmax temperature on cosine similarities

    reads: ClassVar[str] = "embedding"
    maps: ClassVar[bool] = False
    keys: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_settings(cls, settings: dict) -> EmbeddingHead:
        return cls(settings.get("C", 1.0), int(settings.get("k", 5)),
                   float(settings.get("temperature", 0.1)))

    def settings(self) -> dict:
        return {"C": self.C, "k": self.k, "temperature": self.temperature}

    def fit(self, x: np.ndarray, labels: Sequence[str], classes: list[str],
            centering: np.ndarray | None, normal_class: str | None
            ) -> tuple[dict, np.ndarray]:
        y = np.asarray([classes.index(lab) for lab in labels])
        center = np.asarray(centering if centering is not None else x.mean(0), np.float32)
        return self.fit_normalised(cl2n(x, center), y, len(classes)), center

    def proba(self, params: dict, classes: list[str], centering: np.ndarray | None,
              x: np.ndarray) -> tuple[np.ndarray, None]:
        center = None if centering is None else np.asarray(centering, np.float32)
        return self.proba_normalised(params, cl2n(x, center), len(classes)), None

    @classmethod
    def check(cls, params: dict, classes: list[str]) -> str | None:
        return lists_problem(params, cls.keys)

    def fit_normalised(self, z: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
        raise NotImplementedError

    def proba_normalised(self, params: dict, z: np.ndarray, n_classes: int) -> np.ndarray:
        raise NotImplementedError


class ProtoHead(EmbeddingHead):
    """Nearest prototype: the softmax of cosines to each class's mean CL2N vector."""

    kind: ClassVar[str] = "proto"
    keys: ClassVar[tuple[str, ...]] = ("prototypes",)

    def fit_normalised(self, z: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
        protos = cl2n(np.stack([z[y == c].mean(0) for c in range(n_classes)]))
        return {"prototypes": protos.tolist()}

    def proba_normalised(self, params: dict, z: np.ndarray, n_classes: int) -> np.ndarray:
        protos = np.asarray(params["prototypes"], np.float32)
        return softmax(z @ protos.T / self.temperature)


class LogregHead(EmbeddingHead):
    """L2 logistic regression in numpy (:mod:`cossl_edge.fewshot.logreg`)."""

    kind: ClassVar[str] = "logreg"
    keys: ClassVar[tuple[str, ...]] = ("weights", "bias")

    def fit_normalised(self, z: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
        w, b = fit_logistic(z, y, n_classes, C=self.C)
        return {"weights": w.tolist(), "bias": b.tolist()}

    def proba_normalised(self, params: dict, z: np.ndarray, n_classes: int) -> np.ndarray:
        return predict_logistic_proba(z, np.asarray(params["weights"]),
                                      np.asarray(params["bias"]))


class KnnHead(EmbeddingHead):
    """Weighted kNN on cosines: the ``k`` nearest support vectors vote exp((s − 1) / T)."""

    kind: ClassVar[str] = "knn"
    keys: ClassVar[tuple[str, ...]] = ("support", "support_labels")

    def fit_normalised(self, z: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
        return {"support": z.tolist(), "support_labels": y.tolist()}

    def proba_normalised(self, params: dict, z: np.ndarray, n_classes: int) -> np.ndarray:
        support = np.asarray(params["support"], np.float32)
        votes = weighted_votes(z @ support.T, np.asarray(params["support_labels"]), n_classes,
                               self.k, self.temperature)
        return votes / votes.sum(axis=1, keepdims=True)
