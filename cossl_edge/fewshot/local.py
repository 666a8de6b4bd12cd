"""The local head: few-shot classification with heatmaps, a memory of the support's local
vectors.

The idea is PatchCore's (Roth et al., "Towards Total Recall in Industrial Anomaly
Detection", CVPR 2022; anomalib's ``PatchcoreModel``): keep the local feature vectors of
normal images and score each position of a query by the distance to its nearest neighbour in
that memory, so a small local finding (a crack, a nodule) is not averaged away by pooling.
Few-shot, the memory is small (shots × h×w vectors), so it is kept whole: no coreset.

1. Every local vector (a position of the model's ``local_map``, N×C×h×w) goes through CL2N:
   subtract the centring vector (the model's, else the mean support local vector), then
   L2-normalise.
2. Memory: all vectors of the normal class's support images; per finding image, its
   ``FINDING_POSITIONS`` most anomalous vectors (the finding; the rest is normal tissue).
3. A query position's score is a(i) = 1 − cosine to its nearest normal-memory vector; the
   heatmap is a on the h×w grid, and the image's evidence is the mean of its
   ``top_positions`` highest a(i) (default 1: the maximum).
4. Calibration at fit, leaving one image out: each normal support image is scored against
   the other normal images' memory (a single normal image against its own other positions),
   each finding image against the whole normal memory. A one-feature L2 logistic regression
   (:mod:`cossl_edge.fewshot.logreg`, inverse strength ``C``) on the standardised evidence gives
   P(finding | evidence); the same function of a(i) colours a heatmap.
5. With several finding classes, P(finding) is shared among them by a softmax (at
   ``temperature``) of the mean best cosine between the query's top positions and each
   finding class's memory.

Scoring ``prototype`` instead compares each CL2N local vector with the class
prototypes of the pooled support embeddings (the model's own pooling, ``mean`` or ``gem``,
done in numpy): a(i) = max over finding classes of cos(z_i, p_f) − cos(z_i, p_normal). It
uses what CO-SSL trains — every local vector carries the image's global embedding — and
in the local-findings benchmark it decided better than the memory and pointed at the
finding more often (docs/recipe.md). Calibration is the same, leaving one image out of
the prototypes. ``memory`` (the default) is the PatchCore scoring above.

Scoring ``hybrid`` adds the two: the prototype score and the distance to the nearest normal
support vector, each standardised by its mean and standard deviation over the positions of
the normal support images (each image scored without itself). A position must look like a
finding class *and* unlike anything normal; on the local-findings benchmark this raised the
local 5-shot accuracy from 62.9% to 70.4% and the heatmaps on the finding from 69% to 86%
(docs/edge.md). The CLI picks ``hybrid`` for a GeM- or max-pooled model (``pretrain
--findings local``), ``memory`` otherwise.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> maps = rng.normal(0, 0.1, (8, 4, 3, 3)) + np.array([1.0, 0, 0, 0])[:, None, None]
>>> maps[4:, :, 1, 2] = [0.0, 3.0, 0.0, 0.0]          # the finding: one position
>>> labels = ["normal"] * 4 + ["crack"] * 4
>>> params, center = fit_local(maps, labels, ["crack", "normal"], None)
>>> proba, heat = predict_local(params, {}, ["crack", "normal"], center, maps[3:5])
>>> proba.argmax(1).tolist(), np.unravel_index(heat[1].argmax(), heat[1].shape)
([1, 0], (np.int64(1), np.int64(2)))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cossl_edge.fewshot.errors import ClassifierError
from cossl_edge.fewshot.head import calibration_problem, lists_problem
from cossl_edge.fewshot.normal import normal_class_of
from cossl_edge.fewshot.positions import (
    anomaly,
    as_maps,
    calibrate,
    class_prototypes,
    evidence,
    finding_probability,
    hybrid_scores,
    left_out_evidence,
    local_vectors,
    prototype_scores,
    rounded,
)
from cossl_edge.runtime.pooling import pooled as pool_maps

FINDING_POSITIONS = 4  # vectors kept per finding image, to tell finding classes apart

SCORINGS = ("prototype", "memory", "hybrid")
# What each scoring's ``params`` hold as lists (the memory scoring writes no "scoring" key).
SCORING_KEYS = {"memory": ("normal_memory", "finding_memory", "finding_labels", "grid"),
                "prototype": ("grid",), "hybrid": ("grid", "normal_memory")}


@dataclass
class LocalHead:
    """Every local vector of the model's ``local_map`` scored (``scoring``: memory, prototype
    or hybrid), the image's evidence calibrated into P(finding); heatmaps of a(i)."""

    C: float = 1.0  # inverse L2 strength of the one-feature calibration
    temperature: float = 0.1  # the split of P(finding) among several finding classes
    top_positions: int = 1  # an image's evidence: the mean of its top a(i)
    scoring: str = "memory"
    pool: str = "mean"  # the model's pooling (the prototype scoring pools the support)

    kind: ClassVar[str] = "local"
    reads: ClassVar[str] = "local_map"
    maps: ClassVar[bool] = True

    @classmethod
    def from_settings(cls, settings: dict) -> LocalHead:
        return cls(settings.get("C", 1.0), float(settings.get("temperature", 0.1)),
                   int(settings.get("top_positions", 1)))

    def settings(self) -> dict:  # scoring and pool are in the params
        return {"C": self.C, "temperature": self.temperature,
                "top_positions": self.top_positions}

    def fit(self, x: np.ndarray, labels: Sequence[str], classes: list[str],
            centering: np.ndarray | None, normal_class: str | None
            ) -> tuple[dict, np.ndarray]:
        return fit_local(x, labels, classes, centering, normal_class, self.top_positions,
                         self.C, self.scoring, self.pool)

    def proba(self, params: dict, classes: list[str], centering, x: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        return predict_local(params, self.settings(), classes, centering, x)

    @staticmethod
    def check(params: dict, classes: list[str]) -> str | None:
        scoring = params.get("scoring") if isinstance(params, dict) else None
        keys = SCORING_KEYS["memory"]
        if scoring in ("prototype", "hybrid"):
            keys = SCORING_KEYS[scoring]
            if not isinstance(params.get("prototypes"), dict) or \
                    set(params["prototypes"]) != set(classes):
                return "params must hold one prototype per class"
            if scoring == "hybrid" and not isinstance(params.get("standardise"), dict):
                return "params must hold the standardise statistics of the hybrid scoring"
        return lists_problem(params, keys) or calibration_problem(params, classes)


def fit_local(maps: np.ndarray, labels: Sequence[str], classes: Sequence[str],
              centering: np.ndarray | None, normal_class: str | None = None,
              top_positions: int = 1, C: float = 1.0, scoring: str = "memory",
              pool: str = "mean") -> tuple[dict, np.ndarray]:
    """The classifier's ``params`` (JSON-ready) and its centring vector."""
    x = as_maps(maps)
    normal = normal_class_of(classes, normal_class)
    if scoring not in SCORINGS:
        raise ClassifierError(f"local scoring must be one of {SCORINGS}, got {scoring!r}")
    if scoring in ("prototype", "hybrid"):
        return _fit_prototype(x, np.asarray(labels), normal, centering, top_positions, C,
                              pool, hybrid=scoring == "hybrid")
    center = np.asarray(centering if centering is not None else x.mean(axis=(0, 2, 3)),
                        np.float32)
    z = local_vectors(x, center)
    y = np.asarray(labels)
    zn, zf, yf = z[y == normal], z[y != normal], y[y != normal]
    memory = zn.reshape(-1, z.shape[2])
    a_find = anomaly(zf, memory)
    calibration = calibrate(left_out_evidence(zn, top_positions),
                             evidence(a_find, top_positions), C)
    keep = np.argsort(-a_find, axis=1)[:, :FINDING_POSITIONS]
    finding_memory = np.take_along_axis(zf, keep[..., None], axis=1)
    params = {"normal_class": normal, "grid": list(x.shape[2:]),
              "normal_memory": rounded(memory),
              "finding_memory": rounded(finding_memory.reshape(-1, z.shape[2])),
              "finding_labels": np.repeat(yf, keep.shape[1]).tolist(),
              "calibration": calibration}
    return params, center


def _fit_prototype(x: np.ndarray, y: np.ndarray, normal: str, centering, top: int, C: float,
                   pool: str, hybrid: bool = False) -> tuple[dict, np.ndarray]:
    pooled = pool_maps(x, pool)  # the model's own pooling
    center = np.asarray(centering if centering is not None else pooled.mean(0), np.float32)
    z = local_vectors(x, center)
    if (y == normal).sum() < 2 or (y != normal).sum() < 1:
        raise ClassifierError(f"the {'hybrid' if hybrid else 'prototype'} scoring needs at "
                              "least two normal images and one with a finding in the "
                              "support set")
    n = len(x)
    proto_a = np.zeros(z.shape[:2], np.float32)  # each image against prototypes without it
    memory_a = np.zeros(z.shape[:2], np.float32)  # ... and against the other normals' vectors
    for j in range(n):
        rest = np.arange(n) != j
        if len(set(y[rest])) < len(set(y)):
            rest = np.ones(n, bool)  # a class of one image keeps it
        proto_a[j] = prototype_scores(z[j:j + 1], class_prototypes(pooled[rest], y[rest], center),
                                      normal)[0]
        if hybrid:
            others = rest & (y == normal)
            memory_a[j] = anomaly(z[j:j + 1], z[others].reshape(-1, z.shape[2]))[0]
    protos = class_prototypes(pooled, y, center)
    params = {"scoring": "prototype", "normal_class": normal, "pool": pool,
              "grid": list(x.shape[2:]),
              "prototypes": {c: rounded(p) for c, p in protos.items()}}
    a = proto_a
    if hybrid:
        params["scoring"] = "hybrid"
        params["normal_memory"] = rounded(z[y == normal].reshape(-1, z.shape[2]))
        params["standardise"] = {
            "prototype": [float(proto_a[y == normal].mean()),
                          float(max(proto_a[y == normal].std(), 1e-6))],
            "memory": [float(memory_a[y == normal].mean()),
                       float(max(memory_a[y == normal].std(), 1e-6))]}
        a = hybrid_scores(proto_a, memory_a, params["standardise"])
    left_out = evidence(a, top)
    params["calibration"] = calibrate(left_out[y == normal], left_out[y != normal], C)
    return params, center


def predict_local(params: dict, settings: dict, classes: Sequence[str],
                  centering: Sequence[float] | np.ndarray | None,
                  maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N×K class probabilities in the order of ``classes``, N×h×w heatmaps of a(i))."""
    center = None if centering is None else np.asarray(centering, np.float32)
    maps = as_maps(maps)
    z = local_vectors(maps, center)
    n, (h, w) = len(z), maps.shape[2:]
    if params.get("scoring") in ("prototype", "hybrid"):
        return _predict_prototype(params, settings, classes, z, n, h, w)
    if [h, w] != list(params["grid"]) or z.shape[2] != len(params["normal_memory"][0]):
        raise ClassifierError(f"local maps of {z.shape[2]}×{h}×{w} do not match the "
                              f"classifier's {len(params['normal_memory'][0])}×"
                              f"{params['grid'][0]}×{params['grid'][1]}: use the model it "
                              "was fitted on")
    top = int(settings.get("top_positions", 1))
    a = anomaly(z, np.asarray(params["normal_memory"], np.float32))
    p_find = finding_probability(params["calibration"], evidence(a, top))
    proba = np.zeros((n, len(classes)))
    proba[:, list(classes).index(params["normal_class"])] = 1.0 - p_find
    findings = sorted(set(params["finding_labels"]))
    share = _finding_share(z, a, params, findings, top, float(settings.get("temperature", 0.1)))
    for j, name in enumerate(findings):
        proba[:, list(classes).index(name)] = p_find * share[:, j]
    return proba, a.reshape(n, h, w)


def _predict_prototype(params: dict, settings: dict, classes: Sequence[str], z: np.ndarray,
                       n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    protos = {c: np.asarray(p, np.float32) for c, p in params["prototypes"].items()}
    if [h, w] != list(params["grid"]) or z.shape[2] != len(next(iter(protos.values()))):
        raise ClassifierError(f"local maps of {z.shape[2]}×{h}×{w} do not match the "
                              f"classifier's: use the model it was fitted on")
    normal = params["normal_class"]
    a = prototype_scores(z, protos, normal)
    if params.get("scoring") == "hybrid":
        a = hybrid_scores(a, anomaly(z, np.asarray(params["normal_memory"], np.float32)),
                    params["standardise"])
    p_find = finding_probability(params["calibration"],
                                 evidence(a, int(settings.get("top_positions", 1))))
    proba = np.zeros((n, len(classes)))
    proba[:, list(classes).index(normal)] = 1.0 - p_find
    findings = [c for c in classes if c != normal]
    sims = np.stack([(z @ protos[f]).max(axis=1) for f in findings], axis=1)
    t = float(settings.get("temperature", 0.1))
    e = np.exp((sims - sims.max(axis=1, keepdims=True)) / t)
    share = e / e.sum(axis=1, keepdims=True)
    for j, f in enumerate(findings):
        proba[:, list(classes).index(f)] = p_find * share[:, j]
    return proba, a.reshape(n, h, w)


def _finding_share(z: np.ndarray, a: np.ndarray, params: dict, findings: list[str], top: int,
                   temperature: float) -> np.ndarray:
    """N×F: how P(finding) splits among the finding classes (all to one when F = 1)."""
    if len(findings) == 1:
        return np.ones((len(z), 1))
    memory = np.asarray(params["finding_memory"], np.float32)
    owner = np.asarray(params["finding_labels"])
    worst = np.take_along_axis(z, np.argsort(-a, axis=1)[:, :top, None], axis=1)  # N×top×C
    sims = np.stack([np.einsum("ntc,mc->ntm", worst, memory[owner == f]).max(2).mean(1)
                     for f in findings], axis=1)
    e = np.exp((sims - sims.max(axis=1, keepdims=True)) / temperature)
    return e / e.sum(axis=1, keepdims=True)
