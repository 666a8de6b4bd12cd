"""The views' geometry for a batch: the random resized crop boxes as albumentations'
``RandomResizedCrop`` draws them, the rotation about the centre (black or mirrored
corners, as :func:`cossl_edge.training.views.rotate`), and the crop resized bilinearly and
flipped (OpenCV's ``INTER_LINEAR``) — one ``grid_sample`` each for the whole batch."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cossl_edge.training.batch_views.filters import reflect101
from cossl_edge.training.batch_views.params import ViewParams

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect ratios


def crop_boxes(rng: np.random.Generator, n: int, h: int, w: int, min_scale: float,
               tries: int = 10) -> np.ndarray:
    """n random resized crop boxes (top, left, height, width) of an h×w image, drawn as
    albumentations' ``RandomResizedCrop`` draws one: area uniform in [min_scale, 1]·h·w,
    aspect ratio log-uniform in [3/4, 4/3], the first of ``tries`` draws that fits, its
    position uniform over the places it fits; the centre crop when none fits."""
    area = h * w
    target = rng.uniform(min_scale * area, area, size=(n, tries))
    ratio = np.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1]), size=(n, tries)))
    cw = np.round(np.sqrt(target * ratio)).astype(np.int64)
    ch = np.round(np.sqrt(target / ratio)).astype(np.int64)
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = np.argmax(fits, axis=1)
    rows = np.arange(n)
    ch, cw, ok = ch[rows, first], cw[rows, first], fits[rows, first]
    # the centre crop of the whole image's fallback (a square image is within the ratios)
    in_ratio = w / h
    if in_ratio < RATIO[0]:
        fh, fw = round(w / RATIO[0]), w
    elif in_ratio > RATIO[1]:
        fh, fw = h, round(h * RATIO[1])
    else:
        fh, fw = h, w
    start = rng.random(size=(n, 2))
    top = ((h - ch + 1) * start[:, 0]).astype(np.int64)
    left = ((w - cw + 1) * start[:, 1]).astype(np.int64)
    top = np.where(ok, top, (h - fh) // 2)
    left = np.where(ok, left, (w - fw) // 2)
    ch, cw = np.where(ok, ch, fh), np.where(ok, cw, fw)
    return np.stack([top, left, ch, cw], axis=1)


def _affine_grid(ax, bx, cx, ay, by, cy, h: int, w: int, size_in: tuple[int, int]
                 ) -> torch.Tensor:
    """The sampling grid (B×h×w×2, grid_sample's normalised coordinates) of per-image affine
    maps of the output pixel (u across, v down): x = ax·u + bx·v + cx, y = ay·u + by·v + cy in
    pixels of an input of side ``size_in`` (height, width); the coefficients are B-vectors.
    Each coordinate is written in one broadcast addition of a row and a column term."""
    hi, wi = size_in
    b = len(ax)
    u = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    v = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    grid = torch.empty(b, h, w, 2, dtype=torch.float32)
    for k, (a, bb, c, side) in enumerate(((ax, bx, cx, wi), (ay, by, cy, hi))):
        # normalised: (2·x + 1)/side − 1, folded into the coefficients
        a, bb = (torch.as_tensor(2 * np.asarray(t, np.float64) / side).view(b, 1, 1)
                 for t in (a, bb))
        c = torch.as_tensor((2 * np.asarray(c, np.float64) + 1) / side - 1).view(b, 1, 1)
        torch.add((a * u + c).float(), (bb * v).float(), out=grid[..., k])
    return grid


def _pixels(grid: torch.Tensor, size_in: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    hi, wi = size_in
    return (grid[..., 0] + 1) * wi / 2 - 0.5, (grid[..., 1] + 1) * hi / 2 - 0.5


def _normalised(sx: torch.Tensor, sy: torch.Tensor, size_in: tuple[int, int]) -> torch.Tensor:
    hi, wi = size_in
    return torch.stack([(2 * sx + 1) / wi - 1, (2 * sy + 1) / hi - 1], dim=-1)


def rotate_batch(x: torch.Tensor, degrees: np.ndarray, reflect: bool) -> torch.Tensor:
    """Each image of x (B×C×H×W) turned by its angle about its centre, as
    :func:`cossl_edge.training.views.rotate` turns one: bilinear, black corners or
    (``reflect``) mirrored ones."""
    _, _, h, w = x.shape
    r = np.deg2rad(np.asarray(degrees, np.float64) % 360)
    c, s = np.cos(r), np.sin(r)
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    # the destination pixel p comes from the source at centre + Rᵀ(p − centre)
    ox, oy = cx - c * cx + s * cy, cy - s * cx - c * cy
    if not reflect:
        grid = _affine_grid(c, -s, ox, s, c, oy, h, w, (h, w))
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)
    # how far outside the image a source pixel and its bilinear neighbour can lie
    out = np.max(np.maximum(np.abs(c) * w / 2 + np.abs(s) * h / 2 - w / 2,
                            np.abs(s) * w / 2 + np.abs(c) * h / 2 - h / 2), initial=0.0)
    m = math.ceil(out) + 1
    if m < min(h, w):
        # mirrored corners: warp a reflect-101 padded copy (OpenCV's border: the padded
        # pixels, interpolated), cheaper than mirroring every sampling coordinate
        pad = F.pad(x, (m, m, m, m), mode="reflect")
        grid = _affine_grid(c, -s, ox + m, s, c, oy + m, h, w, (h + 2 * m, w + 2 * m))
        return F.grid_sample(pad, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)
    # an image smaller than that margin: mirror every sampling coordinate instead
    sx, sy = _pixels(_affine_grid(c, -s, ox, s, c, oy, h, w, (h, w)), (h, w))
    grid = _normalised(reflect101(sx, w), reflect101(sy, h), (h, w))
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_resize_flip(x: torch.Tensor, box: np.ndarray, flip: np.ndarray, size: int
                     ) -> torch.Tensor:
    """Each image's integer box (top, left, height, width) resized to size×size, bilinear
    with half-pixel centres and its edges repeated (OpenCV's ``resize`` with
    ``INTER_LINEAR``), then mirrored left–right where ``flip``."""
    b, _, hi, wi = x.shape
    top, left, bh, bw = (torch.as_tensor(np.asarray(box, np.float64)[:, k]).view(b, 1)
                         for k in range(4))
    idx = torch.arange(size, dtype=torch.float64).view(1, size)
    flip = torch.as_tensor(np.asarray(flip, bool)).view(b, 1)
    j = torch.where(flip, size - 1 - idx, idx)
    # the box's pixel of output pixel (i, j): (i + 0.5)·bh/size − 0.5, clamped to the box;
    # separable, so each coordinate is a row (or a column) per image
    sx = left + torch.minimum(((j + 0.5) * bw / size - 0.5).clamp(min=0), bw - 1)
    sy = top + torch.minimum(((idx + 0.5) * bh / size - 0.5).clamp(min=0), bh - 1)
    grid = torch.empty(b, size, size, 2, dtype=torch.float32)
    grid[..., 0] = ((2 * sx + 1) / wi - 1).float().view(b, 1, size)
    grid[..., 1] = ((2 * sy + 1) / hi - 1).float().view(b, size, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def geometry(x: torch.Tensor, p: ViewParams, size: int, reflect: bool) -> torch.Tensor:
    """The rotation, random resized crop and flip of a batch (the views' shared geometry)."""
    if np.any(p.angle != 0):
        x = rotate_batch(x, p.angle, reflect)
    return crop_resize_flip(x, p.box, p.flip, size)
