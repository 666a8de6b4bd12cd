"""Statistics of training views for the distribution tests (test_data_path, test_batch_views)."""

from __future__ import annotations

import numpy as np


def orientation(v: np.ndarray) -> float:
    """The angle (degrees) of a view's bright structure, from its second moments (pixels
    above the view's median, which is the background here)."""
    w = np.clip(v - np.median(v), 0.0, None)
    ys, xs = np.mgrid[:v.shape[0], :v.shape[1]]
    m = w.sum() + 1e-9
    cy, cx = (w * ys).sum() / m, (w * xs).sum() / m
    mu20, mu02 = (w * (xs - cx) ** 2).sum() / m, (w * (ys - cy) ** 2).sum() / m
    mu11 = (w * (xs - cx) * (ys - cy)).sum() / m
    return float(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
