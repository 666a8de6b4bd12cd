"""The DICOM side of the phantoms: fake patients and the header every phantom file carries.

Nothing here is a real person: names, ids and birth dates are drawn from the lists below,
and patient folders are named after the fake patient (as real exports often are), so that
the project's privacy path (salted ids, no names or raw paths in artefacts) is exercised.
:mod:`clinical_examples.phantoms` writes the files; this module fills their headers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")
FAMILY = ("Quokkason", "Brindlewood", "Ottermere", "Fenwhistle", "Kestrelby", "Marlowan",
          "Tumbleford", "Wrenhollow", "Ashcombe", "Pemberlyn", "Crowhurst", "Dapplegate")
GIVEN = ("Marta", "Ilsa", "Tobiah", "Wenna", "Caspar", "Odile", "Rufus", "Liesel", "Anselm",
         "Perpetua", "Hollis", "Ysolde")


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
    ds.StudyID = None  # type 2: known to the scanner only; empty, not made up
    ds.InstitutionName = "Phantom General Hospital"
    ds.ReferringPhysicianName = "Placeholder^Doctor"
    ds.Manufacturer = "cossl-edge phantoms"
    ds.BodyPartExamined = "CHEST"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1  # one series per study
    # no Laterality: the chest is not a paired part (type 2C, absent then)
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
