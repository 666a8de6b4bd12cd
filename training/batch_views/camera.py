"""The camera views of a batch: one view's random draws (geometry, colour, blur,
solarize), the colour step (``RandomBrightnessContrast`` for one channel, ``ColorJitter``
in a random order per image then ``ToGray`` for colour), the Gaussian blur and solarize,
and the whole view (:func:`apply_view`)."""

from __future__ import annotations

import numpy as np
import torch

from cossl_edge.training.batch_views.filters import gaussian_kernels, separable_filter
from cossl_edge.training.batch_views.geometry import crop_boxes, geometry
from cossl_edge.training.batch_views.params import ViewParams

GRAY = (0.299, 0.587, 0.114)  # OpenCV's RGB → gray weights (ToGray, contrast, saturation)


def draw(rng: np.random.Generator, n: int, h: int, w: int, *, min_scale: float,
         hflip: float, rotate: float, jitter: float, colour_image: bool, blur: float,
         solarize: float) -> ViewParams:
    """One view's random draws for n images of side h×w (see :class:`ViewParams`)."""
    u = rng.random(size=(n, 5))  # the Bernoulli draws: flip, colour, gray, blur, solarize
    if colour_image:
        lo = max(0.0, 1.0 - jitter)
        brightness = rng.uniform(lo, 1.0 + jitter, size=n)
        contrast = rng.uniform(lo, 1.0 + jitter, size=n)
        saturation = rng.uniform(0.8, 1.2, size=n)
        hue = rng.uniform(-0.1, 0.1, size=n)
        order = rng.permuted(np.tile(np.arange(4), (n, 1)), axis=1)
    else:  # RandomBrightnessContrast: x·(1 + c) + b
        contrast = 1.0 + rng.uniform(-jitter, jitter, size=n)
        brightness = rng.uniform(-jitter, jitter, size=n)
        saturation, hue = np.ones(n), np.zeros(n)
        order = np.tile(np.arange(4), (n, 1))
    return ViewParams(
        angle=rng.uniform(-rotate, rotate, size=n) if rotate > 0 else np.zeros(n),
        box=crop_boxes(rng, n, h, w, min_scale),
        flip=u[:, 0] < hflip,
        colour=u[:, 1] < 0.8,
        contrast=contrast, brightness=brightness, saturation=saturation, hue=hue, order=order,
        gray=(u[:, 2] < 0.2) if colour_image else np.zeros(n, bool),
        blur=u[:, 3] < blur,
        sigma=rng.uniform(0.1, 2.0, size=n),
        solarize=u[:, 4] < solarize)


def _per_image(values: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, np.float64), dtype=x.dtype).view(-1, 1, 1, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """B×1×H×W luminance of B×3×H×W RGB (OpenCV's weights)."""
    return GRAY[0] * x[:, 0:1] + GRAY[1] * x[:, 1:2] + GRAY[2] * x[:, 2:3]


def _hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] with the hue turned by ``shift`` (a fraction of the circle, per image),
    through HSV as OpenCV converts float images."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v, _ = x.max(dim=1)
    mn, _ = x.min(dim=1)
    delta = v - mn
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(v == r, (g - b) / safe,
                    torch.where(v == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(delta > 0, h, torch.zeros_like(h)) / 6  # fraction of the circle
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)),
                    torch.zeros_like(v))
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0) * 6
    k = lambda n: torch.remainder(n + h, 6)  # noqa: E731
    chan = lambda n: v - v * s * torch.clamp(torch.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    return torch.stack([chan(5), chan(3), chan(1)], dim=1)


def colour(x: torch.Tensor, p: ViewParams) -> torch.Tensor:
    """The colour step of a batch: brightness/contrast (one channel) or the four jitter
    steps in each image's order (colour), where ``p.colour``; then grayscale where
    ``p.gray``."""
    on = torch.from_numpy(p.colour).view(-1, 1, 1, 1)
    if x.shape[1] == 1:
        out = (x * _per_image(p.contrast, x) + _per_image(p.brightness, x)).clamp_(0, 1)
        return torch.where(on, out, x)
    out = x.clone()
    for position in range(4):
        step = p.order[:, position]
        for which in range(4):
            idx = np.flatnonzero((step == which) & p.colour)
            if not len(idx):
                continue
            sub = out[idx]
            if which == 0:
                sub = (sub * _per_image(p.brightness[idx], sub)).clamp_(0, 1)
            elif which == 1:
                f = _per_image(p.contrast[idx], sub)
                mean = _gray(sub).mean(dim=(1, 2, 3), keepdim=True)
                sub = (sub * f + mean * (1 - f)).clamp_(0, 1)
            elif which == 2:
                f = _per_image(p.saturation[idx], sub)
                sub = (sub * f + _gray(sub) * (1 - f)).clamp_(0, 1)
            else:
                sub = _hue_shift(sub, torch.as_tensor(p.hue[idx], dtype=sub.dtype))
            out[idx] = sub
    gray = torch.from_numpy(p.gray).view(-1, 1, 1, 1)
    return torch.where(gray, _gray(out).expand_as(out), out)


def blur(x: torch.Tensor, sigma: np.ndarray, applied: np.ndarray, k: int) -> torch.Tensor:
    """Separable Gaussian blur of size k with each image's σ, reflect-101 borders, where
    ``applied``."""
    if not applied.any():
        return x
    idx = np.flatnonzero(applied)
    kern = torch.as_tensor(gaussian_kernels(sigma[idx], k))
    out = x.clone()
    out[idx] = separable_filter(x[idx], kern)
    return out


def solarize(x: torch.Tensor, applied: np.ndarray) -> torch.Tensor:
    """x ≥ 0.5 → 1 − x, where ``applied``."""
    if not applied.any():
        return x
    idx = np.flatnonzero(applied)
    sub = x[idx]
    out = x.clone()
    out[idx] = torch.where(sub >= 0.5, 1 - sub, sub)
    return out


def apply_view(x: torch.Tensor, p: ViewParams, size: int, kernel: int, reflect: bool
               ) -> torch.Tensor:
    """One camera view of a batch x (B×C×H×W in [0, 1]) with draws ``p``: B×C×size×size
    in [0, 1]."""
    x = geometry(x, p, size, reflect)
    x = colour(x, p)
    x = blur(x, p.sigma, p.blur, kernel)
    x = solarize(x, p.solarize)
    return x.clamp_(0.0, 1.0)
