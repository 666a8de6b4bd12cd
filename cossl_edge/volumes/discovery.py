"""Finding volumes in a folder: every DICOM series (found by the same discovery as the 2D
samples: header pass, duplicates dropped, series grouped) and every NIfTI file is one
volume reference; :func:`load_volume` reads one, :func:`load_volumes` many, each series that
cannot be a volume reported as one :class:`Skipped` naming its salted series id."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cossl_edge.dicom.header import DicomHeader, DicomSkip, read_header
from cossl_edge.dicom.series import group_series
from cossl_edge.privacy import salted_id
from cossl_edge.sources.discovery import discover
from cossl_edge.sources.refs import Skipped
from cossl_edge.volumes.dicom_volume import Spacing, dicom_volume
from cossl_edge.volumes.nifti import is_nifti, nifti_volume
from cossl_edge.volumes.volume import Volume, VolumeSkip


@dataclass(frozen=True)
class VolumeRef:
    """One volume to read: a DICOM series (its files' headers) or a NIfTI file. ``key`` is
    the identity ids are hashed from (SeriesInstanceUID; the NIfTI file's relative path)."""

    kind: str  # "dicom" or "nifti"
    key: str
    paths: tuple[Path, ...]
    headers: tuple[DicomHeader, ...] = field(default=(), repr=False)

    def sample_id(self, salt: str | None = None) -> str:
        return salted_id(self.key, salt)

    @property
    def label(self) -> str:
        """How messages name it: the salted id, never a UID or a path."""
        kind = "series" if self.kind == "dicom" else "NIfTI file"
        return f"{kind} {self.sample_id()}"


@dataclass
class VolumeDiscovery:
    volumes: list[VolumeRef]
    skipped: list[Skipped]


def discover_volumes(root: str | Path, *, progress: bool = False) -> VolumeDiscovery:
    """Every DICOM series and NIfTI file under ``root`` (a folder, or one file). Files no
    reader takes (and not NIfTI) are skipped with the 2D discovery's reasons."""
    root = Path(root)
    found = discover(root, progress=progress)
    base = root.parent if root.is_file() else root
    refs: list[VolumeRef] = []
    skipped: list[Skipped] = []
    for s in found.skipped:
        if is_nifti(s.path):
            key = str(s.path.relative_to(base))
            refs.append(VolumeRef("nifti", key, (s.path,)))
        else:
            skipped.append(s)
    paths: dict[Path, None] = {}
    for ref in found.samples:
        if ref.kind == "dicom":
            paths.setdefault(ref.path, None)
        else:
            skipped.append(Skipped(ref.path, f"a {ref.kind} file is not a volume"))
    headers = []
    for p in paths:
        try:
            headers.append(read_header(p))
        except (DicomSkip, OSError) as e:  # changed since discovery: report, carry on
            skipped.append(Skipped(p, str(e) or type(e).__name__))
    for series in group_series(headers):
        key = series[0].series_uid or series[0].sop_instance_uid or str(series[0].path)
        refs.append(VolumeRef("dicom", key, tuple(h.path for h in series), tuple(series)))
    return VolumeDiscovery(refs, skipped)


def load_volume(ref: VolumeRef, window: str = "header", spacing: Spacing | None = None,
                min_depth: int = 2) -> Volume:
    """Read one volume; :class:`VolumeSkip` whose message names the volume by its salted
    id and says which rule it breaks."""
    try:
        if ref.kind == "nifti":
            return nifti_volume(ref.paths[0], window, spacing, min_depth, key=ref.key)
        return dicom_volume(list(ref.headers), window, spacing, min_depth)
    except VolumeSkip as e:
        n = f" ({len(ref.paths)} files)" if ref.kind == "dicom" else ""
        raise VolumeSkip(f"{ref.label}{n}: {e}") from e


def load_volumes(refs: Iterable[VolumeRef], window: str = "header",
                 spacing: Spacing | None = None, min_depth: int = 2
                 ) -> Iterator[tuple[VolumeRef, Volume | Skipped]]:
    """Each reference with its volume, or a :class:`Skipped` (its first file, the reason):
    one bad series never stops the others."""
    for ref in refs:
        try:
            yield ref, load_volume(ref, window, spacing, min_depth)
        except VolumeSkip as e:
            yield ref, Skipped(ref.paths[0], str(e))
