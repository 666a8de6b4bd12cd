"""The table of source readers: one line per reader, in the order they are tried on a file
(the cheap suffix checks before the DICOM magic sniff). See :mod:`cossl_edge.sources.reader`
for what a reader declares."""

from __future__ import annotations

from pathlib import Path

from cossl_edge.sources import dicom, image, video
from cossl_edge.sources.reader import Reader
from cossl_edge.sources.refs import SourceError

READERS: list[Reader] = [
    image.READER,
    video.READER,
    dicom.READER,
]


def register_reader(reader: Reader, *, first: bool = False) -> None:
    """Add a reader to the table (last, or ``first`` to take files before the others)."""
    if any(r.kind == reader.kind for r in READERS):
        raise SourceError(f"a reader of kind {reader.kind!r} is already registered; "
                          "unregister it first or choose another kind")
    READERS.insert(0 if first else len(READERS), reader)


def unregister_reader(kind: str) -> Reader:
    """Remove the reader of ``kind`` from the table; returns it."""
    reader = reader_for_kind(kind)
    READERS.remove(reader)
    return reader


def reader_for_kind(kind: str) -> Reader:
    for r in READERS:
        if r.kind == kind:
            return r
    raise SourceError(f"unknown sample kind {kind!r}")


def reader_for_path(path: Path) -> Reader | None:
    """The first reader in the table that reads ``path``; None when none does."""
    for r in READERS:
        if r.matches(path):
            return r
    return None


def not_a_source() -> str:
    """The reason a file no reader matches is skipped."""
    labels = [r.label for r in READERS]
    names = labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} or {labels[-1]}"
    return f"not an {names} file"
