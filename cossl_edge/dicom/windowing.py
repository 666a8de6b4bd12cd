"""VOI windowing to [0, 1]: header windows, named CT presets and percentile windows.

pydicom's ``apply_windowing`` maps into the stored value range; the encoder wants [0, 1], so
the same formulas (DICOM PS3.3 C.11.2.1.2) are written here with that output range.
"""

from __future__ import annotations

import numpy as np

# (center, width) in Hounsfield units; the usual radiology reading windows.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "abdomen": (40.0, 400.0),
}
AUTO_PERCENTILES = (0.5, 99.5)
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def window_to_unit(arr: np.ndarray, center: float, width: float,
                   function: str = "LINEAR") -> np.ndarray:
    """Map values through a VOI window to float32 [0, 1] (PS3.3 C.11.2.1.2.1 and .3)."""
    x = np.array(arr, np.float32)  # float32 holds HU exactly enough, at half the traffic
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        x -= center - width / 2.0
        x /= width
        y = x
    else:  # LINEAR: the standard's half-pixel offsets; a width below 1 is invalid there
        width = max(width, 1.0)
        x -= center - 0.5 - (width - 1.0) / 2.0
        x /= max(width - 1.0, 1e-6)
        y = x
    return np.clip(y, 0.0, 1.0, out=y).astype(np.float32, copy=False)


def percentile_window(arr: np.ndarray, percentiles: tuple[float, float] = AUTO_PERCENTILES
                      ) -> tuple[float, float]:
    """(center, width) spanning the given percentiles; robust to a few outlier pixels."""
    lo, hi = np.percentile(np.asarray(arr, np.float64), percentiles)
    return (lo + hi) / 2.0, max(float(hi - lo), 0.0)


def auto_to_unit(arr: np.ndarray) -> np.ndarray:
    """Percentile window; a constant image becomes all zeros rather than dividing by 0."""
    center, width = percentile_window(arr)
    if width <= 0:
        return np.zeros(np.shape(arr), np.float32)
    return window_to_unit(arr, center, width, "LINEAR_EXACT")
