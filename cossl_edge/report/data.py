"""What the run report (``cossl_edge.report``) reads: ``metrics.jsonl``, the JSON files of a
run directory, few-shot results, and embeddings of its images by the exported encoder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cossl_edge import rundir

MAP_POINTS = 600
SHOTS = (1, 5, 10)


class ReportError(ValueError):
    """A run directory or input the report cannot use (the message names the fix)."""


@dataclass
class Embedded:
    """Images (prepared, N×S×S×C in [0, 1]), their embeddings, labels (or None)."""

    images: np.ndarray
    vectors: np.ndarray
    labels: list[str] | None
    source: str  # a description without paths


def read_metrics(path: Path) -> list[dict]:
    """The records of ``metrics.jsonl``; a line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def find_model(run: Path, model: str | Path | None) -> Path | None:
    if model is not None:
        if not Path(model).is_file():
            raise ReportError(f"{model}: model file not found; pass an ONNX file from "
                              "cossl-edge export or leave --model out")
        return Path(model)
    for name in ("encoder.onnx", "encoder.int8.onnx"):
        if (run / name).is_file():
            return run / name
    return None


def embed_for_report(run: Path, data: str | Path | None, labels_csv: str | Path | None,
                     model: str | Path | None) -> Embedded | None:
    """Embeddings for the map, the gallery and the few-shot curve (None without a model)."""
    path = find_model(run, model)
    if path is None:
        if data is not None:
            raise ReportError(f"{run}: no encoder.onnx to embed --data with; run "
                              "cossl-edge export on the run first, or pass --model")
        return None
    from cossl_edge.runtime.encoder import Encoder

    encoder = Encoder(path)
    if data is not None:
        return _embed_labelled(encoder, Path(data), labels_csv)
    calib = run / rundir.CALIBRATION
    if not calib.is_file():
        return None
    images = np.load(calib, allow_pickle=False).astype(np.float32)
    return Embedded(images, encoder.embed_prepared(images), None,
                    f"{len(images)} unlabelled training images (calibration.npy)")


def _embed_labelled(encoder, data: Path, labels_csv: str | Path | None) -> Embedded:
    from cossl_edge.sources import labelled_samples, load_many

    samples, labels, _ = labelled_samples(data, labels_csv)
    if len(samples) > MAP_POINTS:  # a fixed pick keeps the page small and quick
        pick = np.sort(np.random.default_rng(0).choice(len(samples), MAP_POINTS, False))
        samples, labels = [samples[i] for i in pick], [labels[i] for i in pick]
    images, kept, _ = load_many(samples, encoder.contract)
    if len(images) == 0:
        raise ReportError(f"{data}: no readable labelled images; check --data")
    return Embedded(images, encoder.embed_prepared(images), [labels[i] for i in kept],
                    f"{len(images)} labelled images")


def fewshot_curves(run: Path, emb: Embedded | None) -> dict[str, dict[int, tuple[float, float]]]:
    """encoder name → {shots: (accuracy, ci95)} from fewshot*.json, else computed."""
    curves: dict[str, dict[int, tuple[float, float]]] = {}
    for path in sorted(run.glob("fewshot*.json")):
        data = read_json(path) or {}
        results = data.get("encoders", {"": data}) if "shots" not in data else {"": data}
        for name, res in results.items():
            points = _points(res)
            if points:
                curves[name or path.stem] = points
            # the floors fewshot eval --json keeps beside the model, on the same episodes
            for key, label in (("raw_pixel_floor", "raw pixels"),
                               ("init_floor", "before adaptation")):
                floor = _points(res.get(key)) if isinstance(res, dict) else {}
                if floor:
                    curves[f"{name or path.stem}: {label}" if name else label] = floor
    if curves or emb is None or emb.labels is None:
        return curves
    from cossl_edge.evaluation.episodes import EpisodeError, evaluate_episodes

    for k in SHOTS:
        try:
            res = evaluate_episodes(emb.vectors, emb.labels, shots=(k,), episodes=100)
        except EpisodeError:
            break
        curves.setdefault("this encoder", {}).update(_points(res))
    return curves


def _points(result: object) -> dict[int, tuple[float, float]]:
    if not isinstance(result, dict) or not isinstance(result.get("shots"), dict):
        return {}
    return {int(k): (float(v["accuracy"]), float(v.get("ci95", 0.0)))
            for k, v in result["shots"].items() if isinstance(v, dict) and "accuracy" in v}
