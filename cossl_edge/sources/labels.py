"""Labelled samples: class subfolders (the ImageFolder convention) or a CSV ``path,label``."""

from __future__ import annotations

import csv
from pathlib import Path

from cossl_edge.sources.discovery import discover
from cossl_edge.sources.refs import SampleRef, SourceError
from cossl_edge.sources.sampling import SamplingOptions


def labelled_samples(root: str | Path, labels_csv: str | Path | None = None,
                     sampling: SamplingOptions | None = None
                     ) -> tuple[list[SampleRef], list[str], list[str]]:
    """Samples with labels: class subfolders of ``root`` (ImageFolder convention) or a CSV
    ``path,label``. A CSV path (relative to ``root``) names a file or a folder (a series
    folder labels all its slices); a SeriesInstanceUID instead of a path labels that series.
    ``sampling`` thins DICOM series and videos as :func:`discover` does.
    Returns (samples, labels, class names)."""
    root = Path(root)
    found = discover(root, sampling)
    if labels_csv is not None:
        table = _read_labels_csv(Path(labels_csv), root)
        pairs = [(s, lab) for s in found.samples
                 if (lab := _label_for(s, table, root)) is not None]
    else:
        pairs = []
        for s in found.samples:
            rel = s.path.relative_to(root) if s.path != root else Path(s.path.name)
            if len(rel.parts) < 2:
                continue
            pairs.append((s, rel.parts[0]))
    if not pairs:
        raise SourceError(
            f"{root}: no labelled images found; put each class in its own subfolder "
            "(DIR/class_name/image.png) or pass a labels CSV (path,label)"
        )
    classes = sorted({lab for _, lab in pairs})
    return [s for s, _ in pairs], [lab for _, lab in pairs], classes


def _label_for(sample: SampleRef, table: dict[str, str], root: Path) -> str | None:
    """The label of the file itself, else of its nearest labelled folder, else of its series."""
    path = sample.path.resolve()
    for p in (path, *path.parents):
        if str(p) in table:
            return table[str(p)]
        if p == root.resolve():
            break
    return table.get(sample.series) if sample.series else None


def _read_labels_csv(path: Path, root: Path) -> dict[str, str]:
    if not path.is_file():
        raise SourceError(f"{path}: labels CSV not found")
    out: dict[str, str] = {}
    inside = root.resolve()
    with path.open(newline="") as f:
        rows = csv.reader(f)
        for row in rows:
            if len(row) < 2 or row[0].strip().lower() == "path":
                continue
            name, label = row[0].strip(), row[1].strip()
            target = (root / name).resolve()
            if not _is_uid(name) and not target.is_relative_to(inside):
                # The row's path is not echoed: it may hold a patient's name.
                raise SourceError(f"{path}: line {rows.line_num}: the path leads outside the "
                                  "folder; list files inside the folder only")
            out[str(target) if target.exists() or not _is_uid(name) else name] = label
    return out


def _is_uid(text: str) -> bool:
    return bool(text) and all(part.isdigit() for part in text.split("."))
