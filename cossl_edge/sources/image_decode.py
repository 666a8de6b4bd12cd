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
    16-bit colour images are read through OpenCV (Pillow keeps 8 of their 16 bits); without
    OpenCV they are an error, never silently 8-bit, so every machine prepares the same
    pixels.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError("empty file (0 bytes)")
        with Image.open(path) as im:
            deep_colour = im.mode in ("RGB", "RGBA") and _has_16_bit_samples(im)
            im.load()
            arr = _pil_to_unit(im)
        if deep_colour:  # Pillow keeps 8 of the 16 bits of colour samples; OpenCV keeps all
            arr = _read_16_bit_colour(path, fallback=arr)
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


def _has_16_bit_samples(im: Image.Image) -> bool:
    for tile in im.tile:
        args = tile.args if hasattr(tile, "args") else tile[3]
        rawmode = args[0] if isinstance(args, tuple) else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _read_16_bit_colour(path: Path, fallback: np.ndarray) -> np.ndarray:
    try:
        import cv2
    except ImportError:  # Pillow would keep 8 of the 16 bits: the device would then
        # prepare the file differently from a machine with OpenCV (training's)
        raise ImageReadError("16-bit colour image: reading all its bits needs OpenCV, which "
                             "is not installed here; pip install 'cossl-edge[video]' (or "
                             "save the image with 8-bit colour)") from None
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.dtype != np.uint16 or bgr.ndim != 3:
        return fallback
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32) / 65535.0
