"""Finding samples in a folder and decoding them to [0, 1] float arrays.

A *sample* is one 2D image: an image file, one frame of a video, or one slice / frame of a
DICOM object. :func:`discover` lists them; :func:`load_sample` decodes one. Each kind of
file has a reader (``sources/image.py``, ``video.py``, ``dicom.py``) registered in one
table (``sources/registry.py``); :class:`SamplingOptions` says how densely DICOM series and
videos are sampled.
"""

from cossl_edge.sources.discovery import discover
from cossl_edge.sources.labels import labelled_samples
from cossl_edge.sources.loading import data_detail, detail_side, load_many, load_sample, native_side
from cossl_edge.sources.reader import Reader
from cossl_edge.sources.refs import Discovery, SampleRef, Skipped, SourceError
from cossl_edge.sources.registry import (
                                       READERS,
                                       reader_for_kind,
                                       reader_for_path,
                                       register_reader,
                                       unregister_reader,
)
from cossl_edge.sources.sampling import SamplingOptions

__all__ = [
    "READERS", "Discovery", "Reader", "SampleRef", "SamplingOptions", "Skipped",
    "SourceError", "data_detail", "detail_side", "discover", "labelled_samples", "load_many",
    "load_sample", "native_side",
    "reader_for_kind", "reader_for_path", "register_reader", "unregister_reader",
]
