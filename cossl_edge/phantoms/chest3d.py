"""The anatomy of the 3D chest phantoms, drawn in millimetres on a fine grid along z.

Coordinates are DICOM patient coordinates (LPS: x to the patient's left, y posterior, z
superior), so what is drawn here is where the written headers say it is. A plane is one
axial cross-section at height ``z``; :mod:`cossl_edge.phantoms.volumes` stacks fine planes
and integrates them over each slice's thickness (the partial-volume blur of real CT).

Vessels are tubes (capsules: a segment and a radius) because that is what makes a single
axial slice ambiguous: a tube running along z cuts every slice in a round blob of a
nodule's size, and only its extent over several slices tells it from a nodule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tube:
    """A vessel segment: from ``start`` to ``end`` (LPS mm), ``radius`` mm."""
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    radius: float
    decoy: bool = False  # a straight vessel drawn to look like a nodule in one slice


@dataclass(frozen=True)
class Nodule:
    """An ellipsoidal nodule: centre (LPS mm), radius (mm, the mean semi-axis), HU inside."""
    centre: tuple[float, float, float]
    radius: float
    hu: float
    axes: tuple[float, float, float] = (1.0, 1.0, 1.0)  # semi-axes / radius (x, y, z)


@dataclass(frozen=True)
class Chest:
    """One patient's chest: the body outline, the lungs along the slab, bones and blood."""
    centre: tuple[float, float]  # body centre (x, y) mm, off the scanner's isocentre
    half_width: float  # body semi-axes, mm
    half_depth: float
    lung_top: float  # z (mm) of the lung apices; lungs run down ``lung_length`` mm
    lung_length: float
    lung_hu: float  # parenchyma at the anterior surface; denser posteriorly (gravity)
    gravity_hu: float
    bone_hu: float  # cortical bone at this kV
    blood_hu: float  # 40 HU, plus iodine when contrast was given
    rib_phase: float
    rib_period: float
    rib_rise: float  # ribs run obliquely: this much higher (mm) at the back than the front


def draw_chest(rng: np.random.Generator, z_centre: float, kv_factor: float,
               contrast_hu: float) -> Chest:
    """A chest whose lungs cover ``z_centre`` (the slab's middle) somewhere between apex and
    base. ``kv_factor`` scales bone (and, by the caller, iodine) HU as a lower kV would."""
    half_width = rng.uniform(125.0, 185.0)
    length = rng.uniform(210.0, 290.0)
    return Chest(
        centre=(rng.normal(0, 12.0), rng.normal(0, 10.0)),
        half_width=half_width, half_depth=half_width * rng.uniform(0.6, 0.78),
        lung_top=z_centre + length * rng.uniform(0.3, 0.7), lung_length=length,
        lung_hu=rng.uniform(-890.0, -830.0), gravity_hu=rng.uniform(20.0, 70.0),
        bone_hu=rng.uniform(650.0, 850.0) * kv_factor, blood_hu=40.0 + contrast_hu,
        rib_phase=rng.uniform(0, 30.0), rib_period=rng.uniform(24.0, 32.0),
        rib_rise=rng.uniform(25.0, 50.0))


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float,
             angle: float = 0.0) -> np.ndarray:
    """(x/rx)² + (y/ry)² in the ellipse's frame: ≤ 1 inside."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * (x - cx) + s * (y - cy), -s * (x - cx) + c * (y - cy)
    return (u / rx) ** 2 + (v / ry) ** 2


def lung_ellipses(chest: Chest, z: float) -> list[tuple[float, float, float, float, float]]:
    """The two lungs' cross-sections at ``z``: (cx, cy, rx, ry, angle) each, empty outside
    the lungs. They widen from apex to the lower chest and shrink above the diaphragm."""
    u = (chest.lung_top - z) / chest.lung_length  # 0 at the apices, 1 at the bases
    if not 0.0 <= u <= 1.0:
        return []
    grow = float(np.clip(np.sin(np.pi * (0.08 + 0.87 * u)), 0.2, 1.0)) ** 0.5
    cx, cy = chest.centre
    rx, ry = chest.half_width * 0.3 * grow, chest.half_depth * 0.72 * grow
    return [(cx + side * chest.half_width * 0.45, cy - 0.04 * chest.half_depth, rx, ry,
             side * 0.12) for side in (-1.0, 1.0)]


def lung_mask(chest: Chest, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
    """Where the lungs are at height ``z``: the lung ellipses, less the heart and, near the
    bases, the diaphragm's domes pushing up into them."""
    cx, cy = chest.centre
    hw, hd = chest.half_width, chest.half_depth
    lung = np.zeros(x.shape, bool)
    for lx, ly, rx, ry, angle in lung_ellipses(chest, z):
        lung |= _ellipse(x, y, lx, ly, rx, ry, angle) <= 1.0
    u = (chest.lung_top - z) / chest.lung_length
    if u > 0.55:  # heart, then the diaphragm's domes push up into the lungs' bases
        heart = _ellipse(x, y, cx + 0.12 * hw, cy - 0.2 * hd, 0.32 * hw, 0.42 * hd, 0.5)
        lung &= heart > min(1.0, (u - 0.55) * 6.0) ** 0.5
        if u > 0.75:
            dome = min(1.0, (u - 0.75) * 4.0)
            for side in (-1.0, 1.0):
                lung &= _ellipse(x, y, cx + side * 0.42 * hw, cy, 0.3 * hw * dome,
                                 0.6 * hd * dome) > 1.0
    return lung


def plane(chest: Chest, x: np.ndarray, y: np.ndarray, z: float, ribs: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """(HU, lung mask) of the anatomy at height ``z`` on the grid ``x``, ``y`` (mm), without
    vessels, nodules, texture or noise."""
    cx, cy = chest.centre
    hw, hd = chest.half_width, chest.half_depth
    hu = np.full(x.shape, -1000.0, np.float32)
    body = _ellipse(x, y, cx, cy, hw, hd)
    hu[body <= 1.0] = -100.0  # subcutaneous fat
    hu[_ellipse(x, y, cx, cy, hw * 0.9, hd * 0.88) <= 1.0] = 40.0  # muscle, mediastinum
    lung = lung_mask(chest, x, y, z)
    gradient = chest.gravity_hu * np.clip((y - cy) / hd + 0.5, 0.0, 1.0)
    hu = np.where(lung, chest.lung_hu + gradient, hu).astype(np.float32)
    aorta = _ellipse(x, y, cx + 0.1 * hw, cy + 0.35 * hd, 0.08 * hw, 0.08 * hw) <= 1.0
    hu[aorta & ~lung] = chest.blood_hu
    _spine(hu, x, y, chest)
    if ribs:
        _ribs(hu, x, y, z, chest)
    return hu, lung


def _spine(hu: np.ndarray, x: np.ndarray, y: np.ndarray, chest: Chest) -> None:
    cx, cy = chest.centre
    vx, vy, r = cx, cy + 0.62 * chest.half_depth, 0.12 * chest.half_width
    body = _ellipse(x, y, vx, vy, r, r * 0.9)
    hu[body <= 1.0] = chest.bone_hu * 0.35  # cancellous
    hu[(body <= 1.0) & (body > 0.7)] = chest.bone_hu  # cortex
    canal = _ellipse(x, y, vx, vy + 1.5 * r, 0.45 * r, 0.4 * r) <= 1.0
    arch = _ellipse(x, y, vx, vy + 1.5 * r, 0.8 * r, 0.7 * r) <= 1.0
    hu[arch & ~canal] = chest.bone_hu * 0.8
    hu[canal] = 20.0


def _ribs(hu: np.ndarray, x: np.ndarray, y: np.ndarray, z: float, chest: Chest) -> None:
    """Ribs as oblique hoops just inside the body wall: at angle θ around the body a rib
    is cut where (z − rise·sin θ − phase) falls in the rib's band, so the same rib sits
    higher at the back than at the front, and each axial slice shows a few rib segments."""
    cx, cy = chest.centre
    theta = np.arctan2((y - cy) / chest.half_depth, (x - cx) / chest.half_width)
    radial = np.sqrt(_ellipse(x, y, cx, cy, chest.half_width, chest.half_depth))
    shell = (radial > 0.8) & (radial < 0.87)
    not_sternum = np.abs(theta + np.pi / 2) > 0.45
    phase = (z - chest.rib_rise * np.sin(theta) - chest.rib_phase) % chest.rib_period
    hu[shell & not_sternum & (phase < 9.0)] = chest.bone_hu * 0.9


# -- vessels and nodules ----------------------------------------------------------------------
def vessel_tree(rng: np.random.Generator, chest: Chest, z_lo: float, z_hi: float
                ) -> list[Tube]:
    """Branching pulmonary vessels from each hilum, plus a few straight near-vertical
    decoys of a nodule's calibre inside the slab [z_lo, z_hi]."""
    tubes: list[Tube] = []
    z_hilum = chest.lung_top - 0.45 * chest.lung_length
    for lx, ly, rx, _ry, _a in lung_ellipses(chest, z_hilum):
        medial = np.sign(chest.centre[0] - lx)
        root = np.array([lx + medial * 0.6 * rx, ly, z_hilum])
        for _ in range(int(rng.integers(4, 7))):
            d = rng.normal(0, 1, 3) * np.array([0.6, 0.6, 1.2])
            d[0] -= medial * 0.6  # outward, away from the mediastinum
            _branch(rng, root, d / np.linalg.norm(d), rng.uniform(3.5, 5.0), 0, tubes)
    for _ in range(int(rng.integers(8, 16))):  # peripheral branches within the slab
        z = rng.uniform(*in_lungs(chest, z_lo, z_hi))
        x, y = point_in_lung(rng, chest, z, 5.0)
        d = rng.normal(0, 1, 3)
        _branch(rng, np.array([x, y, z]), d / np.linalg.norm(d), rng.uniform(1.5, 2.8), 3,
                tubes)
    for _ in range(int(rng.integers(2, 6))):
        tubes.append(_decoy(rng, chest, z_lo, z_hi))
    return tubes


def _branch(rng: np.random.Generator, start: np.ndarray, direction: np.ndarray,
            radius: float, depth: int, out: list[Tube]) -> None:
    length = radius * rng.uniform(5.0, 9.0)
    end = start + direction * length
    out.append(Tube(tuple(start), tuple(end), radius))
    if depth >= 5 or radius < 1.0:
        return
    for _ in range(2):
        turn = direction + rng.normal(0, 0.55, 3)
        _branch(rng, end, turn / np.linalg.norm(turn), radius * rng.uniform(0.68, 0.82),
                depth + 1, out)


def _decoy(rng: np.random.Generator, chest: Chest, z_lo: float, z_hi: float) -> Tube:
    """A straight vessel of 1.5–4 mm radius, tilted ≤ 30° from z, 25–60 mm long."""
    z = rng.uniform(*in_lungs(chest, z_lo, z_hi))
    x, y = point_in_lung(rng, chest, z, 8.0)
    tilt, azimuth = rng.uniform(0, np.pi / 6), rng.uniform(0, 2 * np.pi)
    d = np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth),
                  np.cos(tilt)])
    half = rng.uniform(12.5, 30.0)
    c = np.array([x, y, z])
    return Tube(tuple(c - half * d), tuple(c + half * d), rng.uniform(1.5, 4.0), True)


def in_lungs(chest: Chest, z_lo: float, z_hi: float) -> tuple[float, float]:
    """The part of [z_lo, z_hi] where the lungs are roomy (10–90 % of apex to base)."""
    top = chest.lung_top - 0.1 * chest.lung_length
    bottom = chest.lung_top - 0.9 * chest.lung_length
    return max(z_lo, bottom), min(z_hi, top)


def point_in_lung(rng: np.random.Generator, chest: Chest, z: float, margin: float
                  ) -> tuple[float, float]:
    """A point (x, y) at height ``z`` whose ball of radius ``margin`` mm is in a lung
    (checked at its centre and at 14 points of its surface), by rejection."""
    lungs = lung_ellipses(chest, z)
    if not lungs:
        raise ValueError(f"no lung at z={z:.1f} mm")
    probe = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1],
                      [0, 0, -1], *(np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1)
                                              for c in (-1, 1)]) / np.sqrt(3))]) * margin
    for _ in range(500):
        lx, ly, rx, ry, angle = lungs[int(rng.integers(len(lungs)))]
        r, t = 0.95 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        u, v = r * rx * np.cos(t), r * ry * np.sin(t)
        c, s = np.cos(angle), np.sin(angle)
        x, y = lx + c * u - s * v, ly + s * u + c * v
        pts = probe + np.array([x, y, z])
        if all(lung_mask(chest, p[0:1], p[1:2], float(p[2]))[0] for p in pts):
            return float(x), float(y)
    raise ValueError(f"no room for {margin:.1f} mm in the lungs at z={z:.1f} mm")


def draw_nodule(rng: np.random.Generator, chest: Chest, z_lo: float, z_hi: float) -> Nodule:
    """A nodule of radius 2–6 mm: solid (−50..60 HU) three times in four, else ground glass
    (−450..−250 HU); slightly ellipsoidal; inside a lung, within the slab."""
    radius = rng.uniform(2.0, 6.0)
    lo, hi = in_lungs(chest, z_lo, z_hi)
    lo, hi = (lo + radius, hi - radius) if hi - lo > 2 * radius else ((lo + hi) / 2,) * 2
    z = rng.uniform(lo, hi)
    x, y = point_in_lung(rng, chest, z, radius + 4.0)
    solid = rng.random() < 0.75
    hu = rng.uniform(-50.0, 60.0) if solid else rng.uniform(-450.0, -250.0)
    axes = tuple(float(a) for a in rng.uniform(0.8, 1.25, 3))
    return Nodule((x, y, float(z)), float(radius), float(hu), axes)


def tube_fraction(tube: Tube, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """How much of each point the tube fills, 0..1, with a soft edge of ~0.5 mm."""
    a, b = np.asarray(tube.start), np.asarray(tube.end)
    ab = b - a
    t = ((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / max(ab @ ab, 1e-9)
    t = np.clip(t, 0.0, 1.0)
    d = np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2
                + (z - a[2] - t * ab[2]) ** 2)
    return np.clip(tube.radius + 0.5 - d, 0.0, 1.0)


def nodule_fraction(nodule: Nodule, x: np.ndarray, y: np.ndarray, z: np.ndarray
                    ) -> np.ndarray:
    """How much of each point the nodule fills, 0..1, soft edge of ~0.5 mm."""
    (cx, cy, cz), (ax, ay, az) = nodule.centre, nodule.axes
    r = nodule.radius
    d = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2)
    return np.clip(r + 0.5 - d, 0.0, 1.0)
