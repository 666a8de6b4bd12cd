"""The real solar-cell EL scans of the development split, written as a scanner would.

``python benchmarks/elpv_data.py OUT`` reads the ``elpv-dataset`` package (PyPI,
``requirements-bench.lock``; CC BY-NC-SA 4.0, never committed here) and writes **only the
1,838 cells listed in ``shared/data/elpv-dev-cells.txt``** (the other 786 are the hidden
evaluation's and are never read) as DICOM DX files:

- ``OUT/unlabeled/``: the pretraining pool (1,238 cells), no labels;
- ``OUT/labeled/{functional,defective}/``: 600 cells never seen in pretraining, for
  few-shot episodes (defective: defect probability ≥ 0.5);
- ``OUT/manifest.json``: which cell went where, its grade and type (mono/poly).

The split is fixed by a hash of the file name. Files are 12-bit (the 8-bit PNG × 16 + 8),
MONOCHROME2, with a header window over the stored range as DX "for presentation" objects
carry (``--no-window``: none, as DX "for processing" objects, so that each image is windowed
alone); the DX modules complete (``dciodvfy`` finds no error: tests/test_dciodvfy.py,
with synthetic pixels); one in four RLE
Lossless, one in four Implicit VR, one in five without extension.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEV_LIST = ROOT.parent / "shared" / "data" / "elpv-dev-cells.txt"
EVAL_CELLS = 600
DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"


def dev_cells(dev_list: Path = DEV_LIST) -> list[str]:
    if not dev_list.is_file():
        sys.exit(f"{dev_list}: the development-split list is missing; pass --dev-list")
    return [ln.strip() for ln in dev_list.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def elpv_root() -> Path:
    try:
        import elpv_dataset
    except ImportError:
        sys.exit("elpv-dataset is not installed: pip install -r requirements-bench.lock")
    return Path(elpv_dataset.__file__).parent / "data"


def labels(root: Path) -> dict[str, tuple[float, str]]:
    out = {}
    for line in (root / "labels.csv").read_text().splitlines():
        path, prob, kind = line.split()
        out[Path(path).name] = (float(prob), kind)
    return out


def split(names: list[str]) -> set[str]:
    """The names of the labelled (episode) cells: the first EVAL_CELLS by a name hash."""
    order = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())
    return set(order[:EVAL_CELLS])


def write_dx(pixels: np.ndarray, path: Path, index: int, window: bool = True) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        RLELossless,
        generate_uid,
    )

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = DX if window else DX_FOR_PROCESSING
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
        entropy_srcs=["elpv", path.name])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["elpv-study", str(index // 60)])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["elpv-series", str(index // 60)])
    # a window makes it "for presentation"; without one it is raw data "for processing"
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION" if window else "FOR PROCESSING"
    ds.PatientName, ds.PatientID = f"Module^{index // 60:03d}", f"EL{index // 60:05d}"
    for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                    "AccessionNumber", "ReferringPhysicianName", "DetectorType",
                    "PositionerType"):
        setattr(ds, keyword, None)  # type 2: unknown, present and empty
    ds.AnatomicRegionSequence, ds.AcquisitionContextSequence = [], []  # type 2
    ds.Manufacturer = "cossl-edge elpv_data"
    ds.SeriesNumber, ds.InstanceNumber = 1, index % 60 + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ImageLaterality = "U"  # (so no series Laterality)
    ds.PatientOrientation = ["L", "F"]  # nominal: a module, not a patient, is imaged
    ds.ImagerPixelSpacing = [1, 1]  # nominal: the dataset gives no pixel size
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LIN", 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = (pixels.astype(np.uint16) * 16 + 8).tobytes()
    implicit = index % 4 == 1
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else \
        ExplicitVRLittleEndian
    ds.LossyImageCompression = "00"  # RLE is lossless too
    if index % 4 == 3:
        ds.compress(RLELossless)
    ds.save_as(path, enforce_file_format=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dev-list", type=Path, default=DEV_LIST)
    ap.add_argument("--no-window", action="store_true",
                    help="Write no WindowCenter/Width: readers then window each image alone.")
    args = ap.parse_args()
    from PIL import Image

    root = elpv_root()
    names, grades = dev_cells(args.dev_list), labels(root)
    episode = split(names)
    manifest = {}
    for i, name in enumerate(names):
        prob, kind = grades[name]
        cls = "defective" if prob >= 0.5 else "functional"
        folder = args.out / ("labeled/" + cls if name in episode else "unlabeled")
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        target = folder / (stem if i % 5 == 2 else stem + ".dcm")
        write_dx(np.asarray(Image.open(root / "images" / name)), target, i,
                 window=not args.no_window)
        manifest[name] = {"set": "labeled" if name in episode else "unlabeled",
                          "class": cls, "probability": prob, "type": kind,
                          "file": str(target.relative_to(args.out))}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    n_lab = sum(v["set"] == "labeled" for v in manifest.values())
    print(f"{len(manifest) - n_lab} unlabeled, {n_lab} labelled cells → {args.out}")


if __name__ == "__main__":
    main()
