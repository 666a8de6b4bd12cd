"""Finding samples: every file under a folder goes to the first reader of the table that
matches it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cossl_edge.progress import track
from cossl_edge.sources import registry
from cossl_edge.sources.refs import Discovery, SampleRef, Skipped, SourceError
from cossl_edge.sources.sampling import SamplingOptions


def discover(root: str | Path, sampling: SamplingOptions | None = None, *,
             progress: bool = False) -> Discovery:
    """All 2D samples under ``root`` (a folder, searched recursively, or one file).

    Image files give one sample each; video files every ``sampling.video_every``-th frame
    (or about ``sampling.video_fps`` frames per second); DICOM files (with or without a
    suffix) are read header-only, grouped by series, ordered along the slice normal, and
    give one sample per slice or frame, every ``sampling.dicom_stride``-th. Anything no
    reader matches is listed in ``skipped``."""
    sampling = _sampling(sampling)
    root = Path(root)
    if not root.exists():
        raise SourceError(f"{root}: no such file or folder; check the path")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    base = root.parent if root.is_file() else root
    inside = root.resolve() if root.is_dir() else None
    readers = list(registry.READERS)  # a reader registered meanwhile waits for the next call
    skip_errors = tuple(e for r in readers for e in r.skip_errors)
    samples: list[SampleRef] = []
    skipped: list[Skipped] = []
    pending: dict[str, list[Any]] = {r.kind: [] for r in readers if r.group is not None}
    for p in track(files, progress, "Finding samples"):
        if p.name.startswith("."):
            continue
        if inside is not None and p.is_symlink() and not p.resolve().is_relative_to(inside):
            # A link must not pull files from elsewhere on the machine into a data set.
            skipped.append(Skipped(p, "links outside the folder (symlink); copy the file "
                                      "into the folder instead"))
            continue
        try:
            reader = next((r for r in readers if r.matches(p)), None)
            if reader is None:
                skipped.append(Skipped(p, registry.not_a_source()))
                continue
            items = reader.list_file(p, str(p.relative_to(base)), sampling)
        except skip_errors as e:
            skipped.append(Skipped(p, str(e)))
            continue
        except OSError as e:
            skipped.append(Skipped(p, f"unreadable ({type(e).__name__})"))
            continue
        (pending[reader.kind] if reader.group is not None else samples).extend(items)
    for r in readers:
        if r.group is not None:  # readers that need every file first (DICOM series)
            samples.extend(r.group(pending[r.kind], base, sampling, skipped))
    return Discovery(samples, skipped)


def _sampling(sampling: SamplingOptions | None) -> SamplingOptions:
    if sampling is None:
        return SamplingOptions()
    if not isinstance(sampling, SamplingOptions):
        raise SourceError(f"discover(): sampling must be a SamplingOptions, got "
                          f"{type(sampling).__name__}")
    return sampling
