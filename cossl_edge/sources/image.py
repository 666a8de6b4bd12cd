"""Image files (PNG, JPEG, BMP, TIFF, WebP, PGM): one sample each, read with
:mod:`cossl_edge.sources.image_decode`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources.image_decode import IMAGE_SUFFIXES, read_image
from cossl_edge.sources.reader import Reader
from cossl_edge.sources.refs import SampleRef
from cossl_edge.sources.sampling import SamplingOptions


def matches(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_file(path: Path, key: str, sampling: SamplingOptions) -> list[SampleRef]:
    return [SampleRef(path, "image", None, key)]


def read(ref: SampleRef, contract: PreprocessContract | None = None) -> np.ndarray:
    return read_image(ref.path)


def native_side(ref: SampleRef) -> int | None:
    from PIL import Image

    with Image.open(ref.path) as im:  # header only: the pixels are not decoded
        return min(im.size)


READER = Reader(kind="image", label="image", matches=matches, list_file=list_file,
                read=read, native_side=native_side)
