"""Finding samples in a folder and decoding them to [0, 1] float arrays.

A *sample* is one 2D image: an image file, one frame of a video, or one slice / frame of a
DICOM object. :func:`discover` lists them; :func:`load_sample` decodes one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
from cossl_edge.images import IMAGE_SUFFIXES, ImageReadError, read_image
from cossl_edge.privacy import salted_id
from cossl_edge.video import (
    VIDEO_SUFFIXES,
    VideoReadError,
    frame_indices,
    iter_video_frames,
    read_video_frame,
)


class SourceError(ValueError):
    """A folder or file that cannot be used as a data source (message names the fix)."""


@dataclass(frozen=True)
class SampleRef:
    """One 2D sample. ``key`` is the stable identity that ids are hashed from
    (the relative path, plus ``#frame``; SOPInstanceUID for DICOM). ``series`` is the
    SeriesInstanceUID of a DICOM sample (kept in memory only, never written out)."""

    path: Path
    kind: str = "image"  # image | dicom | video
    frame: int | None = None
    key: str = ""
    series: str = ""

    def sample_id(self, salt: str | None = None) -> str:
        return salted_id(self.key or str(self.path), salt)


@dataclass
class Skipped:
    """A file left out, and why (the reason never holds patient data)."""

    path: Path
    reason: str


@dataclass
class Discovery:
    samples: list[SampleRef]
    skipped: list[Skipped]


def discover(root: str | Path, *, dicom_stride: int = 1, video_every: int = 1,
             video_fps: float | None = None, progress: bool = False) -> Discovery:
    """All 2D samples under ``root`` (a folder, searched recursively, or one file).

    Image files give one sample each; video files every ``video_every``-th frame (or about
    ``video_fps`` frames per second); DICOM files (with or without a suffix) are read
    header-only, grouped by series, ordered along the slice normal, and give one sample per
    slice or frame, every ``dicom_stride``-th. Anything else is listed in ``skipped``."""
    root = Path(root)
    if not root.exists():
        raise SourceError(f"{root}: no such file or folder; check the path")
    if dicom_stride < 1 or video_every < 1:
        raise SourceError("dicom_stride and video_every must be at least 1")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    base = root.parent if root.is_file() else root
    inside = root.resolve() if root.is_dir() else None
    samples: list[SampleRef] = []
    skipped: list[Skipped] = []
    headers: list[DicomHeader] = []
    for p in _maybe_track(files, progress, "Finding samples"):
        if p.name.startswith("."):
            continue
        if inside is not None and p.is_symlink() and not p.resolve().is_relative_to(inside):
            # A link must not pull files from elsewhere on the machine into a data set.
            skipped.append(Skipped(p, "links outside the folder (symlink); copy the file "
                                      "into the folder instead"))
            continue
        try:
            if p.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(SampleRef(p, "image", None, _rel(p, base)))
            elif p.suffix.lower() in VIDEO_SUFFIXES:
                frames = frame_indices(p, video_every, video_fps)
                samples.extend(SampleRef(p, "video", i, f"{_rel(p, base)}#{i}") for i in frames)
            elif looks_like_dicom(p):
                headers.append(read_header(p))
            else:
                skipped.append(Skipped(p, "not an image, video or DICOM file"))
        except (DicomSkip, VideoReadError) as e:
            skipped.append(Skipped(p, str(e)))
        except OSError as e:
            skipped.append(Skipped(p, f"unreadable ({type(e).__name__})"))
    headers = _drop_duplicates(headers, skipped)
    for series in group_series(headers):
        for h, frame in series_frames(series, dicom_stride):
            key = h.sop_instance_uid or _rel(h.path, base)
            key = key if frame is None else f"{key}#{frame}"
            samples.append(SampleRef(h.path, "dicom", frame, key, h.series_uid))
    return Discovery(samples, skipped)


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


def _rel(path: Path, base: Path) -> str:
    return str(path.relative_to(base))


def _maybe_track(items: list, progress: bool, label: str) -> Iterable:
    if not progress:
        return items
    from rich.progress import track

    return track(items, description=label, transient=True)


def load_sample(ref: SampleRef, contract: PreprocessContract | None = None) -> np.ndarray:
    """Decode one sample to float32 H×W or H×W×3 in [0, 1]. DICOM uses the contract's
    ``window`` (``header`` when no contract is given)."""
    if ref.kind == "image":
        return read_image(ref.path)
    if ref.kind == "dicom":
        return read_frame(ref.path, ref.frame, contract.window if contract else "header")
    if ref.kind == "video":
        return read_video_frame(ref.path, ref.frame or 0)
    raise SourceError(f"unknown sample kind {ref.kind!r}")


def labelled_samples(root: str | Path, labels_csv: str | Path | None = None,
                     **discover_options) -> tuple[list[SampleRef], list[str], list[str]]:
    """Samples with labels: class subfolders of ``root`` (ImageFolder convention) or a CSV
    ``path,label``. A CSV path (relative to ``root``) names a file or a folder (a series
    folder labels all its slices); a SeriesInstanceUID instead of a path labels that series.
    Returns (samples, labels, class names)."""
    root = Path(root)
    found = discover(root, **discover_options)
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


def load_many(refs: Iterable[SampleRef], contract: PreprocessContract
              ) -> tuple[np.ndarray, list[int], list[Skipped]]:
    """Decode and prepare samples; returns (N×size×size×C array, kept indices, skipped)."""
    out, kept, skipped = [], [], []
    for i, ref, image in _decode_all(list(refs), contract):
        try:
            if isinstance(image, Exception):
                raise image
            out.append(contract.prepare(image))
            kept.append(i)
        except (ImageReadError, SourceError, ValueError) as e:
            skipped.append(Skipped(ref.path, str(e)))
    shape = (0, contract.size, contract.size, contract.channels)
    arr = np.stack(out) if out else np.zeros(shape, np.float32)
    return arr, kept, skipped


def _decode_all(refs: list[SampleRef], contract: PreprocessContract
                ) -> Iterator[tuple[int, SampleRef, np.ndarray | Exception]]:
    """Decoded samples in order; the frames of one video are read in a single pass."""
    i = 0
    while i < len(refs):
        ref = refs[i]
        if ref.kind != "video":
            try:
                yield i, ref, load_sample(ref, contract)
            except ValueError as e:
                yield i, ref, e
            i += 1
            continue
        j = i
        while j < len(refs) and refs[j].kind == "video" and refs[j].path == ref.path:
            j += 1
        positions: dict[int, list[int]] = {}
        for k in range(i, j):
            positions.setdefault(refs[k].frame or 0, []).append(k)
        done: set[int] = set()
        error: Exception = VideoReadError("frame could not be read")
        try:  # stream: one decoded frame in memory at a time
            for index, frame in iter_video_frames(ref.path, list(positions)):
                for k in positions[index]:
                    done.add(k)
                    yield k, refs[k], frame
        except ValueError as e:
            error = e
        for k in range(i, j):
            if k not in done:
                yield k, refs[k], error
        i = j


def native_side(samples: list[SampleRef], limit: int = 64) -> int | None:
    """Median short side, in pixels, of up to ``limit`` evenly spaced samples, read from
    headers only (image headers, DICOM Rows/Columns, the video's frame size). None when no
    sample can be read."""
    if not samples:
        return None
    picks = np.unique(np.linspace(0, len(samples) - 1, min(limit, len(samples))).astype(int))
    sides = []
    for i in picks:
        ref = samples[int(i)]
        try:
            if ref.kind == "image":
                from PIL import Image

                with Image.open(ref.path) as im:
                    sides.append(min(im.size))
            elif ref.kind == "dicom":
                h = read_header(ref.path)
                sides.append(min(h.rows, h.columns))
            elif ref.kind == "video":
                import cv2

                cap = cv2.VideoCapture(str(ref.path))
                w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
                cap.release()
                if w and h:
                    sides.append(int(min(w, h)))
        except Exception:  # noqa: BLE001 - a file that fails here is reported by the decoder
            continue
    return int(np.median(sides)) if sides else None
