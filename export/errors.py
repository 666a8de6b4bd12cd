"""The one error type of the exporter: a user-fixable problem, one line naming file and fix."""

from __future__ import annotations


class ExportError(ValueError):
    """A run directory, calibration folder or exported file that cannot be used as asked."""
