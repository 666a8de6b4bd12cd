"""DICOM sources: the header pass, series ordering, the reading chain and windowing."""

from cossl_edge.dicom.header import DicomHeader, DicomSkip, looks_like_dicom, read_header
from cossl_edge.dicom.pixels import CODECS_HINT, DicomCodecError, read_frame, to_unit
from cossl_edge.dicom.series import group_series, order_slices, series_frames
from cossl_edge.dicom.windowing import CT_PRESETS, window_to_unit

__all__ = [
    "CODECS_HINT", "CT_PRESETS", "DicomCodecError", "DicomHeader", "DicomSkip",
    "group_series", "looks_like_dicom", "order_slices", "read_frame", "read_header",
    "series_frames", "to_unit", "window_to_unit",
]
