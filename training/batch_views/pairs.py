"""A batch's views as :meth:`cossl_edge.training.views.TwoViews.batch` hands them to the
training loop: the two views of each image (camera: :mod:`.camera`, with texture scrambling
from :mod:`.findings` when asked; medical: the shared geometry and :mod:`.medical`'s
intensity steps), and with CutPaste a third, view 2 with a piece of itself moved."""

from __future__ import annotations

import numpy as np
import torch

from cossl_edge.training.batch_views.camera import apply_view, draw
from cossl_edge.training.batch_views.findings import (
    cut_paste,
    draw_cut,
    draw_texture,
    scramble_texture,
)
from cossl_edge.training.batch_views.geometry import geometry
from cossl_edge.training.batch_views.medical import draw_medical, medical_intensity
from cossl_edge.training.view_settings import ViewSettings


def batch_pairs(x: torch.Tensor, s: ViewSettings, size: int, kernel: int, reflect: bool,
                cutpaste: bool, rng: np.random.Generator) -> list[torch.Tensor]:
    """The views of a batch x (B×C×H×W in [0, 1], square): [view 1, view 2] and with
    ``cutpaste`` the hard negative, each B×C×size×size in [0, 1], every draw from ``rng``
    in a fixed order. ``kernel``: the camera views' blur kernel; ``reflect``: mirrored
    corners for the rotation (views of a patch of a larger image)."""
    n, h = len(x), x.shape[-1]
    out = []
    if s.preset == "medical":  # smoothing mostly in view 1, noise mostly in view 2
        for smooth_p, noise_p in ((0.5 * s.blur, 0.1), (0.1 * s.blur, 0.5)):
            p = draw(rng, n, h, h, min_scale=s.min_scale, hflip=s.hflip, rotate=s.rotate,
                     jitter=0.0, colour_image=False, blur=0.0, solarize=0.0)
            v = geometry(x, p, size, reflect)
            v = medical_intensity(v, draw_medical(rng, n, smooth_p, noise_p))
            out.append(v.clamp_(0.0, 1.0))
    else:
        for blur_p, solarize_p in ((s.blur, 0.0), (0.1 * s.blur, s.solarize)):
            p = draw(rng, n, h, h, min_scale=s.min_scale, hflip=s.hflip, rotate=s.rotate,
                     jitter=s.jitter, colour_image=x.shape[1] > 1, blur=blur_p,
                     solarize=solarize_p)
            v = apply_view(x, p, size, kernel, reflect)
            if s.texture > 0:
                v = scramble_texture(v, draw_texture(rng, n, size, s.texture)).clamp_(0.0, 1.0)
            out.append(v)
    if cutpaste:  # the hard negative: view 2 with a piece of itself moved
        out.append(cut_paste(out[1], draw_cut(rng, n, size, size)).clamp_(0.0, 1.0))
    return out
