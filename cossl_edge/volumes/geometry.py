"""Where each slice of a DICOM series lies, and the rules that make a series one volume.

A *plane* is one 2D image of the series: a single-frame file, or one frame of a multi-frame
object (enhanced CT/MR keep each frame's position in the per-frame functional groups, PS3.3
C.7.6.16.2.3, and orientation and pixel spacing there or in the shared groups). The planes
are ordered along the slice normal (ImageOrientationPatient's row × column directions), as
:func:`cossl_edge.dicom.order_slices` orders files; then a series is a volume only when
every plane has the same orientation, size and pixel spacing, no two share a position, and
consecutive planes are equally far apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.tag import Tag

from cossl_edge.dicom.header import DicomHeader, open_bounded, pydicom_quiet
from cossl_edge.dicom.pixels import frame_item
from cossl_edge.volumes.volume import VolumeSkip

GEOMETRY_TAGS = [Tag(k) for k in (
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "NumberOfFrames",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")]
ORIENTATION_TOLERANCE = 1e-3  # direction cosines: about 0.06°
GAP_RATIO = 1.5  # a step this many times the usual one: at least one slice is missing
SPACING_TOLERANCE = (0.01, 0.01)  # relative, mm: the rounding scanners write positions with


@dataclass(frozen=True)
class Plane:
    header: DicomHeader
    frame: int | None  # None: a single-frame file
    position: np.ndarray | None  # ImagePositionPatient (mm, LPS)
    orientation: np.ndarray | None  # ImageOrientationPatient (row, column cosines)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns), mm


@dataclass(frozen=True)
class StackGeometry:
    planes: list[Plane]  # in volume order
    spacing: tuple[float, float, float]
    direction: np.ndarray
    origin: np.ndarray


def planes_of(header: DicomHeader) -> list[Plane]:
    """Every plane of one file, with its geometry (None where the header has none)."""
    with pydicom_quiet(), open_bounded(header.path) as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True, force=True,
                             specific_tags=GEOMETRY_TAGS)
    if header.frames == 1:
        return [Plane(header, None, _floats(ds, "ImagePositionPatient", 3),
                      _floats(ds, "ImageOrientationPatient", 6), _spacing(ds))]
    planes = []
    for f in range(header.frames):
        pos = frame_item(ds, f, "PlanePositionSequence")
        ori = frame_item(ds, f, "PlaneOrientationSequence")
        measures = frame_item(ds, f, "PixelMeasuresSequence")
        planes.append(Plane(
            header, f,
            _floats(pos, "ImagePositionPatient", 3) if pos is not None else None,
            _floats(ori if ori is not None else ds, "ImageOrientationPatient", 6),
            _spacing(measures if measures is not None else ds)))
    return planes


def stack_geometry(planes: list[Plane]) -> StackGeometry:
    """The planes in volume order and the volume's geometry; :class:`VolumeSkip` naming the
    rule a series breaks."""
    n = len(planes)
    if n < 2:
        raise VolumeSkip("a single slice is not a volume")
    unplaced = sum(p.position is None or p.orientation is None for p in planes)
    if unplaced:
        raise VolumeSkip(f"{unplaced} of {n} slices have no ImagePositionPatient/"
                         "ImageOrientationPatient; they cannot be placed in a volume")
    first = planes[0].orientation
    mixed = sum(not np.allclose(p.orientation, first, atol=ORIENTATION_TOLERANCE)
                for p in planes)
    if mixed:
        raise VolumeSkip(f"mixed orientations: {mixed} of {n} slices differ from the first "
                         "(a localizer or several stacks in one series)")
    sizes = {(p.header.rows, p.header.columns) for p in planes}
    if len(sizes) > 1:
        raise VolumeSkip(f"mixed image sizes in one series ({len(sizes)} different)")
    if any(p.pixel_spacing is None for p in planes):
        raise VolumeSkip("no PixelSpacing: the in-plane spacing is unknown")
    if any(not np.allclose(p.pixel_spacing, planes[0].pixel_spacing, rtol=1e-4)
           for p in planes):
        raise VolumeSkip("mixed pixel spacing in one series")
    row, col = first[:3] / np.linalg.norm(first[:3]), first[3:] / np.linalg.norm(first[3:])
    normal = np.cross(row, col)
    ordered = sorted(planes, key=lambda p: float(normal @ p.position))
    positions = np.stack([p.position for p in ordered])
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    _check_steps(steps)
    extent = positions[-1] - positions[0]
    slice_dir = extent / np.linalg.norm(extent)  # the normal, or the tilted stack's axis
    return StackGeometry(
        planes=ordered,
        spacing=(float(np.linalg.norm(extent) / (n - 1)), *map(float, ordered[0].pixel_spacing)),
        direction=np.stack([slice_dir, col, row], axis=1),
        origin=positions[0].copy())


def _check_steps(steps: np.ndarray) -> None:
    typical = float(np.median(steps))
    same = int(np.sum(steps < 1e-3 * max(typical, 1.0)))
    if same:
        raise VolumeSkip(f"{same} slice(s) share a position with another (several "
                         "acquisitions, echoes or phases in one series?)")
    gaps = np.flatnonzero(steps > GAP_RATIO * typical)
    if gaps.size:
        k = int(gaps[0])
        raise VolumeSkip(f"missing slice(s): a gap of {steps[k]:.3g} mm after slice {k + 1} "
                         f"of {steps.size + 1} where slices are {typical:.3g} mm apart")
    rel, mm = SPACING_TOLERANCE
    if np.any(np.abs(steps - typical) > rel * typical + mm):
        raise VolumeSkip(f"non-uniform slice spacing: steps from {steps.min():.3g} to "
                         f"{steps.max():.3g} mm")


def _floats(ds, keyword: str, n: int) -> np.ndarray | None:
    try:
        values = np.asarray([float(v) for v in ds.get(keyword)], np.float64)
    except (TypeError, ValueError):
        return None
    return values if values.shape == (n,) and np.all(np.isfinite(values)) else None


def _spacing(ds) -> tuple[float, float] | None:
    values = _floats(ds, "PixelSpacing", 2)
    if values is None or np.any(values <= 0):
        return None
    return float(values[0]), float(values[1])


def file_planes(headers: list[DicomHeader]) -> list[Plane]:
    """The planes of every file of a series; :class:`VolumeSkip` for a file whose geometry
    cannot be read (its header passed before, so this is damage, not a format)."""
    planes = []
    for i, h in enumerate(headers):
        try:
            planes.extend(planes_of(h))
        except Exception as e:  # damaged headers raise many types; report, never a traceback
            raise VolumeSkip(f"slice file {i + 1} of {len(headers)}: geometry unreadable "
                             f"({type(e).__name__})") from e
    return planes


__all__ = ["Plane", "StackGeometry", "file_planes", "planes_of", "stack_geometry"]
