"""Heatmap pictures of the local classifier: the image in grey, red where a finding is likely.

Pillow only (no matplotlib at the edge). Each heatmap position is coloured by the
classifier's calibrated P(finding) of that position alone (the function that turns the
image's evidence into a probability, applied to each a(i)), so the colour means the same on
every image: no red on an image called normal, and red over the positions that made a
finding call. One PNG per image, named by its salted id, and ``heatmaps.csv`` (id, label,
P(finding)) beside them: no file name, path or patient data.

>>> import numpy as np
>>> rgb = overlay(np.full((8, 8, 1), 0.5), np.array([[0.0, 0.0], [0.0, 1.0]]))
>>> rgb.shape, rgb[7, 7].tolist(), rgb[0, 0].tolist()
((8, 8, 3), [230, 25, 25], [128, 128, 128])
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

INDEX = "heatmaps.csv"
RED = np.array([1.0, 0.0, 0.0])
OPACITY = 0.8  # of the red where P(finding) = 1; the grey image stays readable under it


def overlay(image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """A prepared S×S×C image in [0, 1] and an h×w map in [0, 1] → S×S×3 uint8: the image
    in grey, blended with red by the map, bilinearly upsampled to the image's size."""
    gray = np.asarray(image, np.float32)
    gray = gray.mean(axis=-1) if gray.ndim == 3 else gray
    size = (gray.shape[1], gray.shape[0])
    up = Image.fromarray(np.asarray(probability, np.float32)).resize(size, Image.BILINEAR)
    alpha = OPACITY * np.clip(np.asarray(up), 0.0, 1.0)[..., None]
    rgb = (1.0 - alpha) * np.clip(gray, 0.0, 1.0)[..., None] + alpha * RED
    return np.round(255 * rgb).astype(np.uint8)


class HeatmapWriter:
    """Writes ``ID.png`` per image into ``folder``, and ``heatmaps.csv`` at :meth:`close`."""

    def __init__(self, folder: str | Path, classifier) -> None:
        """``classifier``: a map head's classifier (its ``classes``, ``normal_class`` and
        ``finding_probability`` of a heatmap)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.to_probability = classifier.finding_probability
        self.normal = classifier.classes.index(classifier.normal_class)
        self.rows: list[tuple[str, str, str]] = []

    def write(self, ids: list[str], prepared: np.ndarray, heatmaps: np.ndarray,
              proba: np.ndarray, labels: list[str]) -> None:
        """One batch: ids, N×S×S×C prepared images, N×h×w a(i) maps, N×K probabilities and
        the labels given (``unknown`` below the abstain threshold)."""
        for i, image, heat in zip(ids, prepared, heatmaps, strict=True):
            rgb = overlay(image, self.to_probability(heat))
            Image.fromarray(rgb).save(self.folder / f"{i}.png")
        p_finding = 1.0 - np.asarray(proba)[:, self.normal]
        self.rows += [(i, lab, f"{p:.4f}") for i, lab, p in zip(ids, labels, p_finding,
                                                                strict=True)]

    def close(self) -> Path:
        path = self.folder / INDEX
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label", "p_finding"])
            w.writerows(self.rows)
        return path


def read_index(folder: str | Path) -> list[dict]:
    """The rows of a heatmap folder's ``heatmaps.csv`` whose PNG is there, ``p_finding`` as a
    float ([] without the file)."""
    folder = Path(folder)
    if not (folder / INDEX).is_file():
        return []
    rows = []
    with (folder / INDEX).open(newline="") as f:
        for r in csv.DictReader(f):
            try:
                r["p_finding"] = float(r["p_finding"])
            except (KeyError, TypeError, ValueError):
                continue
            if (folder / f"{r.get('id')}.png").is_file():
                rows.append(r)
    return rows
