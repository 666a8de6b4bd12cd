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

This module writes the files and the data set; the pixels come from
:mod:`cossl_edge.phantoms.pixels` (CT slices, radiographs) and the headers and fake
identities from :mod:`clinical_examples.phantom_headers`. Every name stays importable here.

>>> import tempfile, pathlib
>>> info = write_dataset(pathlib.Path(tempfile.mkdtemp()), ct_patients=1, slices=3,
...                      radiographs=2, seed=0)
>>> info["ct_slices"], info["radiographs"]
(3, 2)
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: python clinical_examples/phantoms.py OUT
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clinical_examples.phantom_headers import (  # noqa: E402
    CR_STORAGE,
    CT_STORAGE,
    DX_STORAGE,
    FAMILY,
    GIVEN,
    FakePatient,
    _dataset,
    _save,
    _set_pixels,
    _stable,
    _uid,
    fake_patient,
)
from cossl_edge.phantoms.pixels import (  # noqa: E402
    CR_SHAPE,
    CT_SIZE,
    FINDINGS,
    ct_slice_hu,
    radiograph,
)

__all__ = [
    "CR_SHAPE", "CR_STORAGE", "CT_SIZE", "CT_STORAGE", "DX_STORAGE", "FAMILY", "FINDINGS",
    "GIVEN", "FakePatient", "_dataset", "_save", "_set_pixels", "_stable", "_uid",
    "ct_slice_hu", "fake_patient", "main", "radiograph", "write_ct_series", "write_dataset",
    "write_labels", "write_radiograph",
]


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
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = _uid(series_key, "frame-of-reference")
        ds.PositionReferenceIndicator = None  # type 2
        ds.PatientPosition = "HFS"
        ds.AcquisitionNumber = 1
        ds.KVP = 120
        ds.SeriesDescription = "CHEST AXIAL 5MM"
        out.append((_save(ds, folder_of(finding) / f"IM{n - i:04d}.dcm"), finding))
    return out



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
    ds.ImagerPixelSpacing = [1.05, 1.05]  # 0.35 mm detector pixels binned by 3
    ds.SeriesDescription = "CHEST PA"
    ds.PatientOrientation = ["L", "F"]  # PA: the patient's left to the right, feet down
    if modality == "DX":
        dx_image_modules(ds, photometric)
    return _save(ds, path)


def dx_image_modules(ds, photometric: str) -> None:
    """What the DX IOD asks of a "for presentation" image beyond the pixels and window:
    DX Image, DX Anatomy Imaged, DX Detector, DX Positioning and Acquisition Context."""
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.ImageLaterality = "U"  # unpaired: the chest
    ds.AnatomicRegionSequence = [_code("43799004", "SCT", "Chest")]
    ds.ViewCodeSequence = [_code("399348003", "SCT", "postero-anterior")]  # ViewPosition PA
    ds.DetectorType = None  # type 2
    ds.PositionerType = None  # type 2
    ds.AcquisitionContextSequence = []  # type 2


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item



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
