"""Few-shot classifiers on embeddings: CL2N prototypes, logistic regression, kNN; and on
local maps: ``local``, a memory of local vectors that also gives heatmaps
(:mod:`cossl_edge.local_fewshot`).

Every classifier first applies CL2N (SimpleShot, Wang et al. 2019): subtract the model's
centring vector, then L2-normalise. The classifier is saved as JSON with the ONNX file's
sha256 and contract, so it is never applied to another model's embeddings.

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

from cossl_edge.fewshot_base import ClassifierError, cl2n  # noqa: F401  (re-exported)
from cossl_edge.logreg import fit_logistic, predict_logistic_proba

SCHEMA_VERSION = 1
KINDS = ("proto", "logreg", "knn", "local", "anomaly")
# What each kind reads of the model: the model output it is fitted and applied on.
READS = {"proto": "embedding", "logreg": "embedding", "knn": "embedding",
         "local": "local_map", "anomaly": "anomaly_map"}
UNKNOWN = "unknown"


@dataclass
class Prediction:
    label: str  # the best class, or "unknown" below the abstain threshold
    probability: float  # of the best class
    top_k: list[tuple[str, float]]


@dataclass
class FewShotClassifier:
    """A fitted classifier. ``params`` holds what the kind needs (JSON-ready lists)."""

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
    def fit(cls, embeddings: np.ndarray, labels: list[str], kind: str = "proto",
            centering: np.ndarray | None = None, C: float = 1.0, k: int = 5,
            temperature: float = 0.1, abstain_threshold: float = 0.0,
            normal_class: str | None = None, top_positions: int = 1,
            scoring: str = "memory", pool: str = "mean") -> FewShotClassifier:
        """Fit on N×D embeddings (kind ``local``: N×D×h×w local maps) and N string labels.

        centering: the model's centring vector; ``None`` centres on the support mean.
        C: inverse L2 strength of the logistic regression (scikit-learn's meaning); for
            ``local``, of its one-feature calibration.
        k: neighbours for kNN. temperature: softmax temperature on cosine similarities
            (prototypes, kNN votes, ``local``'s choice among finding classes), which turns
            similarities into probabilities.
        normal_class, top_positions, scoring (prototype | memory), pool (the model's
            pooling, mean | gem): ``local`` only (see :mod:`cossl_edge.local_fewshot`).
        """
        if kind not in KINDS:
            raise ClassifierError(f"classifier must be one of {KINDS}, got {kind!r}")
        x = np.asarray(embeddings, np.float32)
        if len(x) != len(labels) or len(x) == 0:
            raise ClassifierError(f"need one label per embedding, got {len(x)} and {len(labels)}")
        classes = sorted(set(labels))
        if len(classes) < 2:
            raise ClassifierError("a classifier needs at least two classes in the support set")
        if kind == "anomaly":
            from cossl_edge.anomaly_fewshot import fit_anomaly

            params = fit_anomaly(x, labels, classes, normal_class, C)
            return cls(kind, classes, params, None, abstain_threshold, settings={"C": C})
        if kind == "local":
            from cossl_edge.local_fewshot import fit_local

            params, center = fit_local(x, labels, classes, centering, normal_class,
                                       top_positions, C, scoring, pool)
            settings = {"C": C, "temperature": temperature, "top_positions": top_positions}
            return cls(kind, classes, params, center.tolist(), abstain_threshold,
                       settings=settings)
        y = np.asarray([classes.index(lab) for lab in labels])
        center = np.asarray(centering if centering is not None else x.mean(0), np.float32)
        z = cl2n(x, center)
        if kind == "proto":
            protos = cl2n(np.stack([z[y == c].mean(0) for c in range(len(classes))]))
            params = {"prototypes": protos.tolist()}
        elif kind == "logreg":
            w, b = fit_logistic(z, y, len(classes), C=C)
            params = {"weights": w.tolist(), "bias": b.tolist()}
        else:
            params = {"support": z.tolist(), "support_labels": y.tolist()}
        settings = {"C": C, "k": k, "temperature": temperature}
        return cls(kind, classes, params, center.tolist(), abstain_threshold, settings=settings)

    # -- predicting ----------------------------------------------------------------------
    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """N×K class probabilities (columns in the order of ``classes``); kind ``local``
        takes N×D×h×w local maps."""
        if self.kind in ("local", "anomaly"):
            return self.predict_local(embeddings)[0]
        center = None if self.centering is None else np.asarray(self.centering, np.float32)
        z = cl2n(embeddings, center)
        temp = float(self.settings.get("temperature", 0.1))
        if self.kind == "proto":
            return _softmax(z @ np.asarray(self.params["prototypes"], np.float32).T / temp)
        if self.kind == "logreg":
            return predict_logistic_proba(z, np.asarray(self.params["weights"]),
                                          np.asarray(self.params["bias"]))
        return self._knn_proba(z, temp)

    def _knn_proba(self, z: np.ndarray, temp: float) -> np.ndarray:
        from cossl_edge.evaluation.knn import weighted_votes  # it imports cl2n from here

        support = np.asarray(self.params["support"], np.float32)
        votes = weighted_votes(z @ support.T, np.asarray(self.params["support_labels"]),
                               len(self.classes), int(self.settings.get("k", 5)), temp)
        return votes / votes.sum(axis=1, keepdims=True)

    def predict_local(self, local_maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kinds ``local`` and ``anomaly``: (N×K probabilities, N×h×w heatmaps). ``local``
        takes local maps, its heatmap is each position's score a(i); ``anomaly`` takes
        anomaly maps, its heatmap is the map itself."""
        if self.kind == "anomaly":
            from cossl_edge.anomaly_fewshot import predict_anomaly

            return predict_anomaly(self.params, self.classes, local_maps)
        if self.kind != "local":
            raise ClassifierError(f"heatmaps need a local or anomaly classifier, this one "
                                  f"is {self.kind!r}: fit with --classifier anomaly or "
                                  "--classifier local")
        from cossl_edge.local_fewshot import predict_local

        return predict_local(self.params, self.settings, self.classes, self.centering,
                             local_maps)

    def predict(self, embeddings: np.ndarray, top_k: int = 3,
                abstain_threshold: float | None = None) -> list[Prediction]:
        """Best label per row, ``unknown`` when its probability is below the threshold."""
        return self.decide(self.predict_proba(embeddings), top_k, abstain_threshold)

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
        problem = _schema_problem(d)
        if problem:
            raise ClassifierError(f"{path}: malformed classifier file ({problem}); refit it")
        try:
            return cls(**d)
        except TypeError as e:
            raise ClassifierError(f"{path}: malformed classifier file ({e}); refit it") from e

    def bind_model(self, sha256: str, model_path: str | Path, contract: dict) -> None:
        """Record the model this classifier's embeddings come from."""
        self.model_sha256, self.model_path, self.contract = sha256, str(model_path), contract

    def check_model(self, sha256: str, model_path: str | Path, source: str | Path = "") -> None:
        """Refuse a model other than the one the classifier was fitted on."""
        if self.model_sha256 is not None and self.model_sha256 != sha256:
            where = f"{source}: " if source else ""
            raise ClassifierError(
                f"{where}fitted on another model (sha256 {self.model_sha256[:12]}…), not "
                f"{model_path} (sha256 {sha256[:12]}…); refit with `cossl-edge fewshot fit` "
                "on this model, or pass the original model with --model")


# What each kind's ``params`` must hold (lists of numbers, checked before any use).
PARAM_KEYS = {"proto": ("prototypes",), "logreg": ("weights", "bias"),
              "knn": ("support", "support_labels"),
              "local": ("normal_memory", "finding_memory", "finding_labels", "grid"),
              "local-prototype": ("grid",),
              "local-hybrid": ("grid", "normal_memory"),
              "anomaly": ("grid",)}


def _schema_problem(d: dict) -> str | None:
    """The first way ``d`` differs from a classifier file's schema, or None."""
    if d.get("kind") not in KINDS:
        return f"kind must be one of {KINDS}"
    classes = d.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or \
            not all(isinstance(c, str) for c in classes):
        return "classes must be a list of at least two names"
    params = d.get("params")
    keys = PARAM_KEYS[d["kind"]]
    scoring = params.get("scoring") if isinstance(params, dict) else None
    if d["kind"] == "local" and scoring in ("prototype", "hybrid"):
        keys = PARAM_KEYS[f"local-{scoring}"]
        if not isinstance(params.get("prototypes"), dict) or \
                set(params["prototypes"]) != set(classes):
            return "params must hold one prototype per class"
        if scoring == "hybrid" and not isinstance(params.get("standardise"), dict):
            return "params must hold the standardise statistics of the hybrid scoring"
    if not isinstance(params, dict) or any(not isinstance(params.get(k), list) for k in keys):
        return f"params must hold the lists {keys}"
    if d["kind"] in ("local", "anomaly") and not (isinstance(params.get("calibration"), dict) and
                                     params.get("normal_class") in classes):
        return "params must hold the calibration and a normal_class among the classes"
    if not isinstance(d.get("centering"), list | None):
        return "centering must be a list of numbers"
    if not isinstance(d.get("abstain_threshold", 0.0), int | float):
        return "abstain_threshold must be a number"
    if not isinstance(d.get("settings", {}), dict):
        return "settings must be an object"
    return None


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
