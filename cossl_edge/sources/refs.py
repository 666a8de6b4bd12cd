"""The values every reader shares: a sample's reference, a skipped file, the result of a
discovery, and the error a user can fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cossl_edge.privacy import salted_id


class SourceError(ValueError):
    """A folder or file that cannot be used as a data source (message names the fix)."""


@dataclass(frozen=True)
class SampleRef:
    """One 2D sample. ``kind`` names the reader that listed it (``image``, ``dicom``,
    ``video`` or a registered one). ``key`` is the stable identity that ids are hashed from
    (the relative path, plus ``#frame``; SOPInstanceUID for DICOM). ``series`` is the
    SeriesInstanceUID of a DICOM sample (kept in memory only, never written out)."""

    path: Path
    kind: str = "image"
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
