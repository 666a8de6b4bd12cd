"""Overlays a viewer can lay on the source image: per image called a finding, a Parametric
Map of P(finding) per position and a BINARY Segmentation of where P(finding) is above the
calibrated threshold (both built with highdicom).

The map is the image's stored heatmap (the classifier's evidence per position) through the
classifier's calibration (:func:`cossl_edge.local_scores.finding_probability`, the scale the
heatmap Secondary Captures colour by), resampled bilinearly from the model's input frame back
onto the source's rows × columns (undoing the contract's stretch, crop or padding; outside a
centre crop, where the model saw nothing, the map is 0). The segmentation is that map above
:data:`THRESHOLD`: the calibrated P(finding) of 0.5, the point where the calibration's logit
changes sign, the same boundary at which a position's evidence counts for a finding.

Both objects take the source's geometry from highdicom (frame of reference, pixel measures,
plane position and orientation of the source; each in its own new series of the source
study; the source in the Source Image Sequence and the Referenced Series Sequence). A
Parametric Map requires a Frame of Reference (its IOD's module is mandatory): a source
without one (a projection radiograph, CR/DX) gets no Parametric Map, only the Segmentation
(whose Frame of Reference is conditional: highdicom aligns it pixel for pixel with the
source, and the node gives it the source's patient orientation). A source whose own IOD
requires a Frame of Reference but that has none gets neither, and one with a Frame of
Reference but no Slice Thickness no Segmentation (:class:`OverlayUnavailable`).
UIDs derive from the source instance, so an object rebuilt after a crash is the same object
for the PACS.
"""

from __future__ import annotations

import copy

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cossl_edge import __version__

THRESHOLD = 0.5  # calibrated P(finding): the calibration's decision boundary
PM_SERIES_NUMBER = 992
SEG_SERIES_NUMBER = 993
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
KINDS = ("pmap", "seg")


class OverlayUnavailable(ValueError):
    """This source cannot carry this overlay (the reason names no patient data)."""


def series_uid_of(kind: str, series_uid: str) -> str:
    return generate_uid(entropy_srcs=[series_uid, f"cossl-edge-{kind}-series"])


def instance_uid_of(kind: str, sop_uid: str) -> str:
    return generate_uid(entropy_srcs=[sop_uid, f"cossl-edge-{kind}"])


def resample(p: np.ndarray, rows: int, cols: int, mode: str) -> np.ndarray:
    """An h×w map in the model's input frame → rows×cols float32 on the source's pixels
    (bilinear, pixel centres aligned as Pillow resizes), undoing the contract's ``mode``:
    ``resize`` stretched the source to a square, ``center-crop`` kept its central square
    (outside it: 0), ``pad`` centred it in a square."""
    from PIL import Image

    def bilinear(a: np.ndarray, h: int, w: int) -> np.ndarray:
        img = Image.fromarray(np.ascontiguousarray(a, np.float32))
        return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), np.float32)

    p = np.asarray(p, np.float32)
    if mode == "center-crop" and rows != cols:
        s = min(rows, cols)
        top, left = (rows - s) // 2, (cols - s) // 2
        out = np.zeros((rows, cols), np.float32)
        out[top:top + s, left:left + s] = bilinear(p, s, s)
        return out
    if mode == "pad" and rows != cols:
        s = max(rows, cols)
        top, left = (s - rows) // 2, (s - cols) // 2
        return np.ascontiguousarray(bilinear(p, s, s)[top:top + rows, left:left + cols])
    return bilinear(p, rows, cols)


def _prepared_source(source: Dataset, kind: str) -> Dataset:
    """A copy of the source header with empty type 2 patient/study attributes where it lacks
    them (highdicom copies them), checked for what ``kind`` needs."""
    src = copy.copy(source)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                    "StudyDate", "StudyTime", "ReferringPhysicianName", "AccessionNumber"):
        if keyword not in src:
            setattr(src, keyword, None)
    if int(src.get("NumberOfFrames") or 1) > 1:
        raise OverlayUnavailable("multi-frame source (the node classifies one frame)")
    has_for = bool(src.get("FrameOfReferenceUID"))
    if not has_for:
        if _for_required(str(src.SOPClassUID)):
            raise OverlayUnavailable("source lacks the Frame of Reference its IOD requires")
        if kind == "pmap":
            raise OverlayUnavailable("no Frame of Reference (a projection image): the "
                                     "Parametric Map IOD requires one")
    elif kind == "seg" and src.get("SliceThickness") in (None, ""):
        raise OverlayUnavailable("source gives no Slice Thickness, which a Segmentation's "
                                 "pixel measures require with a Frame of Reference")
    return src


def _for_required(sop_class: str) -> bool:
    """Whether the source's IOD makes the Frame of Reference module mandatory (highdicom's
    table of the standard; an IOD it does not know: as if required)."""
    try:
        from highdicom._standard_utils import ModuleUsageValues, get_module_usage

        return get_module_usage("frame-of-reference", sop_class) == \
            ModuleUsageValues.MANDATORY
    except Exception:  # noqa: BLE001 - unknown SOP class, or highdicom's table moved
        return True


def _finish(ds: Dataset, source: Dataset, label: str, p_finding: float, identity: dict,
            what: str) -> Dataset:
    """What the node adds to both objects: body part and laterality, patient orientation
    without a frame of reference, the derivation, the comments."""
    from cossl_edge.node.capture import patient_orientation

    if source.get("BodyPartExamined"):
        ds.BodyPartExamined = source.BodyPartExamined
    if source.get("Laterality"):
        ds.Laterality = source.Laterality
    elif not source.get("BodyPartExamined") and ds.SOPClassUID == PARAMETRIC_MAP:
        ds.Laterality = None  # type 2C: unknown (dciodvfy's reading differs for SEG: absent)
    if not source.get("FrameOfReferenceUID"):
        orientation = patient_orientation(source)
        ds.PatientOrientation = list(orientation) if orientation else None
    ds.DerivationDescription = (f"cossl-edge {__version__} few-shot "
                                f"{identity['classifier_kind']} heatmap, model "
                                f"{identity['model_sha256'][:16]}: {what}")[:1024]
    ds.ImageComments = f"{label[:40]}; P(finding) {p_finding:.3f}"
    return ds


def _software(identity: dict) -> tuple[str, str]:
    """(Software Versions, the model's part of the algorithm version)."""
    return f"cossl-edge {__version__}"[:64], f"model {identity['model_sha256'][:16]}"


def build_pmap(source: Dataset, prob: np.ndarray, label: str, p_finding: float,
               identity: dict, series_uid: str) -> Dataset:
    """The Parametric Map of one source image: ``prob`` (rows×cols P(finding) in [0, 1],
    float32) on the source's geometry, real world value 1·stored value, unitless."""
    import highdicom as hd

    src = _prepared_source(source, "pmap")
    prob = np.clip(np.asarray(prob, np.float32), 0.0, 1.0)
    if prob.shape != (int(src.Rows), int(src.Columns)):
        raise ValueError(f"map {prob.shape} is not the source's rows × columns")
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="P(finding)", lut_explanation="probability of a finding at this position",
        unit=codes.UCUM.NoUnits, value_range=(0.0, 1.0), slope=1.0, intercept=0.0,
        quantity_definition=codes.DCM.Probability)
    pm = hd.pm.ParametricMap(
        [src], prob, series_uid_of("pmap", series_uid), PM_SERIES_NUMBER,
        instance_uid_of("pmap", str(src.SOPInstanceUID)), _instance_number(src),
        "cossl-edge", "cossl-edge node", _software(identity)[0], "none", True, [mapping],
        transfer_syntax_uid=ExplicitVRLittleEndian,
        content_label="PFINDING", content_description="P(finding) per position",
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5,
                                                         window_width=1.0)])
    pm.SeriesDescription = "cossl-edge P(finding) map"
    return _finish(pm, src, label, p_finding, identity,
                   "calibrated P(finding) per position, bilinear onto the source")


def build_seg(source: Dataset, mask: np.ndarray, label: str, p_finding: float,
              identity: dict, series_uid: str) -> Dataset:
    """The BINARY Segmentation of one source image: ``mask`` (rows×cols bool), segment 1
    "finding" where P(finding) > THRESHOLD."""
    import highdicom as hd

    src = _prepared_source(source, "seg")
    mask = np.asarray(mask, bool)
    if mask.shape != (int(src.Rows), int(src.Columns)):
        raise ValueError(f"mask {mask.shape} is not the source's rows × columns")
    name, version = _software(identity)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"cossl-edge few-shot {identity['classifier_kind']}"[:64],
        family=codes.DCM.ArtificialIntelligence, version=f"{__version__} {version}"[:64])
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=f"{label[:40]} P>{THRESHOLD:g}",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        [src], mask.astype(np.uint8), hd.seg.SegmentationTypeValues.BINARY, [segment],
        series_uid_of("seg", series_uid), SEG_SERIES_NUMBER,
        instance_uid_of("seg", str(src.SOPInstanceUID)), _instance_number(src),
        "cossl-edge", "cossl-edge node", name, "none",
        transfer_syntax_uid=ExplicitVRLittleEndian, omit_empty_frames=False,
        content_label="FINDING", content_description=f"P(finding) > {THRESHOLD:g}")
    seg.SeriesDescription = f"cossl-edge finding (P(finding) > {THRESHOLD:g})"
    return _finish(seg, src, label, p_finding, identity,
                   f"calibrated P(finding) per position above {THRESHOLD:g}")


def _instance_number(ds: Dataset) -> int:
    try:
        return max(int(ds.get("InstanceNumber") or 1), 1)
    except (TypeError, ValueError):
        return 1
