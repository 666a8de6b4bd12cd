"""The frames of the overlays (:mod:`cossl_edge.node.overlays`): which images called a
finding share one Parametric Map or Segmentation, and how each frame names its source.

A series of single-frame images gets one object whose frames are its images called a
finding when they lie in one Frame of Reference on one geometry: the same SOP class, rows ×
columns, orientation, pixel spacing and slice thickness, each at its own position (what a
multi-frame object's shared functional groups can say once, and highdicom checks). Every
frame references its image in its Derivation Image Sequence and has its plane position. A
multi-frame source gets one object per source for the frames classified, each frame
referencing its source frame by Referenced Frame Number. Sources without a Frame of
Reference (radiographs) get one object per image: without a patient coordinate system
nothing places two images in one object (highdicom supports a single frame there), and a
radiograph's images are separate views, not slices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue


class OverlayUnavailable(ValueError):
    """This source cannot carry this overlay (the reason names no patient data)."""


@dataclass(eq=False)
class OverlayFrame:
    """An image (or a frame of a multi-frame object) called a finding: its source header
    (no pixels), ``frame`` the frame classified (0-based; None for a single-frame source),
    ``prob`` its P(finding) on the source's rows × columns, its label and P(finding)."""

    source: Dataset
    frame: int | None
    prob: np.ndarray = field(repr=False)
    label: str
    p_finding: float

    @property
    def sop_uid(self) -> str:
        return str(self.source.SOPInstanceUID)

    @property
    def frame_number(self) -> int | None:
        """The frame's 1-based number (Referenced Frame Number), None for a single frame."""
        return None if self.frame is None else self.frame + 1

    @property
    def comment(self) -> str:
        return f"{self.label[:40]}; P(finding) {self.p_finding:.3f}"


def frame_position(source: Dataset, frame: int) -> list[float] | None:
    """A multi-frame object's Image Position (Patient) of a frame (0-based): per frame, or
    shared; None when it gives none."""
    for keyword, index in (("PerFrameFunctionalGroupsSequence", frame),
                           ("SharedFunctionalGroupsSequence", 0)):
        groups = source.get(keyword) or []
        if index < len(groups) and groups[index].get("PlanePositionSequence"):
            position = groups[index].PlanePositionSequence[0].get("ImagePositionPatient")
            if position is not None and len(position) == 3:
                return [float(v) for v in position]
    return None


def _geometry(f: OverlayFrame) -> tuple | None:
    """What frames must share to be one object; None: the frame goes alone."""
    src = f.source
    if not src.get("FrameOfReferenceUID"):
        return None
    if f.frame is not None:
        return ("frames of", f.sop_uid) if frame_position(src, f.frame) else None
    needed = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
    if any(not src.get(k) for k in needed):
        return None

    return ("series", str(src.get("SeriesInstanceUID")), str(src.FrameOfReferenceUID),
            str(src.SOPClassUID), int(src.Rows), int(src.Columns),
            *(_values(src.get(k)) for k in ("ImageOrientationPatient", "PixelSpacing",
                                             "SliceThickness", "SpacingBetweenSlices")))


def _values(value) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(map(str, value)) if isinstance(value, MultiValue | list | tuple) \
        else (str(value),)


def _position(f: OverlayFrame) -> tuple:
    p = (frame_position(f.source, f.frame) if f.frame is not None
         else f.source.get("ImagePositionPatient"))
    return tuple(round(float(v), 3) for v in p) if p else (f.sop_uid, f.frame)


def groups(frames: list[OverlayFrame]) -> list[list[OverlayFrame]]:
    """The frames that share one object, in the order given: same geometry (see the module)
    and each at a position of its own; a second frame at a position already held (two
    acquisitions of one slice) starts another object."""
    out: list[tuple[tuple | None, list[OverlayFrame], set]] = []
    for f in frames:
        key, position = _geometry(f), _position(f)
        for k, members, held in out:
            if key is not None and k == key and position not in held:
                members.append(f)
                held.add(position)
                break
        else:
            out.append((key, [f], {position}))
    return [members for _, members, _ in out]


def _member(item: Dataset, frames: dict[tuple[str, int | None], OverlayFrame]
            ) -> OverlayFrame:
    """The frame of ``frames`` (by source SOP Instance UID and frame number) a frame of the
    new object (its functional groups ``item``) was made from: by the source references
    highdicom matched, else the only one."""
    if len(frames) == 1:
        return next(iter(frames.values()))
    derivation = item.get("DerivationImageSequence") or []
    refs = {(str(r.ReferencedSOPInstanceUID), r.get("ReferencedFrameNumber"))
            for d in derivation for r in d.get("SourceImageSequence", [])}
    found = [frames[key] for key in {(uid, None if n is None else int(n)) for uid, n in refs}
             if key in frames]
    if len(found) != 1:
        raise ValueError("a frame of the object matches no single source frame")
    return found[0]


def pin_references(ds: Dataset, frames: list[OverlayFrame]) -> None:
    """Each frame of the new object references exactly its source image or frame (highdicom
    lists every source frame at the same position, e.g. the phases of a cine; without a
    Frame of Reference it names no frame) and says its label and P(finding) (Frame
    Comments); the top-level Source Image Sequence names a multi-frame source's frames."""
    by_key = {(f.sop_uid, f.frame_number): f for f in frames}
    for item in ds.PerFrameFunctionalGroupsSequence:
        f = _member(item, by_key)
        ref = Dataset()
        ref.ReferencedSOPClassUID = f.source.SOPClassUID
        ref.ReferencedSOPInstanceUID = f.sop_uid
        if f.frame_number is not None:
            ref.ReferencedFrameNumber = f.frame_number
        derivation = item.DerivationImageSequence[0]
        old = derivation.SourceImageSequence[0]
        ref.PurposeOfReferenceCodeSequence = old.PurposeOfReferenceCodeSequence
        ref.SpatialLocationsPreserved = old.get("SpatialLocationsPreserved", "YES")
        derivation.SourceImageSequence = [ref]
        item.FrameContentSequence[0].FrameComments = f.comment
    _source_references(ds, frames)


def _source_references(ds: Dataset, frames: list[OverlayFrame]) -> None:
    """The top-level Source Image Sequence (a multi-frame source with the numbers of its
    frames held) and Referenced Series Sequence, from the frames themselves."""
    sources: dict[str, OverlayFrame] = {}
    numbers: dict[str, list[int]] = {}
    for f in frames:
        sources.setdefault(f.sop_uid, f)
        if f.frame_number is not None:
            numbers.setdefault(f.sop_uid, []).append(f.frame_number)
    images, series = [], {}
    for uid, f in sources.items():
        ref = Dataset()
        ref.ReferencedSOPClassUID = f.source.SOPClassUID
        ref.ReferencedSOPInstanceUID = uid
        if uid in numbers:
            ref.ReferencedFrameNumber = sorted(numbers[uid])
        images.append(ref)
        instance = Dataset()
        instance.ReferencedSOPClassUID = f.source.SOPClassUID
        instance.ReferencedSOPInstanceUID = uid
        series.setdefault(str(f.source.SeriesInstanceUID), []).append(instance)
    ds.SourceImageSequence = images
    items = []
    for uid, instances in series.items():
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedInstanceSequence = instances
        items.append(item)
    ds.ReferencedSeriesSequence = items


def frame_number_of(ds: Dataset, sop_uid: str, frame: int | None = None) -> int | None:
    """The 1-based number of the frame of overlay ``ds`` made from source ``sop_uid`` (and its
    0-based ``frame`` for a multi-frame source); None when it holds none."""
    want = None if frame is None else frame + 1
    for number, item in enumerate(ds.get("PerFrameFunctionalGroupsSequence", []), 1):
        for d in item.get("DerivationImageSequence", []):
            for r in d.get("SourceImageSequence", []):
                n = r.get("ReferencedFrameNumber")
                if str(r.ReferencedSOPInstanceUID) == sop_uid and \
                        (None if n is None else int(n)) == want:
                    return number
    return None
