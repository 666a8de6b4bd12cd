"""Overlays a viewer can lay on the source images: a Parametric Map of P(finding) per
position and a BINARY Segmentation of where P(finding) is above the calibrated threshold
(both built with highdicom), each holding the images of a series called a finding, one frame
per image (:mod:`cossl_edge.node.overlay_frames` says which images share an object).

The map of an image is its stored heatmap (the classifier's evidence per position) through
the classifier's calibration (:func:`cossl_edge.fewshot.positions.finding_probability`, the
scale the heatmap Secondary Captures colour by), resampled bilinearly from the model's input frame
back onto the source's rows × columns (undoing the contract's stretch, crop or padding;
outside a centre crop, where the model saw nothing, the map is 0). The segmentation is that
map above :data:`THRESHOLD`: the calibrated P(finding) of 0.5, the point where the
calibration's logit changes sign, the same boundary at which a position's evidence counts
for a finding.

Both objects take the source's geometry from highdicom (frame of reference, pixel measures,
plane orientation, and per frame its plane position and its source image or frame in the
Derivation Image Sequence; each object in its own new series of the source study). A
Parametric Map requires a Frame of Reference (its IOD's module is mandatory): a source
without one (a projection radiograph, CR/DX) gets no Parametric Map, only the Segmentation
(whose Frame of Reference is conditional: highdicom aligns it pixel for pixel with the
source, and the node gives it the source's patient orientation). A source whose own IOD
requires a Frame of Reference but that has none gets neither, and one with a Frame of
Reference but no Slice Thickness no Segmentation (:class:`OverlayUnavailable`).
UIDs derive from the source series, the images and frames the object holds, the model and
the classifier, so an object rebuilt after a crash is the same object for the PACS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cossl_edge import __version__
from cossl_edge.node.overlay_frames import (
    OverlayFrame,
    OverlayUnavailable,
    frame_position,
    groups,
    pin_references,
)

THRESHOLD = 0.5  # calibrated P(finding): the calibration's decision boundary
PM_SERIES_NUMBER = 992
SEG_SERIES_NUMBER = 993
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
KINDS = ("pmap", "seg")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def series_uid_of(kind: str, series_uid: str) -> str:
    return generate_uid(entropy_srcs=[series_uid, f"cossl-edge-{kind}-series"])


def instance_uid_of(kind: str, series_uid: str, frames: list[OverlayFrame],
                    identity: dict) -> str:
    """The same images and frames of a series, mapped by the same model and classifier →
    the same object (a reopened series whose findings did not change rebuilds the objects
    the PACS has); another model or classifier makes another object."""
    held = sorted(f"{f.sop_uid}#{f.frame}" for f in frames)
    return generate_uid(entropy_srcs=[series_uid, f"cossl-edge-{kind}", *held,
                                      str(identity.get("model_sha256")),
                                      str(identity.get("classifier_sha256"))])


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


def finding_map(calibration: dict, heatmap, rows: int, cols: int, mode: str) -> np.ndarray:
    """rows×cols float32: the calibrated P(finding) of each heatmap position (the scale the
    pictures colour by), bilinear onto the source's pixels through the contract's crop,
    padding or stretch ``mode`` (:func:`resample`)."""
    from cossl_edge.fewshot.positions import finding_probability

    p = finding_probability(calibration, np.asarray(heatmap, np.float64))
    return resample(p, rows, cols, mode)


def _prepared_source(source: Dataset, kind: str) -> Dataset:
    """A copy of the source header with empty type 2 patient/study attributes where it lacks
    them (highdicom copies them), checked for what ``kind`` needs. The copy has its own
    element table but shares the elements (a deep copy cost a third of a series' overlays):
    add or delete elements on it, never assign an element it shares."""
    src = Dataset(dict(source.items()))
    if hasattr(source, "file_meta"):
        src.file_meta = source.file_meta
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                    "StudyDate", "StudyTime", "ReferringPhysicianName", "AccessionNumber"):
        if keyword not in src:
            setattr(src, keyword, None)
    has_for = bool(src.get("FrameOfReferenceUID"))
    if not has_for:
        if _for_required(str(src.SOPClassUID)):
            raise OverlayUnavailable("source lacks the Frame of Reference its IOD requires")
        if kind == "pmap":
            raise OverlayUnavailable("no Frame of Reference (a projection image, a cine): the "
                                     "Parametric Map IOD requires one")
    elif kind == "seg" and _slice_thickness(src) in (None, ""):
        raise OverlayUnavailable("source gives no Slice Thickness, which a Segmentation's "
                                 "pixel measures require with a Frame of Reference")
    return src


def _slice_thickness(src: Dataset):
    """The source's Slice Thickness: at the top level, or in a multi-frame object's shared
    Pixel Measures."""
    if "SliceThickness" in src:
        return src.SliceThickness
    shared = (src.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    measures = (shared.get("PixelMeasuresSequence") or [Dataset()])[0]
    return measures.get("SliceThickness")


def _for_required(sop_class: str) -> bool:
    """Whether the source's IOD makes the Frame of Reference module mandatory (highdicom's
    table of the standard; an IOD it does not know: as if required)."""
    try:
        from highdicom._standard_utils import ModuleUsageValues, get_module_usage

        return get_module_usage("frame-of-reference", sop_class) == \
            ModuleUsageValues.MANDATORY
    except Exception:  # noqa: BLE001 - unknown SOP class, or highdicom's table moved
        return True


def _sources(frames: list[OverlayFrame], kind: str) -> tuple[list[Dataset], list | None]:
    """(the source headers highdicom reads, the frames' plane positions or None).

    Single-frame images: one header per frame, highdicom reads their positions. A
    multi-frame object: its header once and the positions of the frames classified, which
    highdicom matches to the source's frames. A multi-frame object without positions (no
    Frame of Reference: highdicom then aligns one frame pixel for pixel): a header that
    shows the one frame classified; :func:`pin_references` names the frame."""
    import highdicom as hd

    srcs = [_prepared_source(f.source, kind) for f in frames]
    if frames[0].frame is None:
        return srcs, None
    positions = [frame_position(f.source, f.frame) for f in frames]
    if all(p is not None for p in positions):
        return srcs[:1], [hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, p)
                          for p in positions]
    if srcs[0].get("FrameOfReferenceUID"):
        raise OverlayUnavailable("multi-frame source with a Frame of Reference but no plane "
                                 "position per frame")
    if len(frames) > 1:
        raise ValueError("without plane positions an overlay holds one frame")
    # highdicom reads a multi-frame IOD's pixel measures from functional groups, which this
    # source lacks: it is handed the frame as a single-frame image (a secondary capture);
    # pin_references then names the source's own SOP class and the frame
    one = srcs[0]
    del one.SOPClassUID  # a new element: the source's stays as it is
    one.SOPClassUID = SECONDARY_CAPTURE
    for keyword in ("NumberOfFrames", "PerFrameFunctionalGroupsSequence",
                    "SharedFunctionalGroupsSequence", "FrameIncrementPointer"):
        if keyword in one:
            delattr(one, keyword)
    return [one], None


def _finish(ds: Dataset, frames: list[OverlayFrame], identity: dict, what: str) -> Dataset:
    """What the node adds to both objects: each frame's source reference and its comment,
    body part and laterality, patient orientation without a frame of reference, the
    derivation, the comments."""
    from cossl_edge.node.capture import patient_orientation

    pin_references(ds, frames)
    source = frames[0].source
    if source.get("BodyPartExamined"):
        ds.BodyPartExamined = source.BodyPartExamined
    laterality = {f.source.get("Laterality") or "" for f in frames}
    if len(laterality) == 1 and source.get("Laterality"):
        ds.Laterality = source.Laterality
    elif not source.get("BodyPartExamined") and ds.SOPClassUID == PARAMETRIC_MAP:
        ds.Laterality = None  # type 2C: unknown (dciodvfy's reading differs for SEG: absent)
    if not source.get("FrameOfReferenceUID"):
        orientation = patient_orientation(source)
        ds.PatientOrientation = list(orientation) if orientation else None
    ds.DerivationDescription = (f"cossl-edge {__version__} few-shot "
                                f"{identity['classifier_kind']} heatmap, model "
                                f"{identity['model_sha256'][:16]}: {what}")[:1024]
    if len(frames) == 1:
        ds.ImageComments = frames[0].comment
    else:
        labels = sorted({f.label[:40] for f in frames})
        ds.ImageComments = (f"{len(frames)} images called a finding ({', '.join(labels)}); "
                            f"P(finding) up to {max(f.p_finding for f in frames):.3f}")
    return ds


def _software(identity: dict) -> tuple[str, str]:
    """(Software Versions, the model's part of the algorithm version)."""
    return f"cossl-edge {__version__}"[:64], f"model {identity['model_sha256'][:16]}"


def _checked(frames: list[OverlayFrame]) -> None:
    if not frames:
        raise ValueError("no frames to build an overlay of")
    for f in frames:
        if f.prob.shape != (int(f.source.Rows), int(f.source.Columns)):
            raise ValueError(f"map {f.prob.shape} is not the source's rows × columns")


def build_pmap(frames: list[OverlayFrame], identity: dict, series_uid: str) -> Dataset:
    """The Parametric Map of images (or frames) of one series, one frame each: their maps
    (rows×cols P(finding) in [0, 1]) on the sources' geometry, real world value 1·stored
    value, unitless."""
    import highdicom as hd

    _checked(frames)
    sources, positions = _sources(frames, "pmap")
    prob = np.clip(np.stack([f.prob for f in frames]).astype(np.float32), 0.0, 1.0)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="P(finding)", lut_explanation="probability of a finding at this position",
        unit=codes.UCUM.NoUnits, value_range=(0.0, 1.0), slope=1.0, intercept=0.0,
        quantity_definition=codes.DCM.Probability)
    pm = hd.pm.ParametricMap(
        sources, prob, series_uid_of("pmap", series_uid), PM_SERIES_NUMBER,
        instance_uid_of("pmap", series_uid, frames, identity), _instance_number(sources[0]),
        "cossl-edge", "cossl-edge node", _software(identity)[0], "none", True, [mapping],
        transfer_syntax_uid=ExplicitVRLittleEndian, plane_positions=positions,
        content_label="PFINDING", content_description="P(finding) per position",
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5,
                                                         window_width=1.0)])
    pm.SeriesDescription = "cossl-edge P(finding) map"
    return _finish(pm, frames, identity,
                   "calibrated P(finding) per position, bilinear onto the source")


def build_seg(frames: list[OverlayFrame], identity: dict, series_uid: str) -> Dataset:
    """The BINARY Segmentation of images (or frames) of one series, one frame each: segment
    1 "finding" where an image's P(finding) is above THRESHOLD."""
    import highdicom as hd

    _checked(frames)
    sources, positions = _sources(frames, "seg")
    mask = np.stack([f.prob > THRESHOLD for f in frames]).astype(np.uint8)
    labels = {f.label[:40] for f in frames}
    name, version = _software(identity)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"cossl-edge few-shot {identity['classifier_kind']}"[:64],
        family=codes.DCM.ArtificialIntelligence, version=f"{__version__} {version}"[:64])
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=f"{labels.pop() if len(labels) == 1 else 'finding'} P>{THRESHOLD:g}",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        sources, mask, hd.seg.SegmentationTypeValues.BINARY, [segment],
        series_uid_of("seg", series_uid), SEG_SERIES_NUMBER,
        instance_uid_of("seg", series_uid, frames, identity), _instance_number(sources[0]),
        "cossl-edge", "cossl-edge node", name, "none", plane_positions=positions,
        transfer_syntax_uid=ExplicitVRLittleEndian, omit_empty_frames=False,
        content_label="FINDING", content_description=f"P(finding) > {THRESHOLD:g}")
    seg.SeriesDescription = f"cossl-edge finding (P(finding) > {THRESHOLD:g})"
    return _finish(seg, frames, identity,
                   f"calibrated P(finding) per position above {THRESHOLD:g}")


BUILDERS = {"pmap": build_pmap, "seg": build_seg}


@dataclass
class Built:
    """One overlay of :func:`build_overlays`: its frames, and the object or why there is
    none (:class:`OverlayUnavailable`: the source cannot carry it; another error: a fault)."""

    kind: str
    frames: list[OverlayFrame]
    dataset: Dataset | None = None
    error: Exception | None = None


def build_overlays(frames: list[OverlayFrame], kinds: tuple[str, ...] | list[str],
                   identity: dict, series_uid: str) -> list[Built]:
    """The overlays of the images of one series called a finding: per kind, one object per
    group of :func:`cossl_edge.node.overlay_frames.groups` (what the node sends and
    ``fewshot predict --dicom-out`` writes)."""
    out = []
    for kind in kinds:
        for group in groups(frames):
            try:
                out.append(Built(kind, group, BUILDERS[kind](group, identity, series_uid)))
            except Exception as e:  # noqa: BLE001 - one object; the caller says which
                out.append(Built(kind, group, error=e))
    return out


def _instance_number(ds: Dataset) -> int:
    try:
        return max(int(ds.get("InstanceNumber") or 1), 1)
    except (TypeError, ValueError):
        return 1
