"""Synthetic DICOM files written by pydicom, for tests and benchmarks.

Every file carries a fake PatientName and PatientID (``FAKE_NAME``, ``FAKE_ID``) so that
privacy tests can look for them in artefacts. UIDs are derived from the arguments, so the same
call writes the same files.

>>> import tempfile, pathlib
>>> paths = ct_series(pathlib.Path(tempfile.mkdtemp()), n=3)
>>> len(paths)
3
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

FAKE_NAME = "Zyxwvut^Quokka"
FAKE_ID = "PID-93517-QX"
CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
US_STORAGE = UID("1.2.840.10008.5.1.4.1.1.6.1")
MF_GRAY_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7.3")  # multi-frame grayscale word SC
SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")  # basic text SR


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def base_dataset(sop_class: UID, modality: str, key: str, series: str = "s") -> Dataset:
    """A dataset with file meta, patient, study and series identity, and no pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid(key, "sop")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.Modality = modality
    ds.PatientName = FAKE_NAME
    ds.PatientID = FAKE_ID
    ds.PatientBirthDate = "19700101"
    ds.StudyInstanceUID = _uid(series, "study")
    ds.SeriesInstanceUID = _uid(series, "series")
    for keyword in TYPE2:
        setattr(ds, keyword, None)  # type 2: present, empty (nothing made up)
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Manufacturer = "cossl-edge tests"
    return ds


# Type 2 (and 2C) attributes of the patient, study, series and image modules that the valid
# objects carry empty, so that dciodvfy finds them complete (tests/test_dciodvfy.py).
TYPE2 = ("PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
         "AccessionNumber", "Laterality")


def _plane(ds: Dataset, series: str, z: float = 0.0) -> None:
    """Image Plane and Frame of Reference (CT, MR): axial, 1 mm pixels."""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, z]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = None
    ds.FrameOfReferenceUID = _uid(series, "frame-of-reference")
    ds.PositionReferenceIndicator = None
    ds.PatientPosition = "HFS"


def _ct(ds: Dataset, series: str, z: float = 0.0) -> None:
    _plane(ds, series, z)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = ds.KVP = None


def set_pixels(ds: Dataset, arr: np.ndarray, photometric: str = "MONOCHROME2") -> Dataset:
    """Attach a uint8/uint16/int16 array (H×W, F×H×W, or H×W×3 colour) as native pixels."""
    colour = photometric in ("RGB", "YBR_FULL")
    frames = arr.shape[0] if (arr.ndim == 3 and not colour) or arr.ndim == 4 else 1
    ds.Rows, ds.Columns = (arr.shape[1:3] if frames > 1 else arr.shape[:2])
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = arr.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    return ds


def write(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def ct_hu(n: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """n×rows×cols HU volumes: air, soft tissue and a bone disc, slice i offset by 10·i."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 20, (n, rows, cols))
    hu[:, : rows // 4] = -1000  # air band on top
    yy, xx = np.mgrid[:rows, :cols]
    hu[:, (yy - rows / 2) ** 2 + (xx - cols / 2) ** 2 < (rows / 6) ** 2] = 1200
    return np.round(hu + 10 * np.arange(n)[:, None, None])


def ct_series(folder: Path, n: int = 4, rows: int = 16, cols: int = 16,
              slope: float = 2.0, intercept: float = -1024.0,
              window: tuple[float, float] = (40.0, 400.0), suffix: str = ".dcm",
              series: str = "ct", shuffle_names: bool = True) -> list[Path]:
    """A CT volume, one file per slice, stored values = (HU − intercept) / slope.

    Slice i lies at z = 5·i along the normal; file names and InstanceNumbers run in the
    opposite order when ``shuffle_names`` so that ordering by position is really tested.
    Returns the paths in true slice order."""
    hu = ct_hu(n, rows, cols)
    paths = []
    for i in range(n):
        ds = base_dataset(CT_STORAGE, "CT", f"{series}-{i}", series)
        stored = np.round((hu[i] - intercept) / slope).astype(np.int16)
        set_pixels(ds, stored)
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
        ds.WindowCenter, ds.WindowWidth = window
        _ct(ds, series, 5.0 * i)
        ds.InstanceNumber = (n - i) if shuffle_names else i + 1
        name = f"slice{(n - i) if shuffle_names else i:03d}{suffix}"
        paths.append(write(ds, folder / name))
    return paths


def mr_image(path: Path, rows: int = 16, cols: int = 16, window: bool = False) -> Path:
    """An MR slice, 12-bit values in uint16, no rescale; a header window if asked."""
    ds = base_dataset(MR_STORAGE, "MR", f"mr-{path.name}", "mr")
    arr = (np.arange(rows * cols).reshape(rows, cols) * 4000 // (rows * cols)).astype(np.uint16)
    set_pixels(ds, arr)
    ds.BitsStored, ds.HighBit = 12, 11
    _plane(ds, "mr")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant, ds.MRAcquisitionType = "SE", "NONE", "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = 500, 20, 1
    ds.ScanOptions = None
    if window:
        ds.WindowCenter, ds.WindowWidth = 2000, 2000
    return write(ds, path)


def cr_monochrome1(path: Path, rows: int = 16, cols: int = 16) -> Path:
    """A MONOCHROME1 radiograph (high stored value = dark) with a header window."""
    ds = base_dataset(CR_STORAGE, "CR", f"cr-{path.name}", "cr")
    arr = np.tile(np.linspace(0, 1023, cols).astype(np.uint16), (rows, 1))
    set_pixels(ds, arr, "MONOCHROME1")
    ds.BitsStored, ds.HighBit = 10, 9
    ds.BodyPartExamined = ds.ViewPosition = ds.PatientOrientation = None
    ds.WindowCenter, ds.WindowWidth = 512, 1024
    return write(ds, path)


def multiframe(path: Path, frames: int = 5, rows: int = 12, cols: int = 12) -> Path:
    """A multi-frame grayscale object; frame f is filled with 100·(f+1), and the header
    window (500, 1000) maps that to about 0.1·(f+1)."""
    ds = base_dataset(MF_GRAY_STORAGE, "OT", f"mf-{path.name}", "mf")
    arr = np.stack([np.full((rows, cols), 100 * (f + 1), np.uint16) for f in range(frames)])
    arr[:, 0, 0] = 0  # a dark pixel so percentile windows have a range
    set_pixels(ds, arr)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 500, 1000, "LINEAR_EXACT"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.FrameTime, ds.FrameIncrementPointer = 100, 0x00181063  # (0018,1063) Frame Time
    ds.ConversionType, ds.BurnedInAnnotation = "WSD", "NO"
    ds.PatientOrientation = None
    return write(ds, path)


def us_rgb(path: Path, rows: int = 16, cols: int = 20) -> Path:
    """An RGB ultrasound image: red ramp, constant green 128, blue 255."""
    ds = base_dataset(US_STORAGE, "US", f"us-{path.name}", "us")
    arr = np.zeros((rows, cols, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, cols).astype(np.uint8)
    arr[..., 1], arr[..., 2] = 128, 255
    set_pixels(ds, arr, "RGB")
    ds.ImageType = ds.PatientOrientation = None
    return write(ds, path)


def rle_ct(path: Path, rows: int = 16, cols: int = 16) -> Path:
    """A CT slice compressed with RLE Lossless (pydicom's own encoder)."""
    ds = base_dataset(CT_STORAGE, "CT", f"rle-{path.name}", "rle")
    stored = np.round(ct_hu(1, rows, cols)[0] + 1024).astype(np.uint16)
    set_pixels(ds, stored)
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    _ct(ds, "rle")
    ds.compress(RLELossless)
    return write(ds, path)


def sr_document(path: Path) -> Path:
    """A Basic Text SR: a DICOM object with no image."""
    ds = base_dataset(SR_STORAGE, "SR", f"sr-{path.name}", "sr")
    ds.ValueType = "CONTAINER"
    return write(ds, path)


def mixed_folder(folder: Path) -> dict[str, list[Path]]:
    """One of everything, for discovery and inventory tests."""
    return {
        "ct": ct_series(folder / "ct", n=3),
        "mr": [mr_image(folder / "mr" / "IM0001", window=True)],
        "cr": [cr_monochrome1(folder / "cr.dcm")],
        "mf": [multiframe(folder / "mf.dcm", frames=4)],
        "us": [us_rgb(folder / "us.dcm")],
        "rle": [rle_ct(folder / "rle.dcm")],
        "sr": [sr_document(folder / "report.dcm")],
    }
