"""Classification of a series with a saved few-shot classifier and the model it was fitted
on, through the model's own preprocessing contract (as ``fewshot predict`` does).

Per image: the class probabilities and a label (``unknown`` below the abstain threshold).
Per series: ``mean`` of the images' probabilities, or ``max``: the probabilities of the most
abnormal image (lowest probability of the normal class when the classifier has one, else the
most confident image), then the same abstain threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cossl_edge.fewshot import UNKNOWN, ClassifierError, FewShotClassifier, normal_class_of
from cossl_edge.runtime import metadata as mm


@dataclass
class ImageResult:
    sop_uid: str
    label: str | None = None
    probability: float | None = None
    probabilities: list[float] | None = None
    reason: str | None = None  # why the image could not be read (never patient data)
    heatmap: list[list[float]] | None = None  # kinds local, anomaly: the h×w map


@dataclass
class SeriesResult:
    label: str
    probability: float
    probabilities: dict[str, float]
    aggregate: str
    key_image: str | None
    images: int
    unreadable: int
    abstained_images: int
    per_image: list[ImageResult] = field(default_factory=list)

    @property
    def abstained(self) -> bool:
        return self.label == UNKNOWN

    def summary(self) -> dict:
        return {"label": self.label, "probability": round(self.probability, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "aggregate": self.aggregate, "images": self.images,
                "unreadable": self.unreadable, "abstained_images": self.abstained_images,
                "abstained": self.abstained}


class SeriesClassifier:
    """The classifier, its encoder and the series rule; built once per node."""

    def __init__(self, classifier_file: Path, model: Path | None = None, threads: int = 1,
                 abstain: float | None = None, aggregate: str = "max",
                 normal_class: str | None = None) -> None:
        from cossl_edge.fewshot.binding import open_predictor

        self.clf, self.predictor = open_predictor(classifier_file, model, threads, False)
        self.encoder = self.predictor.encoder
        self.threshold = self.clf.abstain_threshold if abstain is None else abstain
        self.aggregate = aggregate
        self.normal = _normal_class(self.clf, normal_class, classifier_file)
        self.classifier_sha256 = hashlib.sha256(Path(classifier_file).read_bytes()).hexdigest()
        self.model_version = self.encoder.metadata.get(mm.KEY_VERSION) or "unknown"

    @property
    def identity(self) -> dict:
        """What the SR and the log say about the model (no paths)."""
        return classifier_identity(self.clf, self.encoder.sha256, self.model_version,
                                   self.classifier_sha256, self.threshold, self.normal,
                                   self.aggregate)

    def read(self, path: Path, frames: int = 1) -> np.ndarray:
        """One image of an instance in [0, 1] (a multi-frame object: its middle frame)."""
        from cossl_edge.dicom.pixels import read_frame

        # checked: the SCP ran the header checks on this file before acknowledging it
        return read_frame(path, classified_frame(frames), self.encoder.contract.window,
                          checked=True)

    def classify(self, items: list[tuple], batch_size: int = 32
                 ) -> tuple[list[ImageResult], SeriesResult | None]:
        """(SOP instance UID, file[, number of frames]) → per-image results and the series
        result (None when no image could be read)."""
        from cossl_edge.dicom.header import DicomSkip

        results: list[ImageResult] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            ok, prepared = [], []
            for sop, path, *frames in chunk:
                try:
                    prepared.append(self.encoder.contract.prepare(self.read(path, *frames)))
                    ok.append(sop)
                except (DicomSkip, ValueError, OSError) as e:
                    results.append(ImageResult(sop, reason=str(e)[:200]))
                except Exception as e:  # noqa: BLE001 - a decoder's own error: one image
                    results.append(ImageResult(sop, reason=f"could not be read "
                                               f"({type(e).__name__})"))
            if ok:
                result = self.predictor.predict_prepared(np.stack(prepared))
                proba, heat = result.proba, result.heatmaps
                for j, (sop, row, pred) in enumerate(zip(
                        ok, proba, self.clf.decide(proba, 1, self.threshold), strict=True)):
                    results.append(ImageResult(
                        sop, pred.label, pred.probability, [float(v) for v in row],
                        heatmap=None if heat is None else np.round(heat[j], 5).tolist()))
        return results, self.combine(results)

    @property
    def has_heatmaps(self) -> bool:
        return self.clf.has_heatmaps

    def heatmap_picture(self, path: Path, frames: int, heatmap) -> np.ndarray:
        """H×W×3 uint8: the image as the model saw it (its crop or padding), in grey, red
        where the calibrated P(finding) of a heatmap position is high
        (:func:`cossl_edge.runtime.heatmaps.overlay`)."""
        from cossl_edge.node.capture import display
        from cossl_edge.runtime.heatmaps import overlay

        c = self.encoder.contract
        image = display(self.read(path, frames), c.size, c.resize)
        return overlay(image, self.clf.finding_probability(heatmap))

    def finding_map(self, heatmap, rows: int, cols: int) -> np.ndarray:
        """rows×cols float32: the calibrated P(finding) of each heatmap position (the scale
        the pictures colour by), bilinear onto the source's pixels through the contract's
        crop, padding or stretch (:func:`cossl_edge.node.overlays.resample`)."""
        from cossl_edge.node.overlays import finding_map

        return finding_map(self.clf.params["calibration"], heatmap, rows, cols,
                           self.encoder.contract.resize)

    def combine(self, results: list[ImageResult]) -> SeriesResult | None:
        read = [r for r in results if r.probabilities is not None]
        if not read:
            return None
        p = np.asarray([r.probabilities for r in read], np.float64)
        key = None
        if self.aggregate == "mean":
            series = p.mean(0)
        else:
            i = (int(np.argmin(p[:, self.clf.classes.index(self.normal)])) if self.normal
                 else int(np.argmax(p.max(1))))
            series, key = p[i], read[i].sop_uid
        pred = self.clf.decide(series[None, :], 1, self.threshold)[0]
        return SeriesResult(pred.label, pred.probability,
                            dict(zip(self.clf.classes, map(float, series), strict=True)),
                            self.aggregate, key, len(read), len(results) - len(read),
                            sum(r.label == UNKNOWN for r in read), results)


def classifier_identity(clf: FewShotClassifier, model_sha256: str, model_version: str,
                        classifier_sha256: str, threshold: float, normal: str | None,
                        aggregate: str | None = None) -> dict:
    """What the node's objects say about the model and the classifier (no paths): the SR's
    algorithm parameters, the overlays' software and derivation (``fewshot predict
    --dicom-out`` too, without a series rule: ``aggregate`` None)."""
    return {"model_sha256": model_sha256, "model_version": model_version,
            "classifier_sha256": classifier_sha256, "classifier_kind": clf.kind,
            "classes": list(clf.classes), "abstain_threshold": threshold,
            "aggregate": aggregate, "normal_class": normal}


def classified_frame(frames: int) -> int | None:
    """The frame the node classifies of an instance of ``frames`` frames (0-based): the
    middle one of a multi-frame object, None for a single frame."""
    return frames // 2 if frames > 1 else None


def _normal_class(clf: FewShotClassifier, given: str | None, where: Path) -> str | None:
    """The normal class by ``fewshot fit``'s rule (:func:`~cossl_edge.fewshot.normal.
    normal_class_of`): ``given``, else the one the classifier file recorded, else the one
    named like a normal class; None when there is none (a classifier without one)."""
    try:
        return normal_class_of(clf.classes, given or clf.normal_class, required=False)
    except ClassifierError as e:
        raise ValueError(f"{where}: {e}") from e
