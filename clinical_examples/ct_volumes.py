"""3D chest CT phantoms written as DICOM series: one folder per series, one CT Image
Storage file per slice, and ``labels.csv`` (series → nodule / no_nodule, the nodule's
centre in patient mm and its radius). The label is never in the headers.

``python -m clinical_examples.ct_volumes OUT --series 40 --seed 0``

The volumes are drawn by :mod:`cossl_edge.phantoms.volumes` (what varies and why is said
there); this module gives each a fake patient and the header of a real axial chest series:
Image Position/Orientation Patient stepping by the spacing along the slice normal, Slice
Thickness, Pixel Spacing, Rescale Slope/Intercept (HU), a lung window, KVP, contrast, one
Frame of Reference per series, study and series UIDs derived from the seed. Same arguments,
same bytes.

>>> import tempfile, pathlib
>>> rows = write_series_set(pathlib.Path(tempfile.mkdtemp()), 2, seed=0, size=32,
...                         length_mm=10.0)
>>> sorted(r["label"] for r in rows)
['no_nodule', 'nodule']
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: python clinical_examples/ct_volumes.py OUT
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clinical_examples.phantom_headers import (  # noqa: E402
    CT_STORAGE,
    FakePatient,
    _dataset,
    _save,
    _set_pixels,
    _uid,
    fake_patient,
)
from cossl_edge.phantoms.volumes import CtVolume, ct_volume, series_labels  # noqa: E402

LABEL_COLUMNS = ("series", "label", "centre_x_mm", "centre_y_mm", "centre_z_mm",
                 "radius_mm", "slices", "slice_spacing_mm", "slice_thickness_mm")
FIRST_PATIENT = 500  # fake patients apart from the 2D phantoms' (which start at 0)


def stored_values(hu: np.ndarray) -> np.ndarray:
    """HU → the stored 12-bit values (slope 1, intercept −1024), clipped to 0..4095."""
    return np.clip(np.round(hu + 1024.0), 0, 4095).astype(np.uint16)


def write_volume(folder: Path, vol: CtVolume, patient: FakePatient, key: str) -> list[Path]:
    """``vol`` as a CT series in ``folder``: IM0001.dcm is the most superior slice."""
    paths = []
    for k in range(vol.hu.shape[0]):
        ds = _dataset(CT_STORAGE, "CT", patient, f"{key}-study", key, f"{key}-{k}")
        _set_pixels(ds, stored_values(vol.hu[k]), "MONOCHROME2", 12)
        _ct_header(ds, vol, k, key)
        paths.append(_save(ds, folder / f"IM{k + 1:04d}.dcm"))
    return paths


def _ct_header(ds, vol: CtVolume, k: int, key: str) -> None:
    rows = vol.hu.shape[1]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = k + 1
    ds.AcquisitionNumber = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024.0, 1.0, "HU"
    ds.WindowCenter, ds.WindowWidth = -600.0, 1500.0
    ds.WindowCenterWidthExplanation = "LUNG"
    ds.FrameOfReferenceUID = _uid(key, "frame-of-reference")
    ds.PositionReferenceIndicator = None  # type 2
    ds.PatientPosition = "HFS"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [round(v, 4) for v in vol.position(k)]
    ds.SliceLocation = round(vol.position(k)[2], 4)
    ds.SliceThickness = vol.thickness
    ds.PixelSpacing = [round(vol.spacing[1], 6), round(vol.spacing[2], 6)]
    ds.ReconstructionDiameter = round(vol.spacing[1] * rows, 2)
    ds.KVP = vol.kvp
    ds.ConvolutionKernel = "LUNG"
    ds.ContrastBolusAgent = "IODINE" if vol.contrast else None  # type 2: empty = none
    if vol.contrast:
        ds.ContrastBolusRoute = "IV"
    ds.SeriesDescription = f"CHEST AXIAL {vol.thickness:g}MM"
    ds.BodyPartExamined = "CHEST"


def label_row(series: str, vol: CtVolume) -> dict[str, object]:
    row: dict[str, object] = {"series": series, "label": vol.label, "slices": vol.hu.shape[0],
                              "slice_spacing_mm": vol.spacing[0],
                              "slice_thickness_mm": vol.thickness}
    if vol.nodules:
        nodule = vol.nodules[0]
        row.update(zip(("centre_x_mm", "centre_y_mm", "centre_z_mm"),
                       (round(c, 2) for c in nodule.centre), strict=True))
        row["radius_mm"] = round(nodule.radius, 2)
    return row


def write_series_set(out: Path, series: int = 40, seed: int = 0, size: int = 160,
                     length_mm: float = 80.0) -> list[dict[str, object]]:
    """``series`` CT series under ``out/<patient>/CT_CHEST/``, half with a nodule, and
    ``out/labels.csv`` (paths relative to ``out``). Returns the label rows."""
    out = Path(out)
    rows = []
    for i, nodule in enumerate(series_labels(seed, series)):
        patient = fake_patient(FIRST_PATIENT + i, seed)
        folder = out / patient.folder / "CT_CHEST"
        vol = ct_volume(seed, i, nodule, size, length_mm)
        write_volume(folder, vol, patient, f"ct3d-{seed}-{i}")
        rows.append(label_row(folder.relative_to(out).as_posix(), vol))
    with (out / "labels.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m clinical_examples.ct_volumes",
        description="Write 3D chest CT phantoms as DICOM series (half with a lung nodule) "
                    "and OUT/labels.csv. Same arguments, same files.")
    parser.add_argument("out", type=Path, help="folder to write (created)")
    parser.add_argument("--series", type=int, default=40, help="series to write (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same files")
    parser.add_argument("--size", type=int, default=160,
                        help="rows and columns of each slice (default 160)")
    parser.add_argument("--length-mm", type=float, default=80.0,
                        help="z extent of each series in mm; the slice count follows from "
                             "the spacing drawn (default 80)")
    args = parser.parse_args(argv)
    rows = write_series_set(args.out, args.series, args.seed, args.size, args.length_mm)
    slices = sum(int(r["slices"]) for r in rows)
    nodules = sum(r["label"] == "nodule" for r in rows)
    print(f"wrote {len(rows)} series ({nodules} with a nodule, {slices} slices) to "
          f"{args.out} (labels: {args.out / 'labels.csv'})")


if __name__ == "__main__":
    main()
