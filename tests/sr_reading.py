"""Reading a node's Comprehensive SR back in the tests: its evidence, its illustrations (the
heatmap SCs it references) and the text of its content items."""

from __future__ import annotations

import numpy as np


def illustrations(sr) -> list[str]:
    """SOP instance UIDs of the SR's IMAGE items named "Illustration of ROI", depth first."""
    out = []

    def walk(items):
        for it in items:
            if (it.get("ValueType") == "IMAGE" and "ConceptNameCodeSequence" in it
                    and it.ConceptNameCodeSequence[0].CodeValue == "121200"):
                out.append(str(it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
            walk(it.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return out


def referenced_instances(sr) -> list[str]:
    """SOP instance UIDs in the SR's evidence (CurrentRequestedProcedureEvidenceSequence)."""
    uids = []
    for study in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.ReferencedSeriesSequence:
            uids += [str(i.ReferencedSOPInstanceUID) for i in series.ReferencedSOPSequence]
    return uids


def content_text(sr) -> list[tuple[str, str]]:
    """(concept name, value) of every content item of the SR, depth first."""
    out = []

    def walk(items):
        for it in items:
            name = it.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in it \
                else ""
            if "ConceptCodeSequence" in it:
                out.append((name, str(it.ConceptCodeSequence[0].CodeMeaning)))
            elif "MeasuredValueSequence" in it:
                out.append((name, str(it.MeasuredValueSequence[0].NumericValue)))
            elif "TextValue" in it:
                out.append((name, str(it.TextValue)))
            elif "UID" in it:
                out.append((name, str(it.UID)))
            walk(it.get("ContentSequence", []))

    walk(sr.get("ContentSequence", []))
    return out


def probabilities(values) -> np.ndarray:
    return np.asarray([float(v) for v in values])
