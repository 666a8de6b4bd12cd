"""``fewshot predict --dicom-out``: the node's Parametric Maps and Segmentations written as
files for DICOM inputs, from the heatmaps of a batch run, with the builders
(:func:`cossl_edge.node.overlays.build_overlays`) and the identity the node uses: per series,
the images (or frames) called a finding, one object where they share a geometry.

Files: ``SERIES-KIND-OBJECT.dcm`` (salted ids of the series and of the object's SOP
Instance UID, no patient data in a name) and ``overlays.csv``: file, kind, frames and the
ids (those of the predictions CSV) of the images each object holds.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

from cossl_edge.privacy import salted_id

INDEX = "overlays.csv"


class OverlayWriter:
    """Collects the images called a finding batch by batch (their h×w heatmaps, small), and
    at :meth:`close` builds and writes per series the objects ``kinds`` names."""

    def __init__(self, folder: str | Path, classifier, identity: dict, resize_mode: str,
                 kinds: tuple[str, ...]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.calibration = classifier.params["calibration"]
        self.classes = list(classifier.classes)
        self.normal = classifier.params.get("normal_class")
        self.identity, self.mode, self.kinds = identity, resize_mode, kinds
        self.found: dict[str, list[tuple]] = {}  # series UID → (ref, label, P(finding), map)
        self.not_dicom = 0  # images called a finding that are not DICOM
        self.left_out: Counter = Counter()  # (kind, why) → images

    def write(self, refs: list, heatmaps: np.ndarray, proba: np.ndarray, preds: list) -> None:
        """One batch: sample references, N×h×w maps, N×K probabilities, the predictions."""
        from cossl_edge.node.capture import choose
        from cossl_edge.node.classify import ImageResult

        results = [ImageResult(str(i), p.label, p.probability, [float(v) for v in row],
                               heatmap=heat)
                   for i, (p, row, heat) in enumerate(zip(preds, proba, heatmaps, strict=True))]
        for r, p_finding in choose(results, self.normal, self.classes, len(results)):
            ref = refs[int(r.sop_uid)]
            if ref.kind != "dicom":
                self.not_dicom += 1
                continue
            self.found.setdefault(ref.series, []).append((ref, r.label, p_finding,
                                                          np.asarray(r.heatmap)))

    def close(self) -> list[tuple[str, str, int, str]]:
        """Build and write every series' objects and the index → its rows (file, kind,
        frames, ids)."""
        rows = []
        for series_uid, items in self.found.items():
            rows += self._series(series_uid, items)
        with (self.folder / INDEX).open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "kind", "frames", "ids"])
            w.writerows(rows)
        self.found = {}
        return rows

    def _series(self, series_uid: str, items: list[tuple]) -> list[tuple]:
        from cossl_edge.dicom.header import pydicom_quiet
        from cossl_edge.node.overlay_frames import OverlayFrame, OverlayUnavailable
        from cossl_edge.node.overlays import build_overlays, finding_map
        from cossl_edge.node.structured_report import encode, read_header_dataset

        headers, frames, ids = {}, [], {}
        for ref, label, p_finding, heat in items:
            if ref.path not in headers:
                with pydicom_quiet():
                    headers[ref.path] = read_header_dataset(ref.path)
            h = headers[ref.path]
            frame = ref.frame if int(h.get("NumberOfFrames") or 1) > 1 else None
            prob = finding_map(self.calibration, heat, int(h.Rows), int(h.Columns), self.mode)
            frames.append(OverlayFrame(h, frame, prob, label, p_finding))
            ids[id(frames[-1])] = ref.sample_id()
        rows = []
        for built in build_overlays(frames, self.kinds, self.identity, series_uid):
            if built.dataset is None:
                why = str(built.error) if isinstance(built.error, OverlayUnavailable) \
                    else f"could not be built ({type(built.error).__name__})"
                self.left_out[(built.kind, why)] += len(built.frames)
                continue
            ds = built.dataset
            name = f"{salted_id(series_uid)}-{built.kind}-{salted_id(str(ds.SOPInstanceUID))}.dcm"
            (self.folder / name).write_bytes(encode(ds))
            rows.append((name, built.kind, len(built.frames),
                         ";".join(ids[id(f)] for f in built.frames)))
        return rows
