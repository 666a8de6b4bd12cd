"""Finding samples in a folder and decoding them to [0, 1] float arrays.

A *sample* is one 2D image: an image file, one frame of a video, or one slice / frame of a
DICOM object. :func:`discover` lists them; :func:`load_sample` decodes one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.images import IMAGE_SUFFIXES, ImageReadError, read_image
from cossl_edge.privacy import salted_id


class SourceError(ValueError):
    """A folder or file that cannot be used as a data source (message names the fix)."""


@dataclass(frozen=True)
class SampleRef:
    """One 2D sample. ``key`` is the stable identity that ids are hashed from
    (the relative path, plus ``#frame``; SOPInstanceUID for DICOM)."""

    path: Path
    kind: str = "image"  # image | dicom | video
    frame: int | None = None
    key: str = ""

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


def discover(root: str | Path) -> Discovery:
    """All image samples under ``root`` (a folder, searched recursively, or one file)."""
    root = Path(root)
    if not root.exists():
        raise SourceError(f"{root}: no such file or folder; check the path")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    base = root.parent if root.is_file() else root
    samples: list[SampleRef] = []
    skipped: list[Skipped] = []
    for p in files:
        if p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_SUFFIXES:
            samples.append(SampleRef(p, "image", None, str(p.relative_to(base))))
        else:
            skipped.append(Skipped(p, "not an image file (unsupported extension)"))
    return Discovery(samples, skipped)


def load_sample(ref: SampleRef, contract: PreprocessContract | None = None) -> np.ndarray:
    """Decode one sample to float32 H×W or H×W×3 in [0, 1]."""
    if ref.kind == "image":
        return read_image(ref.path)
    raise SourceError(f"unknown sample kind {ref.kind!r}")


def labelled_samples(root: str | Path, labels_csv: str | Path | None = None
                     ) -> tuple[list[SampleRef], list[str], list[str]]:
    """Samples with labels: class subfolders of ``root`` (ImageFolder convention) or a CSV
    ``path,label`` with paths relative to ``root``. Returns (samples, labels, class names)."""
    root = Path(root)
    found = discover(root)
    if labels_csv is not None:
        table = _read_labels_csv(Path(labels_csv), root)
        pairs = [(s, table[s.path.resolve()]) for s in found.samples if s.path.resolve() in table]
    else:
        pairs = []
        for s in found.samples:
            rel = s.path.relative_to(root)
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


def _read_labels_csv(path: Path, root: Path) -> dict[Path, str]:
    if not path.is_file():
        raise SourceError(f"{path}: labels CSV not found")
    out: dict[Path, str] = {}
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or row[0].strip().lower() == "path":
                continue
            out[(root / row[0].strip()).resolve()] = row[1].strip()
    return out


def load_many(refs: Iterable[SampleRef], contract: PreprocessContract
              ) -> tuple[np.ndarray, list[int], list[Skipped]]:
    """Decode and prepare samples; returns (N×size×size×C array, kept indices, skipped)."""
    out, kept, skipped = [], [], []
    for i, ref in enumerate(refs):
        try:
            out.append(contract.prepare(load_sample(ref, contract)))
            kept.append(i)
        except (ImageReadError, SourceError, ValueError) as e:
            skipped.append(Skipped(ref.path, str(e)))
    shape = (0, contract.size, contract.size, contract.channels)
    arr = np.stack(out) if out else np.zeros(shape, np.float32)
    return arr, kept, skipped
