"""Encoder export (installed as ``cossl_edge.export``; needs the ``[export]`` extra).

:func:`export_run` turns a pretraining run directory into ``encoder.onnx`` (verified against
torch), ``encoder.int8.onnx`` (static QDQ, calibrated on real images) and
``export-report.json``.
"""

from cossl_edge.export.errors import ExportError
from cossl_edge.export.pipeline import export_run

__all__ = ["ExportError", "export_run"]
