"""Few-shot normal-vs-finding on the model's anomaly map, and the choice of a reading.

The exported model's ``anomaly_map`` (N×h×w) says, position by position, how far an image
departs from the normal model of the unlabeled training images
(:mod:`cossl_edge.training.normal_stats`). No label went into it, so a few labelled
images only have to place one threshold:

1. An image's evidence is the maximum of its map (the most anomalous place).
2. A one-feature L2 logistic regression on the support's evidence (normal class against
   the finding class, :func:`cossl_edge.local_scores.calibrate`) gives P(finding); the same
   function of each position's value colours the heatmap.

Which reading of the model suits a task — the pooled embedding's prototypes (classes that
differ as wholes) or the anomaly map (a finding that is a departure from the usual image) —
is chosen from the support itself by :func:`choose_reading`: each is scored leaving one
support image out, and the better one is kept.

>>> import numpy as np
>>> maps = np.zeros((6, 2, 2), np.float32); maps[3:, 1, 1] = 4.0
>>> params = fit_anomaly(maps, ["ok"] * 3 + ["crack"] * 3, ["crack", "ok"], None)
>>> proba, heat = predict_anomaly(params, ["crack", "ok"], maps[[0, 4]])
>>> proba.argmax(1).tolist(), bool(heat[1, 1, 1] > heat[1, 0, 0])
([1, 0], True)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cossl_edge.fewshot_base import ClassifierError, cl2n, normal_class_of
from cossl_edge.local_scores import calibrate, finding_probability

READINGS = ("proto", "anomaly")  # what --classifier auto chooses between
# Prototypes replace the anomaly reading only when they leave out clearly fewer errors: a
# quarter of the support's balanced accuracy. On the real EL scans the choice with no margin
# took prototypes in 1 episode of 6 and lost 2.9 points 5-shot to the anomaly reading alone;
# with 0.1, 0.2, 0.3: 2.0, 1.0, 0.4 points (docs/recipe.md). A task whose classes differ as
# wholes still gets them: there the anomaly reading leaves out about half the support wrong.
AUTO_MARGIN = 0.25


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
    what :class:`~cossl_edge.heatmaps.HeatmapWriter` draws)."""
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


# -- choosing the reading from the support ------------------------------------------------
def left_out_accuracy(kind: str, x: np.ndarray, y: np.ndarray,
                      centering: np.ndarray | None) -> float:
    """Balanced accuracy on the support, each image predicted by a classifier fitted on
    the others (``proto``: x are embeddings; ``anomaly``: the evidence of each map)."""
    classes = sorted(set(y.tolist()))
    hits = {c: [] for c in classes}
    for j in range(len(y)):
        rest = np.arange(len(y)) != j
        if any((y[rest] == c).sum() == 0 for c in classes):
            continue  # a class of one image cannot be left out
        if kind == "proto":
            center = centering if centering is not None else x[rest].mean(0)
            z = cl2n(x, center)
            protos = cl2n(np.stack([z[rest & (y == c)].mean(0) for c in classes]))
            pred = classes[int(np.argmax(protos @ z[j]))]
        else:
            means = {c: float(x[rest & (y == c)].mean()) for c in classes}
            pred = min(classes, key=lambda c: abs(x[j] - means[c]))
        hits[y[j]].append(pred == y[j])
    scored = [np.mean(h) for h in hits.values() if h]
    return float(np.mean(scored)) if scored else 0.0


def choose_reading(readings: dict[str, np.ndarray], labels: Sequence[str],
                   centering: np.ndarray | None = None,
                   normal_class: str | None = None) -> tuple[str, dict[str, float]]:
    """``proto`` or ``anomaly`` for this support set, and each one's left-out balanced
    accuracy. ``readings`` holds ``embedding`` (N×D) and, when the model has one,
    ``anomaly_map`` (N×h×w). The anomaly reading competes only for two classes one of
    which is normal, and keeps the task unless prototypes score ``AUTO_MARGIN`` higher: its
    one threshold on a statistic fitted without labels overfits a small support far less
    than prototypes in a 100-dimensional space, so a small lead of the prototypes on ten
    images is mostly chance."""
    y = np.asarray(labels)
    scores = {"proto": left_out_accuracy("proto", np.asarray(readings["embedding"],
                                                             np.float32), y, centering)}
    classes = sorted(set(y.tolist()))
    if "anomaly_map" in readings and len(classes) == 2:
        try:
            normal_class_of(classes, normal_class)
        except ClassifierError:
            return "proto", scores
        scores["anomaly"] = left_out_accuracy("anomaly", evidence(readings["anomaly_map"]),
                                              y, None)
        if scores["proto"] < scores["anomaly"] + AUTO_MARGIN:
            return "anomaly", scores
    return "proto", scores
