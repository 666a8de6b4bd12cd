"""Reading the node's Parametric Maps and Segmentations back in the tests: which source image
each frame was made from, which SEG frame the SR names as an image's region, and where a
map's maximum lies."""

from __future__ import annotations

import numpy as np


def frame_sources(obj) -> list[str]:
    """The source SOP instance UID of each frame of a Parametric Map or SEG, in frame order
    (its Derivation Image Sequence)."""
    return [str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
            for item in obj.PerFrameFunctionalGroupsSequence]


def segmentation_frames(sr) -> dict[str, tuple[str, int]]:
    """Source image → (SEG SOP instance UID, frame number) of the SR's TID 1410 regions:
    each "Referenced Segmentation Frame" (DCM 121214) with the "Source image for
    segmentation" (DCM 121233) beside it."""
    out = {}

    def walk(items):
        items = list(items)
        for k, it in enumerate(items):
            if it.get("ValueType") == "IMAGE" and \
                    it.ConceptNameCodeSequence[0].CodeValue == "121214":
                ref = it.ReferencedSOPSequence[0]
                source = next(str(s.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
                              for s in items[k + 1:] if s.get("ValueType") == "IMAGE" and
                              s.ConceptNameCodeSequence[0].CodeValue == "121233")
                out[source] = (str(ref.ReferencedSOPInstanceUID),
                               int(ref.ReferencedFrameNumber))
            walk(it.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return out


def assert_map_on_disk(values: np.ndarray, centre: tuple[int, int], cells: int = 8) -> None:
    """A map of P(finding) (rows × columns) of a blob image has its maximum on the bright
    disk at ``centre`` (radius ~5 px at 64 px, centre ≥ 12 px from the edge; a cell of a
    ``cells``×``cells`` heatmap is 8 px of a 64 px source: within 1.5 cells), and is higher
    near it. The outer heatmap cell is left out: the fixed convolution's zero padding lights
    the corners."""
    values = np.asarray(values, float)
    cell = values.shape[0] // cells
    inner = np.full_like(values, -1.0)
    inner[cell:-cell, cell:-cell] = values[cell:-cell, cell:-cell]
    my, mx = np.unravel_index(int(np.argmax(inner)), values.shape)
    assert (my - centre[0]) ** 2 + (mx - centre[1]) ** 2 <= 12 ** 2, ((my, mx), centre)
    yy, xx = np.mgrid[:values.shape[0], :values.shape[1]]
    near = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= 8 ** 2
    assert values[near].mean() > values[~near].mean() + 0.1
