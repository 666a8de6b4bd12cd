"""One view's random draws for a batch (:class:`ViewParams`): what the camera step draws
(:func:`~cossl_edge.training.batch_views.camera.draw`) and the geometry step reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ViewParams:
    """One view's random draws for a batch of B images of side ``h``×``w`` (numpy arrays
    of length B): rotation angle (degrees), crop box (top, left, height, width), flip,
    colour (applied; contrast/brightness factors, and for colour images saturation, hue and
    the order of the four jitter steps), grayscale, blur (applied; σ) and solarize."""

    angle: np.ndarray
    box: np.ndarray  # B×4 int: top, left, height, width
    flip: np.ndarray
    colour: np.ndarray
    contrast: np.ndarray
    brightness: np.ndarray
    saturation: np.ndarray
    hue: np.ndarray
    order: np.ndarray  # B×4: the jitter steps' order (0 brightness, 1 contrast, 2 sat., 3 hue)
    gray: np.ndarray
    blur: np.ndarray
    sigma: np.ndarray
    solarize: np.ndarray
