"""3D chest CT phantoms: a slab of axial slices in HU, with or without one lung nodule.

What varies from series to series is what varies between real chest CTs and would let a
model learn the wrong thing if it did not: the body's size and its offset from the
isocentre (and so the reconstruction field of view and the pixel spacing), the slab's place
between apex and base, slice spacing and slice thickness (1–5 mm, thickness ≥ spacing, each
slice the average of the anatomy over its thickness), noise (higher in thinner slices), kV
(bone and iodine HU), contrast or none, the lungs' density and texture, ribs, and the
vessels — a branching tree plus straight near-vertical vessels of a nodule's calibre, which
in one axial slice are round blobs just like a nodule and only differ in 3D by their length.
Nodules are 2–6 mm in radius, solid or ground glass, anywhere in the lungs within the slab.

Same seed and index, same volume (numpy only). The DICOM series are written by
``clinical_examples/ct_volumes.py``.

>>> vol = ct_volume(0, 3, nodule=True, size=64, length_mm=24.0)
>>> vol.hu.ndim, vol.label, len(vol.nodules)
(3, 'nodule', 1)
>>> bool(vol.thickness >= vol.spacing[0])
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cossl_edge.phantoms import chest3d
from cossl_edge.phantoms.chest3d import Chest, Nodule, Tube

LABELS = ("no_nodule", "nodule")
# (slice spacing, slice thickness) in mm, as chest protocols reconstruct them
PROTOCOLS = ((1.0, 1.0), (1.0, 1.25), (1.0, 2.0), (1.25, 1.25), (1.5, 1.5), (1.5, 3.0),
             (2.0, 2.0), (2.5, 2.5), (2.5, 5.0), (3.0, 3.0), (5.0, 5.0))
KVPS = (80, 100, 120, 140)


@dataclass(frozen=True)
class CtVolume:
    """A series as one array. ``hu[k, row, col]``: slice 0 is the most superior; rows run
    posterior (+y), columns to the patient's left (+x), DICOM's axial orientation."""
    hu: np.ndarray  # float32 (slices, rows, columns)
    spacing: tuple[float, float, float]  # mm: between slices, between rows, between columns
    thickness: float  # mm, ≥ spacing[0]
    origin: tuple[float, float, float]  # LPS mm of slice 0's first pixel (ImagePositionPatient)
    label: str  # one of LABELS
    nodules: tuple[Nodule, ...]
    tubes: tuple[Tube, ...]
    kvp: int
    contrast: bool
    noise_hu: float  # standard deviation of the noise added, HU
    body_mm: tuple[float, float]  # body width and depth

    def position(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient of slice ``k``."""
        x, y, z = self.origin
        return (x, y, z - k * self.spacing[0])

    def voxel(self, point: tuple[float, float, float]) -> tuple[float, float, float]:
        """(slice, row, column), fractional, of a point in LPS mm."""
        x, y, z = point
        x0, y0, z0 = self.origin
        return ((z0 - z) / self.spacing[0], (y - y0) / self.spacing[1],
                (x - x0) / self.spacing[2])


def ct_volume(seed: int, index: int, nodule: bool, size: int = 160,
              length_mm: float = 80.0, ribs: bool = True) -> CtVolume:
    """Series ``index`` of the set drawn from ``seed``: ``size`` × ``size`` slices covering
    ``length_mm`` along z (the number of slices follows from the drawn spacing)."""
    rng = np.random.default_rng([seed, index, 30])
    spacing, thickness = PROTOCOLS[int(rng.integers(len(PROTOCOLS)))]
    kvp = int(rng.choice(KVPS))
    kv_factor = (120.0 / kvp) ** 0.8  # bone and iodine attenuate more at lower kV
    contrast = bool(rng.random() < 0.5)
    contrast_hu = rng.uniform(100.0, 300.0) * kv_factor ** 1.6 if contrast else 0.0
    chest = chest3d.draw_chest(rng, 0.0, kv_factor, contrast_hu)
    n = int(round(length_mm / spacing)) + 1
    z_top = (n - 1) * spacing / 2.0
    fov = 2 * chest.half_width * rng.uniform(1.05, 1.25)  # the DFOV is set to the body
    pixel = fov / size
    x0 = y0 = -(size - 1) / 2 * pixel
    tubes = chest3d.vessel_tree(rng, chest, -z_top, z_top)
    nodules = (chest3d.draw_nodule(rng, chest, -z_top, z_top),) if nodule else ()
    noise = rng.uniform(8.0, 25.0) * np.sqrt(2.5 / thickness)
    axis = x0 + pixel * np.arange(size, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis)  # rows follow y, columns x
    zf, weights = _slice_profile(z_top, n, spacing, thickness)
    fine = _render(rng, chest, xx, yy, zf, pixel, tubes, nodules, ribs)
    hu = np.tensordot(weights, fine, axes=(1, 0)).astype(np.float32)
    hu += _correlated_noise(rng, hu.shape, noise)
    return CtVolume(hu, (spacing, pixel, pixel), thickness, (x0, y0, z_top),
                    LABELS[int(nodule)], nodules, tuple(tubes), kvp, contrast,
                    float(noise), (2 * chest.half_width, 2 * chest.half_depth))


def _slice_profile(z_top: float, n: int, spacing: float, thickness: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Fine planes (their z, descending) and each slice's weights over them: a slice is
    the mean of the anatomy over [z − thickness/2, z + thickness/2] (a box profile)."""
    step = float(np.clip(thickness / 4.0, 0.5, 1.0))
    top, bottom = z_top + thickness / 2, z_top - (n - 1) * spacing - thickness / 2
    count = int(np.ceil((top - bottom) / step))
    zf = top - step * (np.arange(count) + 0.5)
    centres = z_top - spacing * np.arange(n)
    lo = np.maximum(zf[None, :] - step / 2, centres[:, None] - thickness / 2)
    hi = np.minimum(zf[None, :] + step / 2, centres[:, None] + thickness / 2)
    weights = np.clip(hi - lo, 0.0, None)
    return zf, weights / weights.sum(axis=1, keepdims=True)


def _render(rng: np.random.Generator, chest: Chest, xx: np.ndarray, yy: np.ndarray,
            zf: np.ndarray, pixel: float, tubes: list[Tube], nodules: tuple[Nodule, ...],
            ribs: bool) -> np.ndarray:
    """The anatomy on the fine planes, HU, before the slice profile and the noise."""
    planes = [chest3d.plane(chest, xx, yy, float(z), ribs) for z in zf]
    hu = np.stack([p[0] for p in planes])
    lung = np.stack([p[1] for p in planes])
    step = abs(float(zf[1] - zf[0])) if len(zf) > 1 else 1.0
    texture = _smooth_noise(rng, hu.shape, (2.0 / step, 2.0 / pixel, 2.0 / pixel))
    hu += np.where(lung, texture * rng.uniform(15.0, 40.0), 0.0).astype(np.float32)
    blood = np.zeros(hu.shape, np.float32)
    for tube in tubes:
        _paint(blood, tube, chest3d.tube_fraction, xx, yy, zf)
    hu += lung * blood * (chest.blood_hu - hu)
    for nodule in nodules:
        filled = np.zeros(hu.shape, np.float32)
        _paint(filled, nodule, chest3d.nodule_fraction, xx, yy, zf)
        hu += filled * (nodule.hu - hu)
    return hu


def _paint(out: np.ndarray, shape: Tube | Nodule, fraction, xx: np.ndarray,
           yy: np.ndarray, zf: np.ndarray) -> None:
    """out = max(out, fraction of ``shape``) inside the shape's bounding box only."""
    if isinstance(shape, Tube):
        ends = np.array([shape.start, shape.end])
        lo, hi = ends.min(0) - shape.radius - 1, ends.max(0) + shape.radius + 1
    else:
        reach = shape.radius * max(shape.axes) + 1
        lo, hi = np.asarray(shape.centre) - reach, np.asarray(shape.centre) + reach
    xs, ys = xx[0], yy[:, 0]
    cols = np.nonzero((xs >= lo[0]) & (xs <= hi[0]))[0]
    rows = np.nonzero((ys >= lo[1]) & (ys <= hi[1]))[0]
    ks = np.nonzero((zf >= lo[2]) & (zf <= hi[2]))[0]
    if not (len(cols) and len(rows) and len(ks)):
        return
    box = (slice(ks[0], ks[-1] + 1), slice(rows[0], rows[-1] + 1),
           slice(cols[0], cols[-1] + 1))
    f = fraction(shape, xs[box[2]][None, None, :], ys[box[1]][None, :, None],
                 zf[box[0]][:, None, None])
    np.maximum(out[box], f, out=out[box])


def _box_blur(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Mean over a window of 2·radius + 1 along ``axis`` (edges clamped), via cumsum."""
    if radius < 1:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius + 1, radius)
    c = np.cumsum(np.pad(a, pad, mode="edge"), axis=axis, dtype=np.float64)
    n = a.shape[axis]
    hi = np.take(c, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
    lo = np.take(c, np.arange(n), axis=axis)
    return ((hi - lo) / (2 * radius + 1)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...],
                  scale: tuple[float, ...]) -> np.ndarray:
    """Unit-variance noise correlated over ``scale`` voxels per axis (two box passes ≈ a
    Gaussian): the lungs' parenchyma and the small vessels no tube draws."""
    a = rng.standard_normal(shape, dtype=np.float32)
    for axis, s in enumerate(scale):
        r = int(round(s / 2))
        a = _box_blur(_box_blur(a, r, axis), r, axis)
    return a / max(float(a.std()), 1e-6)


def _correlated_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float
                      ) -> np.ndarray:
    """Reconstruction noise: correlated over about a pixel in plane, independent between
    slices (each slice is reconstructed on its own)."""
    return _smooth_noise(rng, shape, (0.0, 2.0, 2.0)) * sigma


def series_labels(seed: int, count: int) -> list[bool]:
    """Which of ``count`` series have a nodule: half of them, in an order drawn from
    ``seed`` (so a prefix of the set is roughly balanced too)."""
    rng = np.random.default_rng([seed, 31])
    return [bool(v) for v in rng.permutation(np.arange(count) % 2 == 0)]
