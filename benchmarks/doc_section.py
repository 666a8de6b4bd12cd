"""Each benchmark owns one marked section of docs/benchmarks.md and rewrites only that."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_section(start: str, end: str, text: str, doc: Path = DOC) -> None:
    """Put ``text`` (which begins with ``start`` and ends with ``end``) in place of the old
    section, or append it when the file has none yet."""
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + text.rstrip("\n") + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(new)
