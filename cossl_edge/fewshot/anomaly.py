"""The anomaly head: few-shot normal-vs-finding on the model's anomaly map, and the choice of
a reading.

The exported model's ``anomaly_map`` (N×h×w) says, position by position, how far an image
departs from the normal model of the unlabeled training images
(:mod:`cossl_edge.training.normal_stats`). No label went into it, so a few labelled
images only have to place one threshold:

1. An image's evidence is the maximum of its map (the most anomalous place).
2. A one-feature L2 logistic regression on the support's evidence (normal class against
   the finding class, :func:`cossl_edge.fewshot.positions.calibrate`) gives P(finding); the same
   function of each position's value colours the heatmap.

Which reading of the model suits a task — the pooled embedding's prototypes (classes that
differ as wholes) or the anomaly map (a finding that is a departure from the usual image) —
is chosen from the support itself by :func:`choose_reading`: each is scored leaving one
support image out, and prototypes take the task only when they separate the two classes'
left-out scores clearly better (``SEPARATION_MARGIN``).

>>> import numpy as np
>>> maps = np.zeros((6, 2, 2), np.float32); maps[3:, 1, 1] = 4.0
>>> params = fit_anomaly(maps, ["ok"] * 3 + ["crack"] * 3, ["crack", "ok"], None)
>>> proba, heat = predict_anomaly(params, ["crack", "ok"], maps[[0, 4]])
>>> proba.argmax(1).tolist(), bool(heat[1, 1, 1] > heat[1, 0, 0])
([1, 0], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cossl_edge.fewshot.errors import ClassifierError
from cossl_edge.fewshot.head import calibration_problem, lists_problem
from cossl_edge.fewshot.maths import binary_auc, cl2n
from cossl_edge.fewshot.normal import normal_class_of
from cossl_edge.fewshot.positions import calibrate, finding_probability

READINGS = ("proto", "anomaly")  # what --classifier auto chooses between
# Prototypes replace the anomaly reading when the separation of their left-out scores (the
# gap between the class means in pooled standard deviations, d′) exceeds the anomaly
# reading's by more than this. Chosen on two tasks at once (docs/recipe.md): real EL cells,
# where the anomaly reading is right and prototypes are 16 points worse, and radiograph
# nodules, where it is the other way round (40 points). Accuracy and AUC, which the rule
# read before, saturate on ten images: a reading at chance often separates five and five
# perfectly, a d′ rarely looks large by luck.
SEPARATION_MARGIN = 1.0
MAX_SEPARATION = 1e3  # classes whose left-out scores do not overlap at all, no spread


def as_anomaly_maps(maps: np.ndarray) -> np.ndarray:
    m = np.asarray(maps, np.float32)
    if m.ndim != 3:
        raise ClassifierError(f"an anomaly classifier takes anomaly maps N×h×w (the model's "
                              f"anomaly_map output), got an array of shape {m.shape}")
    return m


def evidence(maps: np.ndarray) -> np.ndarray:
    """Each image's evidence of a finding: the largest value of its anomaly map."""
    m = as_anomaly_maps(maps)
    return m.reshape(len(m), -1).max(axis=1)


def fit_anomaly(maps: np.ndarray, labels: Sequence[str], classes: Sequence[str],
                normal_class: str | None, C: float = 1.0) -> dict:
    """The classifier's ``params`` (JSON-ready): the normal class, the map's grid and the
    calibration of the evidence."""
    m = as_anomaly_maps(maps)
    if len(classes) != 2:
        raise ClassifierError(f"the anomaly reading tells normal from a finding: it needs "
                              f"exactly two classes, got {len(classes)} "
                              f"({', '.join(classes)}); use --classifier proto")
    normal = normal_class_of(classes, normal_class)
    y = np.asarray(labels)
    e = evidence(m)
    return {"normal_class": normal, "grid": list(m.shape[1:]),
            "calibration": calibrate(e[y == normal], e[y != normal], C)}


def predict_anomaly(params: dict, classes: Sequence[str], maps: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(N×2 class probabilities in the order of ``classes``, the N×h×w maps as heatmaps:
    ``finding_probability(params["calibration"], map)`` is P(finding) at each position,
    what :class:`~cossl_edge.runtime.heatmaps.HeatmapWriter` draws)."""
    m = as_anomaly_maps(maps)
    if list(m.shape[1:]) != list(params["grid"]):
        raise ClassifierError(f"anomaly maps of {m.shape[1]}×{m.shape[2]} do not match the "
                              f"classifier's {params['grid'][0]}×{params['grid'][1]}: use "
                              "the model it was fitted on")
    p = finding_probability(params["calibration"], evidence(m))
    normal = list(classes).index(params["normal_class"])
    proba = np.zeros((len(m), 2))
    proba[:, normal], proba[:, 1 - normal] = 1.0 - p, p
    return proba, m


@dataclass
class AnomalyHead:
    """One calibrated threshold on the maximum of the model's anomaly map; the map is the
    heatmap."""

    C: float = 1.0  # inverse L2 strength of the one-feature calibration

    kind: ClassVar[str] = "anomaly"
    reads: ClassVar[str] = "anomaly_map"
    maps: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: dict) -> AnomalyHead:
        return cls(settings.get("C", 1.0))

    def settings(self) -> dict:
        return {"C": self.C}

    def fit(self, x: np.ndarray, labels: Sequence[str], classes: list[str],
            centering: np.ndarray | None, normal_class: str | None) -> tuple[dict, None]:
        return fit_anomaly(x, labels, classes, normal_class, self.C), None  # no centring

    def proba(self, params: dict, classes: list[str], centering, x: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        return predict_anomaly(params, classes, x)

    @staticmethod
    def check(params: dict, classes: list[str]) -> str | None:
        return lists_problem(params, ("grid",)) or calibration_problem(params, classes)


# -- choosing the reading from the support ------------------------------------------------
def left_out_scores(kind: str, x: np.ndarray, y: np.ndarray, normal: str,
                    centering: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each support image scored without its own label: (finding scores, predicted finding,
    whether it could be left out — not when it is its class's only image). ``proto`` (x:
    embeddings): cosine to the finding prototype minus cosine to the normal one, both built
    from the other images; ``anomaly`` (x: evidence): the evidence itself, which no label
    made, and the threshold midway between the other images' class means."""
    find = y != normal
    score = np.asarray(x, np.float64).copy() if kind == "anomaly" else np.zeros(len(y))
    pred, valid = np.zeros(len(y), bool), np.zeros(len(y), bool)
    for j in range(len(y)):
        rest = np.arange(len(y)) != j
        if not ((rest & find).any() and (rest & ~find).any()):
            continue
        valid[j] = True
        if kind == "proto":
            z = cl2n(x, centering if centering is not None else x[rest].mean(0))
            pf, pn = (cl2n(z[rest & m].mean(0, keepdims=True))[0] for m in (find, ~find))
            score[j] = float(z[j] @ pf - z[j] @ pn)
            pred[j] = score[j] > 0
        else:
            m_f, m_n = score[rest & find].mean(), score[rest & ~find].mean()
            pred[j] = (score[j] > (m_f + m_n) / 2) == (m_f > m_n)
    return score, pred, valid


def separation(score: np.ndarray, finding: np.ndarray) -> float:
    """d′ of the scores: (mean of the finding class − mean of the normal class) over their
    pooled standard deviation; 0 when a class is missing, capped at ``MAX_SEPARATION``."""
    s = np.asarray(score, np.float64)
    f, n = s[finding], s[~finding]
    if len(f) == 0 or len(n) == 0:
        return 0.0
    gap = float(f.mean() - n.mean())
    spread = float(np.sqrt((f.var() + n.var()) / 2))
    if spread <= 1e-12 * max(1.0, abs(gap)):
        return float(np.sign(gap) * MAX_SEPARATION)
    return float(np.clip(gap / spread, -MAX_SEPARATION, MAX_SEPARATION))


def support_fit(kind: str, x: np.ndarray, y: np.ndarray, normal: str,
                centering: np.ndarray | None) -> dict[str, float]:
    """How well a reading separates the support, each image left out: its balanced accuracy
    (over the images that can be left out), the AUC of its scores (normal class against
    the finding class) and their separation (:func:`separation`, over the images that can
    be left out)."""
    score, pred, valid = left_out_scores(kind, x, y, normal, centering)
    find = y != normal
    recalls = [float((pred[m & valid] == find[m & valid]).mean()) for m in (find, ~find)
               if (m & valid).any()]
    return {"accuracy": float(np.mean(recalls)) if recalls else 0.5,
            "auc": binary_auc(score, find),
            "separation": round(separation(score[valid], find[valid]), 4)}


def choose_reading(readings: dict[str, np.ndarray], labels: Sequence[str],
                   centering: np.ndarray | None = None,
                   normal_class: str | None = None) -> tuple[str, dict]:
    """``proto`` or ``anomaly`` for this support set, and how each separated it. ``readings``
    holds ``embedding`` (N×D) and, when the model has one, ``anomaly_map`` (N×h×w). The
    anomaly reading competes only for two classes one of which is normal; prototypes take
    the task when the separation of their left-out scores exceeds the anomaly reading's by
    more than ``SEPARATION_MARGIN``. On ten images a small lead is mostly chance, and the two
    readings fail differently: prototypes in a high-dimensional space overfit a small
    support, one threshold on a statistic fitted without labels hardly can."""
    y = np.asarray(labels)
    classes = sorted(set(y.tolist()))
    if "anomaly_map" not in readings or len(classes) != 2:
        return "proto", {}
    try:
        normal = normal_class_of(classes, normal_class)
    except ClassifierError:
        return "proto", {}
    fits = {"proto": support_fit("proto", np.asarray(readings["embedding"], np.float32), y,
                                 normal, centering),
            "anomaly": support_fit("anomaly", evidence(readings["anomaly_map"]), y, normal,
                                   None)}
    lead = fits["proto"]["separation"] - fits["anomaly"]["separation"]
    return ("proto" if lead > SEPARATION_MARGIN else "anomaly"), fits
