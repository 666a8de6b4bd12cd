"""Grouping DICOM files into series and ordering their slices and frames."""

from __future__ import annotations

from collections import defaultdict

from cossl_edge.dicom.header import DicomHeader


def group_series(headers: list[DicomHeader]) -> list[list[DicomHeader]]:
    """Headers grouped by SeriesInstanceUID (files without one form their own series),
    each series ordered as its volume stacks; series in order of first appearance."""
    groups: dict[str, list[DicomHeader]] = defaultdict(list)
    for h in headers:
        groups[h.series_uid or f"no-series:{h.path}"].append(h)
    return [order_slices(g) for g in groups.values()]


def order_slices(series: list[DicomHeader]) -> list[DicomHeader]:
    """By position along the slice normal, then InstanceNumber, then file name.

    Slices without a position sort after those with one, so a series with a few damaged
    headers keeps its volume order."""
    def key(h: DicomHeader):
        pos = h.slice_position
        inst = h.instance_number
        return (pos is None, pos or 0.0, inst is None, inst or 0, h.path.name)
    return sorted(series, key=key)


def series_frames(series: list[DicomHeader], stride: int = 1
                  ) -> list[tuple[DicomHeader, int | None]]:
    """(header, frame) for every 2D sample of a series, keeping every ``stride``-th.

    A single-frame file is frame ``None``; a multi-frame object gives frames 0..n-1.
    The stride runs over the whole series, so a volume stored one slice per file and one
    stored as a multi-frame object are thinned alike."""
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    flat: list[tuple[DicomHeader, int | None]] = []
    for h in series:
        if h.frames == 1:
            flat.append((h, None))
        else:
            flat.extend((h, i) for i in range(h.frames))
    return flat[::stride]
