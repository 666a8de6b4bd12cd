"""The classifier file: an envelope around one head's ``params`` (classes, centring vector,
abstain threshold, the model it is bound to), and its schema in one place.

Saved as JSON with the ONNX file's sha256 and contract, so it is never applied to another
model's readings. Files written before this layout load unchanged (schema 1).

>>> import numpy as np
>>> x = np.array([[1.0, 0.1], [0.9, 0.0], [0.0, 1.0], [0.1, 0.8]])
>>> clf = FewShotClassifier.fit(x, ["a", "a", "b", "b"], kind="proto")
>>> [p.label for p in clf.predict(np.array([[1.0, 0.0], [0.0, 1.0]]))]
['a', 'b']
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cossl_edge.fewshot.errors import ClassifierError
from cossl_edge.fewshot.head import Head
from cossl_edge.fewshot.heads import head_class, kinds, make_head
from cossl_edge.fewshot.normal import normal_class_of
from cossl_edge.fewshot.positions import finding_probability

SCHEMA_VERSION = 1
UNKNOWN = "unknown"


@dataclass
class Prediction:
    label: str  # the best class, or "unknown" below the abstain threshold
    probability: float  # of the best class
    top_k: list[tuple[str, float]]


@dataclass
class FewShotClassifier:
    """A fitted classifier: the head's ``kind`` and ``params`` (JSON-ready lists), and the
    envelope. ``settings`` holds the head's settings (and ``normal_class`` when fit was told
    one that the head's params do not record)."""

    kind: str
    classes: list[str]
    params: dict
    centering: list[float] | None = None
    abstain_threshold: float = 0.0
    model_sha256: str | None = None
    model_path: str | None = None
    contract: dict | None = None
    settings: dict = field(default_factory=dict)

    # -- fitting -------------------------------------------------------------------------
    @classmethod
    def fit(cls, readings: np.ndarray, labels: list[str], kind: str | Head = "proto",
            centering: np.ndarray | None = None, abstain_threshold: float = 0.0,
            normal_class: str | None = None, **options) -> FewShotClassifier:
        """Fit a head on N readings (N×D embeddings; N×D×h×w local maps; N×h×w anomaly
        maps) and N string labels.

        kind: a head, or its name with ``options`` for its constructor (C, k, temperature,
            top_positions, scoring, pool: :func:`~cossl_edge.fewshot.heads.make_head`).
        centering: the model's centring vector; ``None``: the head's choice (the support).
        normal_class: the class without a finding (the map heads need one; by default the
            one named like a normal class), recorded for the node's series rule.
        """
        head = make_head(kind, **options) if isinstance(kind, str) else kind
        x = np.asarray(readings, np.float32)
        if len(x) != len(labels) or len(x) == 0:
            raise ClassifierError(f"need one label per embedding, got {len(x)} and {len(labels)}")
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ClassifierError("a classifier needs at least two classes in the support set")
        params, center = head.fit(x, labels, classes, centering, normal_class)
        settings = head.settings()
        if normal_class is not None and "normal_class" not in params:
            settings["normal_class"] = normal_class_of(classes, normal_class)
        return cls(head.kind, classes, params, None if center is None else center.tolist(),
                   abstain_threshold, settings=settings)

    # -- predicting ----------------------------------------------------------------------
    @property
    def head(self) -> Head:
        return head_class(self.kind).from_settings(self.settings)

    @property
    def reads(self) -> str:
        """The model output this classifier takes (embedding, local_map, anomaly_map)."""
        return head_class(self.kind).reads

    @property
    def has_heatmaps(self) -> bool:
        return head_class(self.kind).maps

    @property
    def normal_class(self) -> str | None:
        """The normal class recorded at fit (None when fit neither needed nor was told one)."""
        name = self.params.get("normal_class") or self.settings.get("normal_class")
        return name if isinstance(name, str) else None

    def apply(self, readings: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(N×K class probabilities in the order of ``classes``, N×h×w heatmaps for the map
        heads, else None)."""
        center = None if self.centering is None else np.asarray(self.centering, np.float32)
        return self.head.proba(self.params, self.classes, center, readings)

    def predict_proba(self, readings: np.ndarray) -> np.ndarray:
        """N×K class probabilities (columns in the order of ``classes``)."""
        return self.apply(readings)[0]

    def predict_local(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The map heads (local, anomaly): (N×K probabilities, N×h×w heatmaps)."""
        if not self.has_heatmaps:
            raise ClassifierError(f"heatmaps need a local or anomaly classifier, this one "
                                  f"is {self.kind!r}: fit with --classifier anomaly or "
                                  "--classifier local")
        return self.apply(maps)

    def finding_probability(self, heatmap: np.ndarray) -> np.ndarray:
        """The map heads: the calibrated P(finding) of each heatmap value (the scale the
        pictures and the overlays colour by)."""
        return finding_probability(self.params["calibration"], np.asarray(heatmap, np.float64))

    def predict(self, readings: np.ndarray, top_k: int = 3,
                abstain_threshold: float | None = None) -> list[Prediction]:
        """Best label per row, ``unknown`` when its probability is below the threshold."""
        return self.decide(self.predict_proba(readings), top_k, abstain_threshold)

    def decide(self, proba: np.ndarray, top_k: int = 3,
               abstain_threshold: float | None = None) -> list[Prediction]:
        """Predictions from N×K probabilities (what :meth:`predict` does after them)."""
        thr = self.abstain_threshold if abstain_threshold is None else abstain_threshold
        order = np.argsort(-proba, axis=1)[:, :top_k]
        out = []
        for row, idx in zip(proba, order, strict=True):
            best = float(row[idx[0]])
            label = self.classes[idx[0]] if best >= thr else UNKNOWN
            out.append(Prediction(label, best, [(self.classes[i], float(row[i])) for i in idx]))
        return out

    # -- files ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "kind": self.kind, "classes": self.classes,
                "params": self.params, "centering": self.centering,
                "abstain_threshold": self.abstain_threshold, "model_sha256": self.model_sha256,
                "model_path": self.model_path, "contract": self.contract,
                "settings": self.settings}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FewShotClassifier:
        path = Path(path)
        if not path.is_file():
            raise ClassifierError(f"{path}: classifier file not found; check the path")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ClassifierError(f"{path}: not a classifier JSON file ({e})") from e
        if not isinstance(d, dict) or "schema_version" not in d:
            raise ClassifierError(f"{path}: not a cossl-edge classifier (no schema_version)")
        if int(d["schema_version"]) > SCHEMA_VERSION:
            raise ClassifierError(f"{path}: schema {d['schema_version']} is newer than this "
                                  f"cossl-edge reads ({SCHEMA_VERSION}); upgrade cossl-edge")
        d.pop("schema_version")
        problem = schema_problem(d)
        if problem:
            raise ClassifierError(f"{path}: malformed classifier file ({problem}); refit it")
        try:
            return cls(**d)
        except TypeError as e:
            raise ClassifierError(f"{path}: malformed classifier file ({e}); refit it") from e

    def bind_model(self, sha256: str, model_path: str | Path, contract: dict) -> None:
        """Record the model this classifier's readings come from."""
        self.model_sha256, self.model_path, self.contract = sha256, str(model_path), contract

    def check_model(self, sha256: str, model_path: str | Path, source: str | Path = "") -> None:
        """Refuse a model other than the one the classifier was fitted on."""
        if self.model_sha256 is not None and self.model_sha256 != sha256:
            where = f"{source}: " if source else ""
            raise ClassifierError(
                f"{where}fitted on another model (sha256 {self.model_sha256[:12]}…), not "
                f"{model_path} (sha256 {sha256[:12]}…); refit with `cossl-edge fewshot fit` "
                "on this model, or pass the original model with --model")


def schema_problem(d: dict) -> str | None:
    """The first way ``d`` (a classifier file less its schema_version) differs from the
    schema, or None: the envelope here, the params by the head's own check."""
    if d.get("kind") not in kinds():
        return f"kind must be one of {kinds()}"
    classes = d.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or \
            not all(isinstance(c, str) for c in classes):
        return "classes must be a list of at least two names"
    problem = head_class(d["kind"]).check(d.get("params"), classes)
    if problem:
        return problem
    if not isinstance(d.get("centering"), list | None):
        return "centering must be a list of numbers"
    if not isinstance(d.get("abstain_threshold", 0.0), int | float):
        return "abstain_threshold must be a number"
    if not isinstance(d.get("settings", {}), dict):
        return "settings must be an object"
    return None
