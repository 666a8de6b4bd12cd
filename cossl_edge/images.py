"""Reading ordinary image files (PNG, JPEG, BMP, TIFF) into [0, 1] float arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm"})


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message says why and what to do."""


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to float32 H×W or H×W×3 in [0, 1].

    8-bit images are divided by 255, 16-bit by 65535; float images (TIFF mode F) are taken as
    they are and must already be finite. Palette and alpha images are converted to RGB.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError("empty file (0 bytes)")
        with Image.open(path) as im:
            im.load()
            arr = _pil_to_unit(im)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"not a readable image ({type(e).__name__}: {e})") from e
    if not np.isfinite(arr).all():
        raise ImageReadError("image holds NaN or infinite values; clean the file and retry")
    return arr


def _pil_to_unit(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if mode == "I":
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if a.max(initial=0) <= 65535 else float(a.max())
        return (a / hi).astype(np.float32)
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return a.copy()
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    if mode == "LA":
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
