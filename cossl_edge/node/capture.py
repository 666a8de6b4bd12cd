"""Heatmaps of the local classifier as DICOM Secondary Capture images (RGB, 8 bits).

Only a classifier of kind ``local`` gives heatmaps. For each series the node renders at most
``NodeConfig.heatmaps`` images (default :data:`MAX_HEATMAPS`): those called a finding (not
the normal class, not ``unknown``), the most likely first (P(finding) = 1 − P(normal)). A
series called normal gets none (its overlay would be grey by construction). Each picture is
what :func:`cossl_edge.runtime.heatmaps.overlay` draws: the image in grey, red where the calibrated
P(finding) of a heatmap position is high; the same field of view as the model's input (its
crop or padding), at the source's resolution up to :data:`MAX_SIDE` pixels.

Each SC joins a new series of the source study (series number :data:`SC_SERIES_NUMBER`) and
carries the source's patient and study module (copied by highdicom's
``SCImage.from_ref_dataset``: what the PACS needs to file it); it names its source image in
SourceImageSequence (purpose: source image for image processing operation) and
ReferencedImageSequence. UIDs derive from the source instance, so an SC rebuilt after a crash
is the same object for the PACS.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cossl_edge import __version__

SC_SERIES_NUMBER = 991
MAX_HEATMAPS = 4  # per series: one SC costs ~20 ms here, and a reader looks at a few
MAX_SIDE = 512  # longest side of a picture (never below the model's input size)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def sc_series_uid(series_uid: str) -> str:
    return generate_uid(entropy_srcs=[series_uid, "cossl-edge-heatmap-series"])


def sc_uid(sop_uid: str) -> str:
    return generate_uid(entropy_srcs=[sop_uid, "cossl-edge-heatmap"])


def choose(per_image: list, normal: str | None, classes: list[str], k: int) -> list:
    """The images to draw: called a finding, with a heatmap, the most likely first, ≤ k."""
    if k <= 0:
        return []
    i_normal = classes.index(normal) if normal in classes else None

    def p_finding(r) -> float:
        return 1.0 - r.probabilities[i_normal] if i_normal is not None else r.probability

    found = [r for r in per_image if r.probabilities is not None and r.heatmap is not None
             and r.label not in (normal, "unknown", None)]
    found.sort(key=lambda r: (-p_finding(r), r.sop_uid))
    return [(r, p_finding(r)) for r in found[:k]]


def display(image: np.ndarray, size: int, mode: str) -> np.ndarray:
    """The model's view of ``image`` (H×W[×C] in [0, 1]: its crop, padding or stretch) at the
    source's resolution, longest side at most MAX_SIDE and at least ``size``."""
    from cossl_edge.contract import resize_hw, resize_image, to_channels

    img = to_channels(np.asarray(image, np.float32), 1)
    h, w = img.shape[:2]
    side = max(size, min(MAX_SIDE, max(h, w)))
    if mode in ("center-crop", "pad"):
        return resize_image(img, side, mode)
    scale = side / max(h, w)  # "resize" stretches to a square: keep the source's aspect
    return resize_hw(img, max(1, round(h * scale)), max(1, round(w * scale)))


def patient_orientation(ds: Dataset) -> tuple[str, str] | None:
    """(row, column) direction letters: the source's PatientOrientation, else the dominant
    axis of ImageOrientationPatient; None when neither says."""
    given = ds.get("PatientOrientation")
    letters = set("APRLHF")
    if given and len(given) == 2 and all(str(v)[:1] in letters for v in given):
        return str(given[0])[0], str(given[1])[0]
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    names = (("L", "R"), ("P", "A"), ("H", "F"))  # + and − along x, y, z (LPS)
    out = []
    for v in (np.asarray(iop[:3], float), np.asarray(iop[3:], float)):
        axis = int(np.argmax(np.abs(v)))
        out.append(names[axis][0 if v[axis] > 0 else 1])
    return out[0], out[1]


def build_sc(source: Dataset, rgb: np.ndarray, label: str, p_finding: float,
             identity: dict, series_uid: str) -> Dataset:
    """The SC of one source image (``source``: its header, without pixels needed)."""
    import highdicom as hd

    orientation = patient_orientation(source)
    sc = hd.sc.SCImage.from_ref_dataset(
        source, np.ascontiguousarray(rgb, np.uint8), "RGB", 8, "PATIENT",
        series_instance_uid=sc_series_uid(series_uid), series_number=SC_SERIES_NUMBER,
        sop_instance_uid=sc_uid(str(source.SOPInstanceUID)),
        instance_number=_instance_number(source), manufacturer="cossl-edge",
        patient_orientation=orientation or ("L", "P"),
        transfer_syntax_uid=ExplicitVRLittleEndian)
    if orientation is None:
        sc.PatientOrientation = None  # type 2: unknown, not guessed
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    src = Dataset()
    src.ReferencedSOPClassUID = source.SOPClassUID
    src.ReferencedSOPInstanceUID = source.SOPInstanceUID
    purpose = codes.DCM.SourceImageForImageProcessingOperation
    src.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept(purpose.value,
                                                             purpose.scheme_designator,
                                                             purpose.meaning)]
    sc.ReferencedImageSequence = [ref]
    sc.SourceImageSequence = [src]
    sc.SeriesDescription = "cossl-edge heatmaps (red: P(finding))"
    sc.DerivationDescription = (f"cossl-edge {__version__} local few-shot heatmap, model "
                                f"{identity['model_sha256'][:16]}: the image as the model saw "
                                "it, red where P(finding) of a position is high")[:1024]
    sc.ImageComments = f"{label[:40]}; P(finding) {p_finding:.3f}"
    sc.BurnedInAnnotation = "NO"
    # General Series: the source's body part and laterality; Laterality (type 2C) empty
    # when neither says (unknown), absent for a body part without sides
    if source.get("BodyPartExamined"):
        sc.BodyPartExamined = source.BodyPartExamined
    if source.get("Laterality"):
        sc.Laterality = source.Laterality
    elif not source.get("BodyPartExamined"):
        sc.Laterality = None
    sc.ConversionType = "WSD"  # workstation: a derived picture, not a digitised film
    return sc


def _instance_number(ds: Dataset) -> int:
    try:
        return max(int(ds.get("InstanceNumber") or 1), 1)
    except (TypeError, ValueError):
        return 1
