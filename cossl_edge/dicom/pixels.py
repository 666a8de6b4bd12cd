"""The DICOM reading chain, in the order PS3.3 C.11 gives: decode one frame → modality LUT
(Rescale Slope/Intercept, HU for CT) → VOI window → MONOCHROME1 inversion → [0, 1].

Colour images (RGB, YBR converted by pydicom, palette colour) skip the grayscale steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.pixels import pixel_array as pydicom_pixel_array
from pydicom.tag import Tag
from pydicom.uid import UID

from cossl_edge.dicom.header import DicomSkip, open_bounded, pydicom_quiet, read_header
from cossl_edge.dicom.windowing import CT_PRESETS, auto_to_unit, window_to_unit

CODECS_HINT = ("pip install 'cossl-edge[codecs]' (permissive decoders; 12-bit JPEG Extended "
               "needs 'cossl-edge[codecs-gpl]', GPL-3.0)")
# Beyond the image pixel module (group 0028, which pydicom always returns), the chain needs
# the modality (for CT presets) and the functional groups of enhanced multi-frame objects.
EXTRA_TAGS = [Tag("Modality"), Tag("SharedFunctionalGroupsSequence"),
              Tag("PerFrameFunctionalGroupsSequence")]


class DicomCodecError(DicomSkip):
    """Pixel data in a transfer syntax no installed decoder handles."""


def require_decoder(ts: UID) -> None:
    """Fail early, naming the transfer syntax and the fix, when nothing can decode ``ts``."""
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as e:
        raise DicomCodecError(f"transfer syntax '{ts.name}' ({ts}) has no pixel decoder in "
                              "pydicom; convert the file to an uncompressed syntax") from e
    if not decoder.is_available:
        raise DicomCodecError(f"transfer syntax '{ts.name}' needs a decoder that is not "
                              f"installed: {CODECS_HINT}")


def read_frame(path: str | Path, frame: int | None = None, window: str = "header",
               checked: bool = False) -> np.ndarray:
    """One frame of a DICOM file as float32 H×W (grayscale) or H×W×3 (colour) in [0, 1].

    ``checked``: the caller already passed this very file through the header checks (the
    node, when it received it; ``frame`` None for a single frame), so the header is not read
    again: half the cost of a small image. Should decoding fail, the full path runs and
    says why."""
    path = Path(path)
    if checked:
        try:
            arr, ds = _decode(path, frame, False)
            return to_unit(arr, ds, frame or 0, window)
        except Exception:  # noqa: BLE001 - the full path below names the problem
            pass
    arr, ds = decode_frame(path, frame)
    return to_unit(arr, ds, frame or 0, window)


def decode_frame(path: Path, frame: int | None = None) -> tuple[np.ndarray, Dataset]:
    """One frame's stored values and the attributes the display chain needs, after the
    header checks (volumes window a whole series at once, so they take the values before
    :func:`to_unit`). Raises :class:`DicomSkip` with the reason."""
    path = Path(path)
    header = read_header(path)  # refuses truncated files and absurd sizes before allocation
    require_decoder(header.transfer_syntax)
    if frame is not None and not 0 <= frame < header.frames:
        raise DicomSkip(f"frame {frame} out of range (the object has {header.frames})")
    index = frame if header.frames > 1 else None
    try:
        arr, ds = _decode(path, index, header.transfer_syntax.is_deflated)
    except Exception as e:  # decoders raise many types; one bad file must not stop a run
        detail = " ".join(str(e).split())[:160]  # one line, whatever the decoder said
        raise DicomSkip(f"pixel data could not be decoded ({type(e).__name__}: {detail})"
                        ) from e
    if header.frames > 1 and index is None:  # NumberOfFrames lied: keep the first
        arr = arr[0]
    return arr, ds


def _decode(path: Path, index: int | None, deflated: bool) -> tuple[np.ndarray, Dataset]:
    """One frame and the attributes the chain needs. Reading from the path decodes only that
    frame; a deflated file must be inflated whole first, which only ``dcmread`` does."""
    with pydicom_quiet(), open_bounded(path) as f:  # reads capped at the file's size
        if deflated:
            ds = pydicom.dcmread(f)
            return pydicom_pixel_array(ds, index=index), ds
        ds = Dataset()
        return pydicom_pixel_array(f, index=index, ds_out=ds, specific_tags=EXTRA_TAGS), ds


def to_unit(arr: np.ndarray, ds: Dataset, frame: int = 0, window: str = "header"
            ) -> np.ndarray:
    """Decoded pixels of one frame → float32 [0, 1] by the standard's display chain."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return (rgb / np.iinfo(rgb.dtype).max).astype(np.float32)
    if arr.ndim == 3:  # colour, already RGB (pydicom converts YBR by default)
        bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
        return np.clip(arr / float(2**bits - 1), 0.0, 1.0).astype(np.float32)
    values = arr if arr.dtype.kind == "f" else modality_values(arr, ds, frame)
    unit = voi_to_unit(values, ds, frame, window)
    return (1.0 - unit) if photometric == "MONOCHROME1" else unit


def modality_values(arr: np.ndarray, ds: Dataset, frame: int = 0) -> np.ndarray:
    """Stored values → modality values (HU for CT). Enhanced multi-frame objects keep the
    rescale in functional groups, which ``apply_modality_lut`` does not look into."""
    if "ModalityLUTSequence" in ds or "RescaleSlope" in ds:
        return apply_modality_lut(arr, ds)
    item = frame_item(ds, frame, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item and "RescaleIntercept" in item:
        return apply_modality_lut(arr, item)
    return arr


def voi_to_unit(values: np.ndarray, ds: Dataset, frame: int, window: str) -> np.ndarray:
    """The VOI step: a named preset (CT only), the header's window or VOI LUT, or
    percentiles. A preset on a non-CT image falls back to the header, as HU mean nothing
    there."""
    if window in CT_PRESETS and is_ct(ds, frame):
        return window_to_unit(values, *CT_PRESETS[window], "LINEAR_EXACT")
    if window != "auto":
        header_window = window_from_header(ds, frame)
        if header_window is not None:
            return window_to_unit(values, *header_window)
        if "VOILUTSequence" in ds:
            mapped = apply_voi(values, ds).astype(np.float64)
            lo, hi = float(mapped.min()), float(mapped.max())
            return ((mapped - lo) / (hi - lo) if hi > lo else mapped * 0).astype(np.float32)
    return auto_to_unit(values)


def window_from_header(ds: Dataset, frame: int = 0) -> tuple[float, float, str] | None:
    """The first (center, width, function) the file gives, top level or per frame."""
    for source in (ds, frame_item(ds, frame, "FrameVOILUTSequence")):
        if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
            continue
        try:
            center, width = _first(source.WindowCenter), _first(source.WindowWidth)
        except (TypeError, ValueError):
            continue
        if width > 0:
            return center, width, str(source.get("VOILUTFunction", "LINEAR") or "LINEAR")
    return None


def is_ct(ds: Dataset, frame: int = 0) -> bool:
    if str(ds.get("Modality", "")).upper() == "CT" or ds.get("RescaleType") == "HU":
        return True
    item = frame_item(ds, frame, "PixelValueTransformationSequence")
    return item is not None and item.get("RescaleType") == "HU"


def frame_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The first item of a functional-group sequence for ``frame``: per-frame, else shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and index < len(items) and items[index].get(sequence):
            return items[index].get(sequence)[0]
    return None


def _first(value) -> float:
    if isinstance(value, MultiValue | list | tuple):  # several windows: the first is primary
        value = value[0]
    return float(value)
