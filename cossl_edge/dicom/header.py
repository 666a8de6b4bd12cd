"""The header-only pass: what a DICOM file holds, read without touching its pixels.

``read_header`` reads up to the pixel data (``stop_before_pixels``), then uses the file
position to learn how many bytes of pixel data the file really holds, so that truncated
files and absurd declared sizes are refused before any array is allocated.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import Tag
from pydicom.uid import UID

DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})
MAX_FRAME_BYTES = 1 << 30  # one decoded frame above 1 GiB is a corrupt header, not a scan
# Declared raw size vs bytes in the file, for compressed data: JPEG 2000 reaches ~2000:1 on
# near-uniform images; far beyond that the header is lying.
MAX_COMPRESSION_RATIO = 10_000

# Objects that carry no image worth learning from, even when some have pixel-like grids.
NON_IMAGE_MODALITIES = {
    "SR": "structured report", "RTSTRUCT": "RT structure set", "RTPLAN": "RT plan",
    "RTDOSE": "RT dose grid", "RTRECORD": "RT treatment record", "PR": "presentation state",
    "KO": "key object selection", "SEG": "segmentation mask", "REG": "registration",
    "DOC": "encapsulated document", "ECG": "waveform", "HD": "waveform", "AU": "audio",
}

# Tags that identify a patient or a visit (a subset of PS3.15's basic profile). The inventory
# reports which are present by name; their values are never read out.
PHI_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex",
    "PatientAge", "PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs",
    "OtherPatientNames", "PatientMotherBirthName", "EthnicGroup", "PatientComments",
    "AccessionNumber", "StudyID", "StudyDate", "StudyTime", "InstitutionName",
    "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "DeviceSerialNumber",
)
_PHI_TAGS = tuple((k, Tag(tag_for_keyword(k))) for k in PHI_KEYWORDS)
# Reads smaller than this pass straight through the bounded reader: only a large read (a
# damaged length) could allocate beyond the file, and the check costs a seek per read.
_UNCHECKED_READ = 1 << 20


def phi_tags(ds: Dataset) -> list[str]:
    """The :data:`PHI_KEYWORDS` that hold a value in ``ds``. Reads the raw elements without
    converting them (converting every patient tag of every file was a third of the header
    pass), and the value never leaves this function."""
    found = []
    for keyword, tag in _PHI_TAGS:
        if tag not in ds:
            continue
        value = ds.get_item(tag).value
        if isinstance(value, bytes):
            value = value.strip(b" \x00")
        elif isinstance(value, str):
            value = value.strip(" \x00")
        if value is not None and value != b"" and value != "":
            found.append(keyword)
    return found


class DicomSkip(ValueError):
    """A file left out of the samples; the message is the reason (never patient data).
    ``facts`` holds :func:`object_facts` when the header could be read."""

    facts: dict | None = None


@dataclass
class DicomHeader:
    """The facts of one DICOM file that discovery, ordering and the inventory need."""

    path: Path
    sop_instance_uid: str
    series_uid: str
    sop_class: str
    modality: str
    transfer_syntax: UID
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    bits_allocated: int
    photometric: str
    instance_number: int | None
    slice_position: float | None  # ImagePositionPatient projected on the slice normal
    pixel_bytes_in_file: int
    phi_tags: list[str] = field(default_factory=list)
    burned_in_annotation: bool = False

    @property
    def frame_bytes(self) -> int:
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated
        return -(-bits // 8)


def looks_like_dicom(path: Path) -> bool:
    """A DICOM suffix, or the 'DICM' magic after the 128-byte preamble (scanner exports
    often name files by UID, with no suffix at all)."""
    if path.suffix.lower() in DICOM_SUFFIXES or path.name.upper() == "DICOMDIR":
        return True
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def read_header(path: Path) -> DicomHeader:
    """Header-only read. Raises :class:`DicomSkip` with the reason for anything that is not
    a decodable-looking image (non-image object, corrupt, truncated, zero bytes)."""
    size = path.stat().st_size
    if size == 0:
        raise DicomSkip("empty file (0 bytes)")
    # pydicom converts elements lazily: reading the facts belongs inside the same guard (a
    # damaged element raises on first access, and its warning would quote the value).
    try:
        with open_bounded(path) as f, pydicom_quiet():
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            pixel_start = f.tell()
            # A deflated file is read through an inflated copy, so its position says nothing
            # about the file; bound its pixel bytes by the file size instead.
            if _transfer_syntax(ds).is_deflated:
                pixel_start = 0
            return _header_from(ds, path, size - pixel_start)
    except DicomSkip:
        raise
    except InvalidDicomError as e:
        raise DicomSkip(f"not a DICOM file ({e})") from e
    except Exception as e:  # damaged files raise many types; one must not stop a run
        raise DicomSkip(f"corrupt DICOM header ({type(e).__name__})") from e


class _BoundedReader(io.BufferedReader):
    """A file whose reads never ask for more than it holds. A damaged element length (up
    to 4 GiB) would otherwise have Python allocate that much before finding the file short."""

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n > _UNCHECKED_READ:
            n = min(n, max(0, self.size - self.tell()))
        return super().read(n)


def open_bounded(path: Path) -> _BoundedReader:
    f = _BoundedReader(io.FileIO(path, "rb"))
    f.size = os.fstat(f.fileno()).st_size
    return f


def header_of_dataset(ds: Dataset, path: Path, pixel_bytes: int) -> DicomHeader:
    """:func:`read_header`'s checks on a dataset already read with ``stop_before_pixels``
    (by a caller that needs its other attributes too); ``pixel_bytes``: the bytes from the
    pixel data element to the end of the file. Raises :class:`DicomSkip`."""
    return _header_from(ds, path, pixel_bytes)


def _header_from(ds: Dataset, path: Path, pixel_bytes: int) -> DicomHeader:
    try:
        return _image_header(ds, path, pixel_bytes)
    except DicomSkip as e:
        e.facts = object_facts(ds)  # the inventory still lists what a skipped object is
        raise


def object_facts(ds: Dataset) -> dict:
    """What any DICOM object is, image or not: never a value of a patient tag."""
    return {
        "modality": str(ds.get("Modality", "") or ""),
        "sop_class": _sop_class_name(ds),
        "transfer_syntax": _transfer_syntax(ds).name,
        "phi_tags": phi_tags(ds),
    }


def _image_header(ds: Dataset, path: Path, pixel_bytes: int) -> DicomHeader:
    sop_class = _sop_class_name(ds)
    if "DirectoryRecordSequence" in ds:
        raise DicomSkip("DICOMDIR (a directory index, no pixels)")
    modality = str(ds.get("Modality", "") or "")
    if modality.upper() in NON_IMAGE_MODALITIES:
        raise DicomSkip(f"not an image ({modality}: {NON_IMAGE_MODALITIES[modality.upper()]})")
    if "Rows" not in ds or "Columns" not in ds:
        raise DicomSkip(f"no image in this object (no Rows/Columns; "
                        f"{sop_class or 'unknown SOP class'})")
    tsyntax = _transfer_syntax(ds)
    try:
        h = DicomHeader(
            path=path,
            sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            sop_class=sop_class,
            modality=modality,
            transfer_syntax=tsyntax,
            rows=int(ds.Rows), columns=int(ds.Columns),
            frames=max(int(ds.get("NumberOfFrames", 1) or 1), 1),
            samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
            bits_allocated=int(ds.get("BitsAllocated", 0) or 0),
            photometric=str(ds.get("PhotometricInterpretation", "") or ""),
            instance_number=_int_or_none(ds.get("InstanceNumber")),
            slice_position=slice_position(ds),
            pixel_bytes_in_file=max(pixel_bytes, 0),
            phi_tags=phi_tags(ds),
            burned_in_annotation=str(ds.get("BurnedInAnnotation", "")).upper() == "YES",
        )
    except (TypeError, ValueError) as e:
        raise DicomSkip(f"corrupt image header ({type(e).__name__})") from e
    check_pixel_budget(h, _native_length(ds))
    return h


def check_pixel_budget(h: DicomHeader, native_bytes: int | None = None) -> None:
    """Refuse, before any allocation, a declared image the file cannot hold."""
    if h.rows <= 0 or h.columns <= 0 or h.bits_allocated <= 0:
        raise DicomSkip(f"invalid image size ({h.rows}×{h.columns}, {h.bits_allocated} bits)")
    if h.pixel_bytes_in_file <= 8:
        raise DicomSkip("no pixel data in the file (header only, or truncated)")
    if h.frame_bytes > MAX_FRAME_BYTES:
        raise DicomSkip(f"declares {h.rows}×{h.columns}×{h.samples_per_pixel} pixels per "
                        "frame, beyond any real image; corrupt header")
    declared = h.frame_bytes * h.frames
    if h.transfer_syntax.is_encapsulated or h.transfer_syntax.is_deflated:
        if declared > MAX_COMPRESSION_RATIO * h.pixel_bytes_in_file:
            raise DicomSkip(f"declares {h.frames} frame(s) of {h.rows}×{h.columns} "
                            f"({declared} bytes) but holds {h.pixel_bytes_in_file} bytes; "
                            "corrupt or truncated")
    elif h.pixel_bytes_in_file < (native_bytes or declared):
        raise DicomSkip(f"truncated: declares {native_bytes or declared} bytes of pixel data, "
                        f"the file holds {h.pixel_bytes_in_file}")


def _native_length(ds: Dataset) -> int | None:
    """Uncompressed pixel bytes as pydicom computes them (it knows YBR_FULL_422's
    subsampling and 1-bit packing)."""
    try:
        return int(get_expected_length(ds, unit="bytes"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


@contextmanager
def pydicom_quiet():
    """Silence pydicom's warnings and log lines (a traceback per failed decoder plugin, a
    line per repaired header): the caller reports each failure as one skip reason."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def slice_position(ds: Dataset) -> float | None:
    """Position along the slice normal (the cross product of the orientation's row and
    column directions), the order a volume's slices stack in."""
    try:
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], np.float64)
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], np.float64)
    except (AttributeError, TypeError, ValueError):
        return None
    if ipp.shape != (3,) or iop.shape != (6,):
        return None
    return float(np.dot(np.cross(iop[:3], iop[3:]), ipp))


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(str(ts))
    # No file meta (raw ACR-NEMA style): pydicom read it in the encoding it guessed.
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is False:
        return UID("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
    return UID("1.2.840.10008.1.2")


def _sop_class_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get(
        "MediaStorageSOPClassUID")
    if not uid:
        return ""
    uid = UID(str(uid))
    return uid.name if uid.is_valid else "invalid SOP class UID"


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
