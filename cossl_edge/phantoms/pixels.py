"""The pixels of the phantoms: axial chest CT slices (HU) and PA chest radiographs
(attenuation), each with one finding of :data:`FINDINGS` drawn in a lung. They ship in the
package for `cossl-edge demo` (numpy only); the clinical examples write them as DICOM.

Anatomy, dose (noise), exposure and vessels vary from image to image, so the classes are
visible to a reader but not a matter of raw pixel intensity alone: a nodule is a blob a
little larger than the vessels around it, an effusion replaces part of a lung whose size and
position vary. Same generator state, same pixels.
"""

from __future__ import annotations

import numpy as np

FINDINGS = ("no_finding", "nodule", "effusion")
CT_SIZE = 96
CR_SHAPE = (112, 128)  # rows × columns: not square, so the contract's resize is exercised


# -- drawing helpers ------------------------------------------------------------------------
def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float,
             angle: float = 0.0) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    y, x = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _blobs(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Sum of soft discs (sigmoid edges), one per centre; values in [0, ~1]."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    out = np.zeros(shape, np.float32)
    for (cy, cx), r in zip(centres, radii, strict=True):
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        out = np.maximum(out, 1.0 / (1.0 + np.exp((d - r) * 2.5)))
    return out


def _points_in(mask: np.ndarray, n: int, rng: np.random.Generator,
               margin: np.ndarray | None = None) -> np.ndarray:
    ys, xs = np.nonzero(mask if margin is None else mask & margin)
    if len(ys) == 0:
        ys, xs = np.nonzero(mask)
    pick = rng.integers(0, len(ys), n)
    return np.stack([ys[pick], xs[pick]], axis=1).astype(np.float32)


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out &= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def _effusion(lung: np.ndarray, rng: np.random.Generator, depth: float) -> np.ndarray:
    """The lowest ``depth`` fraction of a lung, with a meniscus rising at its outer edge."""
    ys, xs = np.nonzero(lung)
    top, bottom = ys.min(), ys.max()
    left, right = xs.min(), xs.max()
    level = bottom - depth * (bottom - top)
    yy, xx = np.mgrid[: lung.shape[0], : lung.shape[1]].astype(np.float32)
    edge = (xx - left) / max(1, right - left)  # 0..1 across the lung
    outer = edge if rng.random() < 0.5 else 1 - edge
    rise = 0.25 * (bottom - top) * depth * outer ** 2
    return lung & (yy >= level - rise)


def _lungs(shape: tuple[int, int], rng: np.random.Generator, cy: float, cx: float,
           spread: float, ry: float, rx: float) -> list[np.ndarray]:
    return [_ellipse(shape, cy + rng.normal(0, 1), cx + side * spread + rng.normal(0, 1),
                     ry * rng.uniform(0.9, 1.1), rx * rng.uniform(0.9, 1.1),
                     side * rng.uniform(0.05, 0.25)) for side in (-1, 1)]


def _finding(shape: tuple[int, int], lungs: list[np.ndarray], finding: str,
             rng: np.random.Generator, size: float) -> np.ndarray:
    """Where the finding is, as a soft [0, 1] map."""
    if finding == "nodule":
        lung = lungs[0] | lungs[1]
        n = int(rng.integers(3, 7))
        centres = _points_in(lung, n, rng, _erode(lung, max(2, int(size * 0.05))))
        return _blobs(shape, centres, rng.uniform(0.045, 0.075, n) * size)
    if finding == "effusion":
        sides = [int(rng.integers(2))] if rng.random() < 0.3 else [0, 1]
        out = np.zeros(shape, np.float32)
        for s in sides:
            out = np.maximum(out, _effusion(lungs[s], rng, rng.uniform(0.4, 0.7)))
        return out
    return np.zeros(shape, np.float32)


# -- CT ---------------------------------------------------------------------------------------
def ct_slice_hu(rng: np.random.Generator, finding: str, z: float = 0.5,
                size: int = CT_SIZE) -> np.ndarray:
    """One axial chest slice in HU. ``z`` in [0, 1] runs from apex to base (lungs grow)."""
    shape = (size, size)
    cy, cx = size * (0.5 + rng.normal(0, 0.03)), size * (0.5 + rng.normal(0, 0.03))
    ry, rx = size * rng.uniform(0.27, 0.34), size * rng.uniform(0.40, 0.46)
    hu = np.full(shape, -1000.0, np.float32)
    body = _ellipse(shape, cy, cx, ry, rx)
    hu[body] = -100.0  # subcutaneous fat
    hu[_ellipse(shape, cy, cx, ry * 0.88, rx * 0.9)] = 40.0  # muscle and mediastinum
    grow = 0.85 + 0.15 * z
    lungs = _lungs(shape, rng, cy - 0.05 * size, cx, rx * 0.45, ry * 0.62 * grow,
                   rx * 0.32 * grow)
    for lung in lungs:
        hu[lung] = -850.0
    hu[_ellipse(shape, cy + ry * 0.62, cx, size * 0.055, size * 0.06)] = 650.0  # vertebra
    hu[_ellipse(shape, cy - ry * 0.25, cx + rx * 0.08, size * 0.10, size * 0.09)] = 35.0  # heart
    air = lungs[0] | lungs[1]
    n_vessels = int(rng.integers(10, 26))
    vessels = _blobs(shape, _points_in(air, n_vessels, rng),
                     rng.uniform(0.008, 0.022, n_vessels) * size)
    hu += vessels * 700.0 * air
    spot = _finding(shape, lungs, finding, rng, size)
    fluid = 10.0 if finding == "effusion" else 25.0
    hu = hu * (1 - spot) + fluid * spot
    return hu + rng.normal(0, 15.0, shape).astype(np.float32)  # dose



# -- radiographs ------------------------------------------------------------------------------
def radiograph(rng: np.random.Generator, finding: str, shape: tuple[int, int] = CR_SHAPE
               ) -> np.ndarray:
    """A PA chest radiograph as attenuation in [0, 1] (high = dense = bright on display)."""
    h, w = shape
    cy, cx = h * (0.52 + rng.normal(0, 0.03)), w * (0.5 + rng.normal(0, 0.03))
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    att = 0.15 + 0.5 * _ellipse(shape, cy, cx, h * 0.48, w * rng.uniform(0.36, 0.44))
    lungs = _lungs(shape, rng, cy - 0.02 * h, cx, w * 0.17, h * rng.uniform(0.28, 0.34),
                   w * rng.uniform(0.11, 0.14))
    for lung in lungs:
        att[lung] = 0.22
    att += 0.35 * _ellipse(shape, cy + 0.1 * h, cx + 0.04 * w, h * 0.15, w * 0.12)  # heart
    att += 0.25 * (np.abs(xx - cx) < w * 0.03)  # spine
    ribs = 0.5 + 0.5 * np.sin((yy + 0.12 * (xx - cx) ** 2 / w) * 2 * np.pi / (h * 0.085))
    att += 0.06 * (ribs > 0.75) * (lungs[0] | lungs[1])
    air = lungs[0] | lungs[1]
    n_vessels = int(rng.integers(8, 20))
    att += 0.10 * _blobs(shape, _points_in(air, n_vessels, rng),
                         rng.uniform(0.008, 0.018, n_vessels) * w) * air
    spot = _finding(shape, lungs, finding, rng, float(w))
    att = att * (1 - spot) + 0.62 * spot
    heel = 1.0 + rng.uniform(-0.12, 0.12) * (yy / h - 0.5)  # anode heel effect
    return np.clip(att * heel + rng.normal(0, 0.02, shape), 0, 1)
