"""The old name of :mod:`cossl_edge.export.export_report`, kept only until
``export/pipeline.py`` and ``cossl_edge/commands/export.py`` import the new one; then delete."""

from cossl_edge.export.export_report import (  # noqa: F401
    MIN_COSINE,
    REPORT_FILE,
    finite_or_none,
    recommend_int8,
    report_tables,
    speedup,
    write_report,
)
