"""The inventory of a folder (``cossl-edge dicom scan``): series, modalities, transfer
syntaxes, sizes, decodable or not and why, and which patient-identifying tags are present.

Every file under the folder appears exactly once. Files and series are named by salted ids
(``privacy.file_token``, ``privacy.salted_id``), tags by name only: the inventory can be
shared without carrying a patient's name, id or a raw path.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cossl_edge.dicom.header import DicomHeader, DicomSkip, looks_like_dicom, read_header
from cossl_edge.dicom.pixels import read_frame, require_decoder
from cossl_edge.privacy import file_token, salted_id
from cossl_edge.progress import track

INVENTORY_VERSION = 1


def scan(root: str | Path, decode: bool = False, with_paths: bool = False,
         progress: bool = False) -> dict:
    """Inventory of every file under ``root``. ``decode`` decodes the first frame of each
    image (slower, but proves it); otherwise decodability is judged from the header and the
    installed decoders. ``with_paths`` adds relative paths (they may name patients)."""
    root = Path(root)
    if not root.is_dir():
        raise DicomSkip(f"{root}: not a folder; give the folder to scan")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    entries = []
    for p in track(files, progress, "Scanning"):
        entry = {"file": file_token(p, root)}
        if with_paths:
            entry["path"] = str(p.relative_to(root))
        entry.update(_file_entry(p, decode))
        entries.append(entry)
    return {"version": INVENTORY_VERSION, "files": entries,
            "series": _series_table(entries), "summary": _summary(entries)}


def _file_entry(path: Path, decode: bool) -> dict:
    if not looks_like_dicom(path):
        return {"status": "not-dicom", "reason": "no DICOM suffix or 'DICM' marker"}
    try:
        h = read_header(path)
    except DicomSkip as e:
        return {"status": "skipped", "reason": str(e), **(e.facts or {})}
    except OSError as e:
        return {"status": "skipped", "reason": f"unreadable ({type(e).__name__})"}
    entry = _image_entry(h)
    try:
        require_decoder(h.transfer_syntax)
        if decode:
            read_frame(path, 0 if h.frames > 1 else None, "auto")
    except DicomSkip as e:
        entry.update(decodable=False, why=str(e))
    return entry


def _image_entry(h: DicomHeader) -> dict:
    return {
        "status": "image",
        "series": salted_id(h.series_uid) if h.series_uid else None,
        "modality": h.modality, "sop_class": h.sop_class,
        "transfer_syntax": h.transfer_syntax.name,
        "rows": h.rows, "columns": h.columns, "frames": h.frames,
        "samples_per_pixel": h.samples_per_pixel, "photometric": h.photometric,
        "decodable": True,
        "phi_tags": h.phi_tags, "burned_in_annotation": h.burned_in_annotation,
    }


def _series_table(entries: list[dict]) -> list[dict]:
    table: dict[str, dict] = {}
    for e in entries:
        if e["status"] != "image":
            continue
        key = e["series"] or e["file"]
        s = table.setdefault(key, {"series": key, "modality": e["modality"], "files": 0,
                                   "frames": 0, "sizes": set(), "transfer_syntaxes": set(),
                                   "undecodable": 0})
        s["files"] += 1
        s["frames"] += e["frames"]
        s["sizes"].add(f"{e['rows']}x{e['columns']}")
        s["transfer_syntaxes"].add(e["transfer_syntax"])
        s["undecodable"] += not e["decodable"]
    for s in table.values():
        s["sizes"], s["transfer_syntaxes"] = sorted(s["sizes"]), sorted(s["transfer_syntaxes"])
    return list(table.values())


def _summary(entries: list[dict]) -> dict:
    status = Counter(e["status"] for e in entries)
    images = [e for e in entries if e["status"] == "image"]
    return {
        "files": len(entries),
        "images": status["image"],
        "frames": sum(e["frames"] for e in images),
        "decodable": sum(e["decodable"] for e in images),
        "skipped": status["skipped"],
        "not_dicom": status["not-dicom"],
        "skip_reasons": dict(Counter(e["reason"] for e in entries if e["status"] == "skipped")
                             .most_common()),
        "undecodable_reasons": dict(Counter(e["why"] for e in images if not e["decodable"])),
        "modalities": dict(Counter(e.get("modality") or "?" for e in entries
                                   if e["status"] != "not-dicom")),
        "transfer_syntaxes": dict(Counter(e["transfer_syntax"] for e in entries
                                          if e.get("transfer_syntax"))),
        "phi_tags_present": dict(Counter(t for e in entries for t in e.get("phi_tags", []))
                                 .most_common()),
        "burned_in_annotation": sum(bool(e.get("burned_in_annotation")) for e in entries),
    }
