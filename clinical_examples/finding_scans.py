"""High-resolution scans whose label is a small local finding on a textured background.

The development benchmark of the product's main case (``benchmarks/local_findings.py``): a
grayscale scan (288 px, 12-bit DICOM) where what decides the label covers at most 2% of the
image — a thin crack, a small dark blob or a faint dark patch, anywhere — while everything
that varies much more from image to image must not matter:

- a **texture unique to each image**: a mosaic of grains (Voronoi cells, 40–160 per image)
  with their own brightness, plus fine-grained noise texture — what tells one image from
  another, and what instance discrimination latches onto;
- **regular structures at varying positions**: two or three dark horizontal bars (like the
  busbars of a solar cell, or the ribs of a radiograph), faint thin vertical lines every
  10–16 px, sometimes dark cut corners;
- **global brightness, contrast and a linear gradient**, a vignette, acquisition noise and
  a small rotation (±3°).

Findings (``defective`` images; ``grade`` 1–3 says how many and how strong):

- ``crack``: a dark polyline 1–3 px wide and 60–150 px long, in a random direction;
- ``blob``: a dark disc of radius 5–10 px;
- ``patch``: a faint dark region of 16–32 px with soft edges.

Each finding's bounding box is written to ``findings.csv`` (pixel rows/columns of the stored
image), so that heatmaps can be checked against it. Everything is deterministic for a seed.

>>> import numpy as np
>>> img, boxes, mask = finding_scan(np.random.default_rng(0), grade=3, with_mask=True)
>>> img.shape, img.dtype, len(boxes) >= 2
((288, 288), dtype('float32'), True)
>>> bool(mask.mean() < 0.02)  # the findings cover at most 2% of the image
True
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from pydicom.uid import UID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clinical_examples.phantoms import _dataset, _save, _set_pixels, _uid, fake_patient  # noqa: E402

SIZE = 288
OT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")  # Secondary Capture: a generic grayscale scan
KINDS = ("crack", "blob", "patch")
Box = tuple[int, int, int, int]  # row0, col0, row1, col1 (exclusive)


def _grains(rng: np.random.Generator, size: int) -> np.ndarray:
    """A Voronoi mosaic with one brightness per grain, different in every image."""
    n = int(rng.integers(40, 160))
    seeds = rng.uniform(0, size, (n, 2)).astype(np.float32)
    step = 4  # label a coarse grid, then upsample: the mosaic costs ~2 ms
    g = np.arange(0, size, step, dtype=np.float32) + step / 2
    yy, xx = np.meshgrid(g, g, indexing="ij")
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    values = rng.normal(0.0, float(rng.uniform(0.04, 0.10)), n).astype(np.float32)
    coarse = values[d.argmin(-1)]
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_NEAREST)


def _fine_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smoothed noise at a per-image grain size and strength."""
    sigma = float(rng.uniform(0.8, 2.5))
    tex = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), sigma)
    return tex / (tex.std() + 1e-6) * float(rng.uniform(0.01, 0.035))


def _structures(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark horizontal bars, faint vertical lines, sometimes dark cut corners (additive)."""
    out = np.zeros((size, size), np.float32)
    bars = int(rng.integers(2, 4))
    for k in range(bars):
        centre = (k + 1) * size / (bars + 1) + rng.uniform(-12, 12)
        half = rng.uniform(2.0, 4.0)
        rows = np.arange(size, dtype=np.float32)
        out -= 0.25 * np.clip(half + 0.5 - np.abs(rows - centre), 0, 1)[:, None]
    pitch = rng.uniform(10, 16)
    phase = rng.uniform(0, pitch)
    cols = (np.arange(size) + phase) % pitch
    out -= float(rng.uniform(0.02, 0.06)) * (cols < 1.0)[None, :].astype(np.float32)
    if rng.random() < 0.5:  # chamfered corners of a monocrystalline cell
        c = int(rng.integers(18, 40))
        yy, xx = np.mgrid[:size, :size]
        for cy, cx in ((0, 0), (0, size - 1), (size - 1, 0), (size - 1, size - 1)):
            out[np.abs(yy - cy) + np.abs(xx - cx) < c] -= 0.5
    return out


def _illumination(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """Multiplicative gain (gradient × vignette) and a global brightness."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    gain = 1 + rng.uniform(0.0, 0.35) * (np.cos(angle) * xx + np.sin(angle) * yy)
    gain *= 1 - rng.uniform(0.0, 0.4) * (xx**2 + yy**2)
    return gain.astype(np.float32), float(rng.uniform(0.45, 0.75))


def _crack(rng: np.random.Generator, size: int, strength: float) -> tuple[np.ndarray, Box]:
    length = rng.uniform(60, 150)
    steps = 6
    pts = [rng.uniform(0.1 * size, 0.9 * size, 2)]
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(steps):
        heading += rng.normal(0, 0.35)
        pts.append(pts[-1] + length / steps * np.array([np.sin(heading), np.cos(heading)]))
    pts = np.clip(np.array(pts), 2, size - 3)
    mask = np.zeros((size, size), np.float32)
    poly = np.round(pts[:, ::-1] * 16).astype(np.int32)  # x, y with 4 fractional bits
    cv2.polylines(mask, [poly], False, 1.0, thickness=int(rng.integers(1, 4)),
                  lineType=cv2.LINE_AA, shift=4)
    return -strength * mask, _box(mask)


def _blob(rng: np.random.Generator, size: int, strength: float) -> tuple[np.ndarray, Box]:
    r = rng.uniform(5, 10)
    cy, cx = rng.uniform(0.08 * size, 0.92 * size, 2)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    mask = np.clip(r + 0.5 - np.hypot(yy - cy, xx - cx), 0, 1)
    return -strength * mask, _box(mask)


def _patch(rng: np.random.Generator, size: int, strength: float) -> tuple[np.ndarray, Box]:
    ry, rx = rng.uniform(8, 16, 2)
    cy, cx = rng.uniform(0.1 * size, 0.9 * size, 2)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    wobble = 1 + 0.3 * np.sin(np.arctan2(yy - cy, xx - cx) * int(rng.integers(2, 5)))
    mask = np.clip(1.5 * (wobble - d), 0, 1).astype(np.float32)
    return -0.6 * strength * mask, _box(mask)


def _box(mask: np.ndarray) -> Box:
    rows, cols = np.nonzero(mask > 0.05)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


FINDING_MAKERS = {"crack": _crack, "blob": _blob, "patch": _patch}


def finding_scan(rng: np.random.Generator, grade: int = 0, size: int = SIZE,
                 with_mask: bool = False):
    """One scan in [0, 1] (size×size float32) and the bounding boxes of its findings (and,
    ``with_mask``, the boolean mask of the finding pixels). ``grade`` 0: none; 1: one faint
    finding; 2: one clear finding; 3: two."""
    base = _grains(rng, size) + _fine_texture(rng, size) + _structures(rng, size)
    gain, brightness = _illumination(rng, size)
    findings = np.zeros((size, size), np.float32)
    boxes: list[Box] = []
    count = 0 if grade == 0 else 1 if grade < 3 else 2
    for _ in range(count):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        strength = rng.uniform(0.35, 0.5) if grade == 1 else rng.uniform(0.5, 0.7)
        layer, box = FINDING_MAKERS[kind](rng, size, float(strength))
        findings = np.minimum(findings, layer)  # overlapping findings do not add up
        boxes.append(box)
    img = (brightness + base + findings) * gain
    angle = rng.uniform(-3, 3)
    turn = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    img = cv2.warpAffine(img, turn, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    boxes = [_rotate_box(b, turn, size) for b in boxes]
    img = img + rng.normal(0, rng.uniform(0.01, 0.03), img.shape).astype(np.float32)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    if with_mask:
        mask = cv2.warpAffine(findings, turn, (size, size), flags=cv2.INTER_LINEAR) < -0.01
        return img, boxes, mask
    return img, boxes


def _rotate_box(box: Box, turn: np.ndarray, size: int) -> Box:
    r0, c0, r1, c1 = box
    corners = np.array([[c0, r0, 1], [c1, r0, 1], [c0, r1, 1], [c1, r1, 1]], np.float32)
    moved = corners @ turn.T  # x, y
    lo = np.floor(moved.min(0)).astype(int)
    hi = np.ceil(moved.max(0)).astype(int)
    return (max(0, lo[1]), max(0, lo[0]), min(size, hi[1]), min(size, hi[0]))


def write_scan(path: Path, img: np.ndarray, index: int, seed: int) -> Path:
    """A 12-bit MONOCHROME2 DICOM file with a header window and a fake patient."""
    patient = fake_patient(index, seed)
    key = f"findings-{seed}-{index}"
    ds = _dataset(OT_STORAGE, "OT", patient, key, key, key)
    ds.BodyPartExamined = "CHEST"
    ds.ConversionType = "SI"
    ds.SeriesInstanceUID = _uid(key, "series")
    stored = np.round(img * 4095).astype(np.uint16)
    _set_pixels(ds, stored, "MONOCHROME2", 12)
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PatientOrientation = None  # type 2C: a scan of no patient axis
    ds.BurnedInAnnotation = "NO"
    return _save(ds, path)


def write_dataset(out: Path, unlabeled: int = 3000, labeled: int = 400, seed: int = 0,
                  defect_share: float = 0.3, size: int = SIZE) -> dict:
    """``out/unlabeled/*.dcm`` (no labels; ``defect_share`` of them have findings),
    ``out/labeled/{normal,defective}/*.dcm`` (half each; defective grades 1–3 evenly) and
    ``out/findings.csv`` (file, label, grade, finding boxes as r0 c0 r1 c1;...)."""
    out = Path(out)
    rows = []
    rng = np.random.default_rng([seed, 11])
    for i in range(unlabeled):
        grade = int(rng.integers(1, 4)) if rng.random() < defect_share else 0
        img, _ = finding_scan(np.random.default_rng([seed, 0, i]), grade, size)
        write_scan(out / "unlabeled" / f"scan{i:05d}.dcm", img, i, seed)
    for j in range(labeled):
        grade = 0 if j % 2 == 0 else 1 + (j // 2) % 3
        label = "normal" if grade == 0 else "defective"
        img, boxes = finding_scan(np.random.default_rng([seed, 1, j]), grade, size)
        rel = Path("labeled") / label / f"scan{j:05d}.dcm"
        write_scan(out / rel, img, unlabeled + j, seed)
        rows.append((rel.as_posix(), label, grade,
                     ";".join(" ".join(map(str, b)) for b in boxes)))
    with open(out / "findings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "grade", "boxes"])
        w.writerows(rows)
    return {"unlabeled": unlabeled, "labeled": labeled, "size": size}


def read_boxes(out: Path) -> dict[str, tuple[str, int, list[Box]]]:
    """``findings.csv`` → {relative path: (label, grade, boxes)}."""
    table = {}
    with open(Path(out) / "findings.csv", newline="") as f:
        for row in csv.DictReader(f):
            boxes = [tuple(int(v) for v in b.split()) for b in row["boxes"].split(";") if b]
            table[row["path"]] = (row["label"], int(row["grade"]), boxes)
    return table


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--unlabeled", type=int, default=3000)
    ap.add_argument("--labeled", type=int, default=400)
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    info = write_dataset(a.out, a.unlabeled, a.labeled, a.seed, size=a.size)
    print(f"wrote {info['unlabeled']} unlabeled and {info['labeled']} labelled scans "
          f"({info['size']} px) to {a.out}")


if __name__ == "__main__":
    main()
