"""NIfTI-1/2 files (``.nii``, ``.nii.gz``) as volumes, read by nibabel (the ``[volumes]``
extra; MONAI reads NIfTI through it too).

NIfTI's affine maps (i, j, k) to RAS millimetres; a :class:`Volume` is indexed (k, j, i) in
DICOM's LPS, so the axes are reversed and x, y negated: the same scan gives the same
geometry from either source. The values are the scanner's (nibabel applies
``scl_slope``/``scl_inter``); the window is a CT preset, the header's ``cal_min``/``cal_max``
(``header``, when set), or percentiles over the whole volume (``auto``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cossl_edge.dicom.windowing import CT_PRESETS, auto_to_unit, window_to_unit
from cossl_edge.volumes.volume import Volume, VolumeSkip, output_depth, resample, too_thin

NIFTI_SUFFIXES = (".nii", ".nii.gz")
EXTRA_HINT = "pip install 'cossl-edge[volumes]'"
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nibabel():
    """The nibabel module, or one line naming the extra that installs it."""
    try:
        import nibabel as nib
    except ImportError as e:
        raise VolumeSkip(f"reading NIfTI needs nibabel: {EXTRA_HINT}") from e
    return nib


def nifti_volume(path: str | Path, window: str = "auto",
                 spacing: tuple[float | None, float | None, float | None] | None = None,
                 min_depth: int = 2, key: str = "") -> Volume:
    """A ``.nii``/``.nii.gz`` file as a :class:`Volume` (see :func:`dicom_volume` for
    ``spacing`` and ``min_depth``); :class:`VolumeSkip` for a file that is not one 3D
    volume. ``key``: the identity ids are hashed from (the relative path by default)."""
    path = Path(path)
    nib = nibabel()
    try:
        image = nib.load(path)
        shape = tuple(int(s) for s in image.shape)
    except Exception as e:  # nibabel raises many types on damaged files
        raise VolumeSkip(f"not a readable NIfTI file ({type(e).__name__})") from e
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise VolumeSkip(f"a NIfTI image of {len(shape)} dimensions {shape}; one 3D volume "
                         "is needed (split a 4D series into volumes first)")
    direction, voxel, origin = _geometry(image.affine)
    target = spacing or (None, None, None)
    depth = output_depth(shape[2], voxel[0], target[0])
    skip = too_thin(depth, target[0] or voxel[0], min_depth)
    if skip is not None:
        raise skip
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as e:  # truncated or corrupt data block
        raise VolumeSkip(f"NIfTI voxel data could not be read ({type(e).__name__})") from e
    values = np.ascontiguousarray(data.transpose(2, 1, 0))  # (i, j, k) → (k, j, i)
    volume = Volume(_to_unit(values, image.header, window), voxel, direction, origin,
                    key=key or str(path.name), path=path)
    return resample(volume, target) if spacing is not None else volume


def _geometry(affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float],
                                            np.ndarray]:
    lps = RAS_TO_LPS @ np.asarray(affine, np.float64)[:3]
    axes = lps[:, [2, 1, 0]]  # columns for k, j, i
    norms = np.linalg.norm(axes, axis=0)
    if not np.all(np.isfinite(lps)) or np.any(norms <= 0):
        raise VolumeSkip("a NIfTI affine with a zero or invalid voxel size")
    return axes / norms, tuple(float(n) for n in norms), lps[:, 3].copy()


def _to_unit(values: np.ndarray, header, window: str) -> np.ndarray:
    if window in CT_PRESETS:
        return window_to_unit(values, *CT_PRESETS[window], "LINEAR_EXACT")
    if window == "header":
        lo, hi = (float(header.get("cal_min", 0)), float(header.get("cal_max", 0)))
        if hi > lo:
            return window_to_unit(values, (lo + hi) / 2, hi - lo, "LINEAR_EXACT")
    return auto_to_unit(values)
