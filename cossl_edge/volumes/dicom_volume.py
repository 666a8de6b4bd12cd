"""A DICOM series as one volume: planes ordered and checked (:mod:`.geometry`), each decoded
and mapped to [0, 1] by the 2D reading chain (:mod:`cossl_edge.dicom.pixels`: modality LUT,
VOI window, MONOCHROME1 inversion), stacked, resampled to the chosen spacing."""

from __future__ import annotations

import numpy as np

from cossl_edge.dicom.header import DicomHeader, DicomSkip
from cossl_edge.dicom.pixels import decode_frame, modality_values, to_unit
from cossl_edge.dicom.windowing import auto_to_unit
from cossl_edge.volumes.geometry import Plane, file_planes, stack_geometry
from cossl_edge.volumes.volume import Volume, VolumeSkip, output_depth, resample, too_thin

Spacing = tuple[float | None, float | None, float | None]


def dicom_volume(series: list[DicomHeader], window: str = "header",
                 spacing: Spacing | None = None, min_depth: int = 2) -> Volume:
    """One series (headers from :func:`cossl_edge.dicom.read_header`, any order) as a
    :class:`Volume` ``spacing`` mm apart (None: as stored), or :class:`VolumeSkip` naming
    the rule it breaks.

    ``window`` as in 2D: ``header``, a CT preset (``lung``, …) or ``auto``. ``header`` and
    the presets give every slice exactly what the 2D path gives it; ``auto`` takes one
    percentile window over the whole volume (per-slice windows would flatten what changes
    along the slices). Fewer than ``min_depth`` slices after resampling: skipped, before
    any pixel is decoded."""
    if any(h.samples_per_pixel != 1 for h in series):
        raise VolumeSkip("colour images do not form a volume (SamplesPerPixel ≠ 1)")
    geometry = stack_geometry(file_planes(series))
    target = spacing or (None, None, None)
    depth = output_depth(len(geometry.planes), geometry.spacing[0], target[0])
    skip = too_thin(depth, target[0] or geometry.spacing[0], min_depth)
    if skip is not None:
        raise skip
    array = _decode_stack(geometry.planes, window)
    volume = Volume(array, geometry.spacing, geometry.direction, geometry.origin,
                    key=series[0].series_uid or series[0].sop_instance_uid,
                    path=series[0].path)
    return resample(volume, target) if spacing is not None else volume


def _decode_stack(planes: list[Plane], window: str) -> np.ndarray:
    out, values = [], []
    photometric = ""
    for i, p in enumerate(planes):
        try:
            arr, ds = decode_frame(p.header.path, p.frame)
        except DicomSkip as e:
            raise VolumeSkip(f"slice {i + 1} of {len(planes)} could not be read: {e}") from e
        except OSError as e:
            raise VolumeSkip(f"slice {i + 1} of {len(planes)} could not be read "
                             f"({type(e).__name__})") from e
        if arr.ndim != 2:
            raise VolumeSkip("colour images do not form a volume")
        if window == "auto":
            photometric = str(ds.get("PhotometricInterpretation", "")).upper()
            values.append(arr if arr.dtype.kind == "f"
                          else modality_values(arr, ds, p.frame or 0))
        else:
            out.append(to_unit(arr, ds, p.frame or 0, window))
    if window != "auto":
        return np.stack(out).astype(np.float32, copy=False)
    unit = auto_to_unit(np.stack(values).astype(np.float32))
    return (1.0 - unit) if photometric == "MONOCHROME1" else unit
