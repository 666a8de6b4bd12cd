"""DICOM files (with or without a suffix): read header-only, grouped by series, ordered
along the slice normal, one sample per slice or frame, every ``dicom_stride``-th. The work
is done by :mod:`cossl_edge.dicom`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.dicom import (
    DicomHeader,
    DicomSkip,
    group_series,
    looks_like_dicom,
    read_frame,
    read_header,
    series_frames,
)
from cossl_edge.sources.reader import Reader
from cossl_edge.sources.refs import SampleRef, Skipped
from cossl_edge.sources.sampling import SamplingOptions


def matches(path: Path) -> bool:
    return looks_like_dicom(path)


def list_file(path: Path, key: str, sampling: SamplingOptions) -> list[DicomHeader]:
    """The header only; :func:`group` makes the samples once every file is read."""
    return [read_header(path)]


def group(headers: list[DicomHeader], base: Path, sampling: SamplingOptions,
          skipped: list[Skipped]) -> list[SampleRef]:
    samples = []
    for series in group_series(_drop_duplicates(headers, skipped)):
        for h, frame in series_frames(series, sampling.dicom_stride):
            key = h.sop_instance_uid or str(h.path.relative_to(base))
            key = key if frame is None else f"{key}#{frame}"
            samples.append(SampleRef(h.path, "dicom", frame, key, h.series_uid))
    return samples


def _drop_duplicates(headers: list[DicomHeader], skipped: list[Skipped]) -> list[DicomHeader]:
    """Exports often hold the same instance twice; training on both would double it."""
    seen: set[str] = set()
    kept = []
    for h in headers:
        if h.sop_instance_uid and h.sop_instance_uid in seen:
            skipped.append(Skipped(h.path, "duplicate (same SOPInstanceUID as another file)"))
            continue
        seen.add(h.sop_instance_uid)
        kept.append(h)
    return kept


def read(ref: SampleRef, contract: PreprocessContract | None = None) -> np.ndarray:
    """The contract's ``window`` (``header`` when no contract is given)."""
    return read_frame(ref.path, ref.frame, contract.window if contract else "header")


def native_side(ref: SampleRef) -> int | None:
    h = read_header(ref.path)
    return min(h.rows, h.columns)


READER = Reader(kind="dicom", label="DICOM", matches=matches, list_file=list_file,
                read=read, native_side=native_side, skip_errors=(DicomSkip,), group=group)
