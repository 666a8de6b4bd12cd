"""A volume: one D×H×W float array in [0, 1] and where it lies in the patient, and the
resampling of it to a chosen spacing.

Axes follow the DICOM stack: axis 0 runs across slices (along the slice normal), axis 1
down the rows, axis 2 along a row. Geometry is in DICOM patient coordinates (LPS, mm),
whatever the source: voxel ``(k, j, i)`` lies at ``origin + direction @ (spacing * (k, j,
i))``; ``direction``'s columns are the unit vectors of the three axes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cossl_edge.privacy import salted_id


class VolumeSkip(ValueError):
    """A series or file that cannot be one volume; the message is the reason (never
    patient data, never a raw path)."""


@dataclass(frozen=True)
class Volume:
    """``array``: float32 D×H×W in [0, 1]; ``spacing``: mm between voxel centres along
    (D, H, W); ``direction``: 3×3, column a the LPS unit vector of axis a; ``origin``: the
    LPS position (mm) of voxel (0, 0, 0)'s centre. ``key`` is the identity ids are hashed
    from (SeriesInstanceUID, or the file's relative path); ``path`` (a file of the source)
    stays in memory, never in an artefact or a message."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    direction: np.ndarray
    origin: np.ndarray
    key: str = ""
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """4×4: voxel index (k, j, i, 1) → LPS position in mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    def sample_id(self, salt: str | None = None) -> str:
        return salted_id(self.key or str(self.path), salt)


def output_depth(n: int, spacing: float, target: float | None) -> int:
    """Samples along an axis of ``n`` voxels ``spacing`` apart, resampled ``target`` apart,
    over the same extent (first centre to last centre)."""
    if target is None or n < 2:
        return n
    return int(np.floor((n - 1) * spacing / target + 1e-6)) + 1


def resample(volume: Volume, spacing: tuple[float | None, float | None, float | None]
             ) -> Volume:
    """``volume`` on a grid ``spacing`` mm apart along (D, H, W) (None keeps an axis),
    by linear interpolation, same origin and direction, same extent.

    Linear interpolation as MONAI's ``Spacingd`` does by default, written here in numpy
    one axis at a time (separable, exact on a linear ramp): MONAI and its resampler are
    torch, which the edge does not have, and scipy is not a dependency of the edge
    install; three 1D passes over a few hundred slices are fast enough."""
    targets = [None if t is None else float(t) for t in spacing]
    for t in targets:
        if t is not None and not (np.isfinite(t) and t > 0):
            raise VolumeSkip(f"resampling spacing must be positive millimetres, got {t}")
    arr = volume.array
    for axis, (s, t) in enumerate(zip(volume.spacing, targets, strict=True)):
        if t is not None and not np.isclose(s, t, rtol=1e-6):
            arr = _linear_along(arr, axis, s / t, output_depth(arr.shape[axis], s, t))
    new = tuple(float(s if t is None else t) for s, t in zip(volume.spacing, targets,
                                                               strict=True))
    return replace(volume, array=np.ascontiguousarray(arr, np.float32), spacing=new)


def _linear_along(arr: np.ndarray, axis: int, step_ratio: float, n_out: int) -> np.ndarray:
    """Resample ``arr`` along ``axis``: output sample m at input index m / step_ratio."""
    n = arr.shape[axis]
    x = np.arange(n_out, dtype=np.float64) / step_ratio
    i0 = np.clip(np.floor(x).astype(np.int64), 0, max(n - 2, 0))
    w = np.clip(x - i0, 0.0, 1.0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * arr.ndim
    shape[axis] = n_out
    w = w.reshape(shape)
    return np.take(arr, i0, axis=axis) * (1 - w) + np.take(arr, i1, axis=axis) * w


def too_thin(depth: int, spacing: float, min_depth: int) -> VolumeSkip | None:
    """The skip for a volume of ``depth`` slices when ``min_depth`` are needed. Thin series
    are skipped, never padded: padding makes up anatomy the scan does not hold, and a crop
    of mostly padding teaches the encoder nothing."""
    if depth >= max(min_depth, 2):
        return None
    return VolumeSkip(f"too few slices for a volume: {depth} at {spacing:g} mm, at least "
                      f"{max(min_depth, 2)} needed (skipped, not padded)")
