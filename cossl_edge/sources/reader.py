"""What a source reader declares (pydicom's pixel-data handlers are the model).

A reader turns one kind of file into 2D samples. It declares:

- ``matches(path)``: whether it reads this file (the first reader in the table that matches
  a file gets it, so the cheap suffix checks come before the DICOM magic sniff);
- ``list_file(path, key, sampling)``: the file's samples (``key`` is its path relative to
  the searched folder). A reader with ``group`` returns its own items instead (DICOM:
  headers), and ``group(items, base, sampling, skipped)`` turns all of them into samples
  once every file is seen (series grouping needs every slice);
- ``read(ref, contract)``: one sample as float32 H×W or H×W×3 in [0, 1];
- ``native_side(ref)``: the sample's short side in pixels, from the header when it can;
- optionally ``read_frames(path, indices)``: several frames of one file in one pass.

A new source is one module that builds a :class:`Reader` and one line in the table,
:data:`cossl_edge.sources.registry.READERS` (or, at run time,
:func:`cossl_edge.sources.register_reader`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources.refs import SampleRef, Skipped
from cossl_edge.sources.sampling import SamplingOptions


@dataclass(frozen=True)
class Reader:
    kind: str  # SampleRef.kind of the samples it lists
    label: str  # how a skipped file's reason names it: "not an image, video or DICOM file"
    matches: Callable[[Path], bool]
    list_file: Callable[[Path, str, SamplingOptions], list[Any]]
    read: Callable[[SampleRef, PreprocessContract | None], np.ndarray]
    native_side: Callable[[SampleRef], int | None]
    skip_errors: tuple[type[Exception], ...] = ()  # their message becomes the skip reason
    group: Callable[[list[Any], Path, SamplingOptions, list[Skipped]],
                    list[SampleRef]] | None = None
    read_frames: Callable[[Path, list[int]], Iterator[tuple[int, np.ndarray]]] | None = None
