"""Deterministic DICOM phantoms: CT-like chest series and CR/DX chest radiographs.

Nothing here is real patient data. Every study carries a *fake* patient name, id, birth date,
accession number and institution, and patient folders are named after the fake patient, so
that the project's privacy path (salted ids, no names or raw paths in artefacts) is
exercised by every example.

Finding classes (one label per 2D image):

- ``no_finding``: normal anatomy;
- ``nodule``: one or two small round soft-tissue opacities inside a lung;
- ``effusion``: dependent fluid at the bottom of one or both lungs, with a meniscus.

Anatomy, dose (noise), exposure, window tags and vessels vary from image to image, so the
classes are visible to a reader but not a matter of raw pixel intensity alone: a nodule is a
blob a little larger than the vessels around it, an effusion replaces part of a lung whose
size and position vary.

>>> import tempfile, pathlib
>>> info = write_dataset(pathlib.Path(tempfile.mkdtemp()), ct_patients=1, slices=3,
...                      radiographs=2, seed=0)
>>> info["ct_slices"], info["radiographs"]
(3, 2)
"""

from __future__ import annotations

import argparse
import csv
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

FINDINGS = ("no_finding", "nodule", "effusion")
CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")
FAMILY = ("Quokkason", "Brindlewood", "Ottermere", "Fenwhistle", "Kestrelby", "Marlowan",
          "Tumbleford", "Wrenhollow", "Ashcombe", "Pemberlyn", "Crowhurst", "Dapplegate")
GIVEN = ("Marta", "Ilsa", "Tobiah", "Wenna", "Caspar", "Odile", "Rufus", "Liesel", "Anselm",
         "Perpetua", "Hollis", "Ysolde")
CT_SIZE = 96
CR_SHAPE = (112, 128)  # rows × columns: not square, so the contract's resize is exercised


# -- fake identities ------------------------------------------------------------------------
@dataclass(frozen=True)
class FakePatient:
    name: str  # DICOM PN, Family^Given
    patient_id: str
    birth_date: str
    sex: str

    @property
    def folder(self) -> str:  # named after the patient, as real exports often are
        return self.name.replace("^", "_")


def fake_patient(index: int, seed: int) -> FakePatient:
    rng = np.random.default_rng([seed, index, 7])
    name = f"{FAMILY[index % len(FAMILY)]}^{GIVEN[(index * 5 + seed) % len(GIVEN)]}"
    if index >= len(FAMILY):
        name += f"^{index // len(FAMILY)}"  # middle name keeps names unique
    year = int(rng.integers(1935, 2000))
    return FakePatient(name, f"PHX{seed:02d}{index:05d}",
                       f"{year}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}",
                       "MF"[index % 2])


def _stable(text: str) -> int:
    """A hash that, unlike ``hash()``, is the same in every process."""
    return zlib.crc32(text.encode())


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _dataset(sop_class: UID, modality: str, patient: FakePatient, study: str, series: str,
             instance: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(instance, "sop")
    ds.Modality = modality
    ds.PatientName, ds.PatientID = patient.name, patient.patient_id
    ds.PatientBirthDate, ds.PatientSex = patient.birth_date, patient.sex
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(study, "study"), _uid(series, "series")
    ds.StudyDate = ds.SeriesDate = "20240315"
    ds.StudyTime = "101500"
    ds.AccessionNumber = f"ACC{_stable(study) % 10**8:08d}"
    ds.InstitutionName = "Phantom General Hospital"
    ds.ReferringPhysicianName = "Placeholder^Doctor"
    ds.Manufacturer = "cossl-edge phantoms"
    ds.BodyPartExamined = "CHEST"
    return ds


def _set_pixels(ds: Dataset, arr: np.ndarray, photometric: str, bits: int) -> None:
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()


def _save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


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


def write_ct_series(folder: Path | Callable[[str], Path], patient: FakePatient,
                    findings: list[str], seed: int, series_key: str) -> list[tuple[Path, str]]:
    """One CT series (one file per slice, 5 mm apart), stored as (HU + 1024) / slope with a
    lung window in the header; file names run against slice order, as real exports can.
    ``folder`` may be a function of the slice's finding (class-subfolder layouts)."""
    folder_of = folder if callable(folder) else (lambda _finding: folder)
    rng = np.random.default_rng([seed, _stable(series_key)])
    slope = float(rng.choice([1.0, 2.0]))
    center, width = -600.0 + rng.normal(0, 30), 1500.0 + rng.normal(0, 60)
    anatomy = int(rng.integers(2**31))
    out = []
    n = len(findings)
    for i, finding in enumerate(findings):
        slice_rng = np.random.default_rng([anatomy, i])
        hu = ct_slice_hu(slice_rng, finding, z=i / max(1, n - 1))
        stored = np.clip(np.round((hu + 1024.0) / slope), 0, 4095).astype(np.uint16)
        ds = _dataset(CT_STORAGE, "CT", patient, f"{series_key}-study", series_key,
                      f"{series_key}-{i}")
        _set_pixels(ds, stored, "MONOCHROME2", 12)
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, -1024.0, "HU"
        ds.WindowCenter, ds.WindowWidth = round(center, 1), round(width, 1)
        ds.WindowCenterWidthExplanation = "LUNG"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, -5.0 * i]
        ds.SliceThickness, ds.PixelSpacing = 5.0, [3.5, 3.5]
        ds.InstanceNumber = n - i
        ds.KVP = 120
        ds.SeriesDescription = "CHEST AXIAL 5MM"
        out.append((_save(ds, folder_of(finding) / f"IM{n - i:04d}.dcm"), finding))
    return out


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


def write_radiograph(path: Path, patient: FakePatient, finding: str, seed: int, key: str,
                     modality: str, photometric: str) -> Path:
    """A 12-bit CR or DX image with a header window; MONOCHROME1 stores dense as dark."""
    rng = np.random.default_rng([seed, _stable(key)])
    att = radiograph(rng, finding)
    gamma = rng.uniform(0.85, 1.2)  # exposure and processing differ between images
    stored = np.round(4095 * att ** gamma).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    sop = CR_STORAGE if modality == "CR" else DX_STORAGE
    ds = _dataset(sop, modality, patient, f"{key}-study", key, key)
    _set_pixels(ds, stored, photometric, 12)
    lo, hi = np.percentile(stored, [1, 99])  # each site windows its own way
    center = (lo + hi) / 2 + rng.uniform(-0.05, 0.05) * (hi - lo)
    ds.WindowCenter = round(float(center), 1)
    ds.WindowWidth = round(float(hi - lo) * rng.uniform(0.9, 1.1), 1)
    ds.ViewPosition = "PA"
    ds.ImagerPixelSpacing = [0.35 * 3, 0.35 * 3]
    ds.SeriesDescription = "CHEST PA"
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
    return _save(ds, path)


# -- data sets ------------------------------------------------------------------------------
def _balanced(n: int, rng: np.random.Generator) -> list[str]:
    labels = [FINDINGS[i % len(FINDINGS)] for i in range(n)]
    return [labels[i] for i in rng.permutation(n)]


def write_dataset(out: Path, ct_patients: int = 12, slices: int = 24, radiographs: int = 120,
                  seed: int = 0, first_patient: int = 0, labels_csv: bool = True,
                  layout: str = "csv") -> dict:
    """CT series under ``out/ct/<patient>/CT_CHEST/`` and radiographs under
    ``out/radiographs/<patient>/``, balanced over :data:`FINDINGS`, and ``out/labels.csv``
    (``path,label``, paths relative to ``out``). ``layout="folders"`` puts everything under
    ``out/<finding>/`` first (class subfolders; a CT series then spans three folders).
    Same arguments, same files."""
    out = Path(out)
    if layout not in ("csv", "folders"):
        raise ValueError(f"layout must be 'csv' or 'folders', got {layout!r}")

    def base(finding: str) -> Path:
        return out / finding if layout == "folders" else out

    rng = np.random.default_rng([seed, 1])
    rows: list[tuple[Path, str]] = []
    for p in range(ct_patients):
        patient = fake_patient(first_patient + p, seed)
        rows += write_ct_series(
            lambda f, pf=patient.folder: base(f) / "ct" / pf / "CT_CHEST", patient,
            _balanced(slices, rng), seed, f"ct-{seed}-{first_patient + p}")
    findings = _balanced(radiographs, rng)
    for r, finding in enumerate(findings):
        patient = fake_patient(first_patient + ct_patients + r, seed)
        modality = "CR" if r % 2 == 0 else "DX"
        photometric = "MONOCHROME1" if (r // 2) % 2 == 0 else "MONOCHROME2"
        path = base(finding) / "radiographs" / patient.folder / f"{modality}_{r:04d}.dcm"
        write_radiograph(path, patient, finding, seed, f"cr-{seed}-{first_patient}-{r}",
                         modality, photometric)
        rows.append((path, finding))
    if labels_csv:
        write_labels(out / "labels.csv", rows, out)
    return {"ct_slices": ct_patients * slices, "radiographs": radiographs,
            "classes": list(FINDINGS), "labels": str(out / "labels.csv")}


def write_labels(path: Path, rows: list[tuple[Path, str]], root: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for p, label in sorted(rows):
            writer.writerow([p.relative_to(root).as_posix(), label])
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic DICOM phantom data set.")
    parser.add_argument("out", type=Path, help="folder to write (created)")
    parser.add_argument("--ct-patients", type=int, default=12, help="CT series to write")
    parser.add_argument("--slices", type=int, default=24, help="slices per CT series")
    parser.add_argument("--radiographs", type=int, default=120, help="CR/DX images to write")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    args = parser.parse_args(argv)
    info = write_dataset(args.out, args.ct_patients, args.slices, args.radiographs, args.seed)
    print(f"wrote {info['ct_slices']} CT slices and {info['radiographs']} radiographs "
          f"to {args.out} (labels: {info['labels']})")


if __name__ == "__main__":
    main()
