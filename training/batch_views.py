"""The camera views of a whole batch at once, on tensors: one resample per view for the
rotation, one for the random resized crop and flip, and the colour, blur and solarize steps
as batched tensor operations.

The per-image pipeline (:func:`cossl_edge.training.views.camera_views`: albumentations, one
image at a time) spends most of its time in Python around small OpenCV calls: about 0.6 ms
per pair, 70–80 ms per batch of 128, which is a fifth of a training step of the default
recipe on two cores (``docs/benchmarks.md``). Here the same random draws are made for the
whole batch with numpy and applied with a few torch operations on B×C×H×W tensors.

The views are what albumentations makes, transform by transform (``tests/test_batch_views.py``
compares each step's pixels with albumentations' functions for the same parameters, and the
views' distributions with the per-image pipeline's):

- **rotation** (``rotate`` > 0): uniform in ±``rotate`` degrees about the centre, bilinear,
  black corners (or mirrored ones, reflect-101, for a patch of a larger image) — as
  :func:`cossl_edge.training.views.rotate`;
- **random resized crop**: albumentations' ``RandomResizedCrop`` draw (area in
  [``min_scale``, 1] of the image, log-uniform aspect ratio in [3/4, 4/3], ten tries, then
  the centre crop), an integer box resized bilinearly (half-pixel centres, edges clamped:
  OpenCV's ``INTER_LINEAR``);
- **horizontal flip** with probability ``hflip``;
- **colour** with probability 0.8: for one channel ``RandomBrightnessContrast``
  (x·(1+c) + b, c and b uniform in ±``jitter``, clipped); for colour ``ColorJitter``
  (brightness and contrast in [1 − ``jitter``, 1 + ``jitter``], saturation 0.8–1.2, hue
  ±0.1, in a random order per image) and then ``ToGray`` with probability 0.2;
- **Gaussian blur**: the fixed odd kernel of about 10% of the side, σ uniform in 0.1–2,
  reflect-101 borders (view 1 always with the default ``blur``, view 2 with a tenth of it);
- **solarize** (view 2, probability ``solarize``): x ≥ 0.5 → 1 − x.

The medical views (:func:`cossl_edge.training.views.medical_views`) share the geometry and
replace the colour steps with MONAI's intensity transforms, here batched with the same
formulas (``tests/test_batch_views.py`` compares them with MONAI's own transforms for the
same parameters): ``AdjustContrast`` (gamma 0.7–1.5, p 0.8), ``HistogramShift`` (5–10
control points, p 0.3), ``RandBiasField`` (degree 3, p 0.3), ``GaussianSmooth`` (σ 0.25–1
per axis, MONAI's erf kernel and zero padding) and Gaussian noise (σ up to 0.05).

The local-finding steps of the camera views (``training/local_augment.py``) are batched
too: texture scrambling (the image less its Gaussian low-pass at σ = side / 8, plus a new
smooth shading and grain from white noise, OpenCV's kernels and reflect-101 borders) and
the CutPaste hard negative (a square or a thin scar of the view moved, its contrast
changed), with the draws of the per-image functions.

The random draws come from one numpy Generator per process, seeded by
:meth:`cossl_edge.training.views.TwoViews.reseed`; they differ from the per-image
pipeline's streams (the same distributions, not the same samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect ratios
GRAY = (0.299, 0.587, 0.114)  # OpenCV's RGB → gray weights (ToGray, contrast, saturation)


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


def _reflect101(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates mirrored into [0, size − 1] about the border pixels (OpenCV's
    BORDER_REFLECT_101, repeated: a period of 2·(size − 1))."""
    if size == 1:
        return torch.zeros_like(coord)
    period = 2 * (size - 1)
    coord = torch.remainder(coord.abs(), period)
    return torch.where(coord > size - 1, period - coord, coord)


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
    grid = _normalised(_reflect101(sx, w), _reflect101(sy, h), (h, w))
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


def gaussian_kernels(sigma: np.ndarray, k: int) -> np.ndarray:
    """B×k normalised 1-D Gaussian kernels of odd size k (albumentations' kernel)."""
    x = np.arange(-(k // 2), k // 2 + 1, dtype=np.float64)
    kern = np.exp(-0.5 * (x[None, :] / np.asarray(sigma, np.float64)[:, None]) ** 2)
    return kern / kern.sum(axis=1, keepdims=True)


def band_matrices(kern: torch.Tensor, size: int, reflect: bool = True) -> torch.Tensor:
    """n×size×size matrices B with (B @ x)[r] = Σₜ kern[t]·x[r + t − k//2] for each image's
    1-D kernel (``kern``: n×k, k odd): a 1-D filtering along one axis of a size-long signal
    as one matrix, the borders mirrored (OpenCV's BORDER_REFLECT_101, repeated for kernels
    longer than the signal) or, with ``reflect=False``, zero."""
    n, k = kern.shape
    src = torch.arange(size).view(-1, 1) + torch.arange(k).view(1, -1) - k // 2  # size×k
    weight = kern.view(n, 1, k).expand(n, size, k)
    if reflect:
        src = _reflect101(src.to(torch.float64), size).long()
    else:
        weight = weight * ((src >= 0) & (src < size))
        src = src.clamp(0, size - 1)
    out = torch.zeros(n, size, size, dtype=kern.dtype)
    return out.scatter_add_(2, src.expand(n, size, k), weight)


def separable_filter(x: torch.Tensor, kern: torch.Tensor,
                     kern_cols: torch.Tensor | None = None, reflect: bool = True,
                     method: str = "auto") -> torch.Tensor:
    """x (n×c×h×w) filtered with each image's 1-D kernel (``kern``: n×k, k odd, or 1×k for
    one kernel shared by the batch) along the rows' axis and (``kern_cols``, else the same)
    along the columns' (cross-correlation),
    borders mirrored (reflect-101, repeated for kernels longer than the image) or zero.

    Two ways, the same sums: ``matmul``, Bₕ · x · B_wᵀ with :func:`band_matrices` (cost
    grows with the side, not the kernel: many times faster for the wide kernels of texture
    scrambling, 65 taps at 64 px), or ``conv``, a grouped convolution per axis (faster for
    short kernels: blur, smoothing). ``auto``: matmul when a kernel is at least a quarter
    of the side."""
    kern = kern.to(x.dtype)
    cols = kern if kern_cols is None else kern_cols.to(x.dtype)
    n, c, h, w = x.shape
    if method == "auto":
        method = "matmul" if 4 * max(kern.shape[1], cols.shape[1]) >= min(h, w) else "conv"
    if method == "matmul":
        rows_m = band_matrices(kern, h, reflect)
        cols_m = rows_m if kern_cols is None and h == w else band_matrices(cols, w, reflect)
        return rows_m.unsqueeze(1) @ x @ cols_m.transpose(1, 2).unsqueeze(1)
    out = x.reshape(1, n * c, h, w)
    for axis, k1 in ((2, kern), (3, cols)):
        k1 = k1.expand(n, -1)  # a shared kernel, once per image
        k = k1.shape[1]
        pad, side = k // 2, out.shape[axis]
        weight = k1.repeat_interleave(c, dim=0).view(n * c, 1, *((k, 1) if axis == 2 else (1, k)))
        if not reflect:
            out = F.conv2d(out, weight, padding=(pad, 0) if axis == 2 else (0, pad),
                           groups=n * c)
            continue
        if side > pad:  # F.pad's reflect is reflect-101
            out = F.pad(out, (0, 0, pad, pad) if axis == 2 else (pad, pad, 0, 0), mode="reflect")
        else:  # shorter than the kernel: reflect-101 by index, repeated
            idx = _reflect101(torch.arange(-pad, side + pad, dtype=torch.float64), side).long()
            out = out.index_select(axis, idx)
        out = F.conv2d(out, weight, groups=n * c)
    return out.view(n, c, h, w)


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


def geometry(x: torch.Tensor, p: ViewParams, size: int, reflect: bool) -> torch.Tensor:
    """The rotation, random resized crop and flip of a batch (the views' shared geometry)."""
    if np.any(p.angle != 0):
        x = rotate_batch(x, p.angle, reflect)
    return crop_resize_flip(x, p.box, p.flip, size)


def apply_view(x: torch.Tensor, p: ViewParams, size: int, kernel: int, reflect: bool
               ) -> torch.Tensor:
    """One camera view of a batch x (B×C×H×W in [0, 1]) with draws ``p``: B×C×size×size
    in [0, 1]."""
    x = geometry(x, p, size, reflect)
    x = colour(x, p)
    x = blur(x, p.sigma, p.blur, kernel)
    x = solarize(x, p.solarize)
    return x.clamp_(0.0, 1.0)


# --- the local-finding steps (training/local_augment.py, batched) -------------------------

def cv2_gaussian_kernel(sigma: np.ndarray, k: int | None = None) -> np.ndarray:
    """B×k 1-D Gaussian kernels as ``cv2.GaussianBlur(img, (0, 0), σ)`` builds them for
    float images (size ``round(8σ + 1) | 1``, normalised), each centred in k taps (zeros
    outside its own size; k: the largest size)."""
    sigma = np.atleast_1d(np.asarray(sigma, np.float64))
    sizes = np.rint(8 * sigma + 1).astype(np.int64) | 1
    k = int(sizes.max()) if k is None else k
    x = np.arange(k, dtype=np.float64) - (k - 1) / 2
    kern = np.exp(-0.5 * (x[None, :] / sigma[:, None]) ** 2)
    kern[np.abs(x)[None, :] > (sizes[:, None] - 1) / 2] = 0.0
    return kern / kern.sum(axis=1, keepdims=True)


@dataclass
class TextureParams:
    """What :func:`scramble_texture` draws for a batch: which images are scrambled and, for
    those (in batch order), the white noise of the new shading and of the grain (m×side×side
    tensors), the grain's σ (0.5–1.5 px) and its standard deviation (0.02–0.06)."""
    applied: np.ndarray
    field: torch.Tensor
    grain: torch.Tensor
    grain_sigma: np.ndarray
    grain_std: np.ndarray


def draw_texture(rng: np.random.Generator, n: int, side: int, p: float) -> TextureParams:
    """The white noise comes from a torch Generator seeded from ``rng`` (half the time of
    numpy's for these sizes)."""
    applied = rng.random(n) < p
    m = int(applied.sum())
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    field, grain = (torch.empty(m, side, side).normal_(generator=gen) for _ in range(2))
    return TextureParams(applied, field, grain, rng.uniform(0.5, 1.5, m),
                         rng.uniform(0.02, 0.06, m))


def _unit_spread(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Each image of x (m×1×h×w) scaled to the standard deviation ``target`` (m)."""
    std = x.reshape(len(x), -1).std(dim=1, correction=0)
    return x * (target / (std + 1e-6)).view(-1, 1, 1, 1)


def scramble_texture(x: torch.Tensor, t: TextureParams) -> torch.Tensor:
    """:func:`cossl_edge.training.local_augment.scramble_texture` of the images ``t.applied``
    of a batch (B×C×H×W): ``x − lowpass(x) + mean + field + grain``, the low-pass a Gaussian
    at σ = side / 8 (reflect-101), the field white noise at that scale with the shading's
    own strength, the grain white noise at the drawn σ and standard deviation."""
    if not t.applied.any():
        return x
    idx = np.flatnonzero(t.applied)
    sub = x[idx]
    m, _, h, w = sub.shape
    wide = torch.as_tensor(cv2_gaussian_kernel(max(h, w) / 8))  # one, shared by the batch
    low = separable_filter(sub, wide)
    flat = low.reshape(m, -1)
    spread = flat.std(dim=1, correction=0) + 0.02
    field = separable_filter(torch.as_tensor(t.field)[:, None], wide)
    grain = separable_filter(torch.as_tensor(t.grain)[:, None],
                             torch.as_tensor(cv2_gaussian_kernel(t.grain_sigma)))
    noise = (_unit_spread(field, spread)
             + _unit_spread(grain, torch.as_tensor(t.grain_std, dtype=x.dtype)))
    out = x.clone()
    out[idx] = sub - low + flat.mean(dim=1).view(-1, 1, 1, 1) + noise
    return out


@dataclass
class CutParams:
    """What :func:`cut_paste` draws for a batch: each piece's height and width, where it is
    cut (sy, sx) and pasted (ty, tx), its contrast gain (0.8–1.2) and shift (±0.1)."""
    ph: np.ndarray
    pw: np.ndarray
    sy: np.ndarray
    sx: np.ndarray
    ty: np.ndarray
    tx: np.ndarray
    gain: np.ndarray
    shift: np.ndarray


def draw_cut(rng: np.random.Generator, n: int, h: int, w: int) -> CutParams:
    """CutPaste's draws (:func:`cossl_edge.training.local_augment.cut_paste`) for n images:
    a square of 8–16% of the side or a scar 2–3 px wide and 20–45% of the side long, even
    odds; turned by a multiple of 90° (a quarter or three quarters swap its sides)."""
    square = rng.random(n) < 0.5
    side = np.maximum(2, np.rint(rng.uniform(0.08, 0.16, n) * h).astype(np.int64))
    thin = rng.integers(2, 4, n)
    long = np.maximum(4, np.rint(rng.uniform(0.2, 0.45, n) * w).astype(np.int64))
    ph, pw = np.where(square, side, thin), np.where(square, side, long)
    turned = rng.integers(4, size=n) % 2 == 1
    ph, pw = np.where(turned, pw, ph), np.where(turned, ph, pw)
    sy, sx = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
    gain, shift = rng.uniform(0.8, 1.2, n), rng.uniform(-0.1, 0.1, n)
    ty, tx = rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)
    return CutParams(ph, pw, sy, sx, ty, tx, gain, shift)


def cut_paste(x: torch.Tensor, p: CutParams) -> torch.Tensor:
    """Each image of a batch (B×C×H×W) with its piece cut, its contrast changed about the
    piece's mean, and pasted (the CutPaste hard negative). A few numpy slices per image:
    the pieces differ in size, and 128 of them cost about a millisecond."""
    src = x.detach().cpu().numpy()
    out = src.copy()
    for i in range(len(src)):
        ph, pw, sy, sx, ty, tx = (int(v[i]) for v in (p.ph, p.pw, p.sy, p.sx, p.ty, p.tx))
        piece = src[i, :, sy:sy + ph, sx:sx + pw]
        mean = piece.mean()
        out[i, :, ty:ty + ph, tx:tx + pw] = ((piece - mean) * float(p.gain[i]) + mean
                                             + float(p.shift[i]))
    return torch.from_numpy(out)


# --- the medical views' intensity steps (MONAI's transforms, batched) ---------------------

@dataclass
class MedicalParams:
    """One medical view's intensity draws for B images, as the MONAI transforms of
    :func:`cossl_edge.training.views.medical_views` draw them: ``RandAdjustContrast`` (gamma),
    ``RandHistogramShift`` (control points: ``points`` of them, ``floating`` B×10 padded),
    ``RandBiasField`` (the 10 Legendre coefficients of degree 3), ``RandGaussianSmooth``
    (σ along the rows and the columns), ``RandGaussianNoise`` (its σ; the noise itself is
    drawn when applied)."""

    contrast: np.ndarray
    gamma: np.ndarray
    shift: np.ndarray
    points: np.ndarray
    floating: np.ndarray
    bias: np.ndarray
    coeff: np.ndarray
    smooth: np.ndarray
    sigma_rows: np.ndarray
    sigma_cols: np.ndarray
    noise: np.ndarray
    noise_std: np.ndarray
    noise_seed: int


HIST_POINTS = (5, 10)
BIAS_DEGREE = 3


def draw_medical(rng: np.random.Generator, n: int, smooth_p: float, noise_p: float
                 ) -> MedicalParams:
    """One medical view's intensity draws for n images (see :class:`MedicalParams`):
    contrast p 0.8 with gamma 0.7–1.5; histogram shift p 0.3 with 5–10 control points, each
    inner point uniform between its left neighbour (already moved) and its right one; bias
    field p 0.3 with coefficients uniform in 0–0.1; smoothing p ``smooth_p`` with σ 0.25–1
    px per axis; noise p ``noise_p`` with σ uniform in 0–0.05."""
    u = rng.random(size=(n, 5))
    points = rng.integers(HIST_POINTS[0], HIST_POINTS[1] + 1, size=n)
    top = HIST_POINTS[1]
    ref = np.arange(top)[None, :] / (points[:, None] - 1)  # linspace(0, 1, points), padded
    floating = np.minimum(ref, 1.0)
    for i in range(1, top - 1):
        inner = i < points - 1
        moved = rng.uniform(floating[:, i - 1], floating[:, i + 1])
        floating[:, i] = np.where(inner, moved, floating[:, i])
    floating[np.arange(top)[None, :] >= points[:, None]] = 1.0
    n_coeff = (BIAS_DEGREE + 1) * (BIAS_DEGREE + 2) // 2
    return MedicalParams(
        contrast=u[:, 0] < 0.8, gamma=rng.uniform(0.7, 1.5, size=n),
        shift=u[:, 1] < 0.3, points=points, floating=floating,
        bias=u[:, 2] < 0.3, coeff=rng.uniform(0.0, 0.1, size=(n, n_coeff)),
        smooth=u[:, 3] < smooth_p, sigma_rows=rng.uniform(0.25, 1.0, size=n),
        sigma_cols=rng.uniform(0.25, 1.0, size=n),
        noise=u[:, 4] < noise_p, noise_std=rng.uniform(0.0, 0.05, size=n),
        noise_seed=int(rng.integers(2**63 - 1)))


def _image_min_range(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.reshape(len(x), -1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    return lo.view(-1, 1, 1, 1), (hi - lo).view(-1, 1, 1, 1)


def adjust_contrast(x: torch.Tensor, gamma: np.ndarray) -> torch.Tensor:
    """MONAI's ``AdjustContrast`` per image: ((x − min)/(range + 1e-7))^gamma·range + min."""
    lo, rng_ = _image_min_range(x)
    g = torch.as_tensor(np.asarray(gamma, np.float64), dtype=x.dtype).view(-1, 1, 1, 1)
    return ((x - lo) / (rng_ + 1e-7)) ** g * rng_ + lo


def histogram_shift(x: torch.Tensor, points: np.ndarray, floating: np.ndarray
                    ) -> torch.Tensor:
    """MONAI's ``HistogramShift`` per image: the intensities, scaled to [0, 1] by the image's
    range, mapped piecewise linearly from ``points`` equally spaced control points to the
    ``floating`` ones; an image of one value is left as it is."""
    b = len(x)
    lo, rng_ = _image_min_range(x)
    t = ((x - lo) / torch.where(rng_ > 0, rng_, torch.ones_like(rng_))).reshape(b, -1)
    segments = torch.as_tensor(np.asarray(points) - 1, dtype=x.dtype).view(b, 1)
    pos = t * segments
    idx = torch.minimum(pos.floor().clamp(min=0), segments - 1).long()
    table = torch.as_tensor(floating, dtype=x.dtype)
    left, right = table.gather(1, idx), table.gather(1, idx + 1)
    mapped = left + (pos - idx) * (right - left)
    mapped = torch.where(t < 0, table[:, :1], torch.where(t > 1, table.gather(
        1, segments.long()), mapped))
    out = mapped.reshape(x.shape) * rng_ + lo
    return torch.where(rng_ > 0, out, x)


def _legendre(n: int, degree: int) -> torch.Tensor:
    """(degree+1)×n Legendre polynomials P_0..P_degree on linspace(−1, 1, n) (float32
    coordinates, as MONAI's bias field takes them)."""
    c = np.linspace(-1.0, 1.0, n, dtype=np.float32).astype(np.float64)
    rows = [np.ones_like(c), c]
    for k in range(1, degree):
        rows.append(((2 * k + 1) * c * rows[k] - k * rows[k - 1]) / (k + 1))
    return torch.from_numpy(np.stack(rows[:degree + 1]))


def bias_field(x: torch.Tensor, coeff: np.ndarray) -> torch.Tensor:
    """MONAI's ``RandBiasField`` (2-D, degree 3) per image: x·exp(Σ c_ij P_i(row) P_j(col)),
    the coefficients in ``np.tril_indices`` order."""
    b, _, h, w = x.shape
    d = BIAS_DEGREE
    mat = np.zeros((b, d + 1, d + 1))
    rows, cols = np.tril_indices(d + 1)
    mat[:, rows, cols] = coeff
    field = torch.einsum("ih,bij,jw->bhw", _legendre(h, d), torch.from_numpy(mat),
                         _legendre(w, d))
    return (x.double() * torch.exp(field).unsqueeze(1)).to(x.dtype)


def monai_gaussian_kernels(sigma: np.ndarray, truncated: float = 4.0) -> torch.Tensor:
    """B×(2·tail+1) kernels of MONAI's ``gaussian_1d`` (``erf``, not normalised), each of its
    own tail int(max(4σ, 0.5) + 0.5) and zero beyond, centred in the longest."""
    sigma = np.asarray(sigma, np.float64)
    tails = (np.maximum(sigma.astype(np.float32) * truncated, 0.5) + 0.5).astype(np.int64)
    tail = int(tails.max())
    xs = torch.arange(-tail, tail + 1, dtype=torch.float32).view(1, -1)
    t = (0.70710678 / torch.as_tensor(np.abs(sigma), dtype=torch.float32)).view(-1, 1)
    out = (0.5 * (torch.erf(t * (xs + 0.5)) - torch.erf(t * (xs - 0.5)))).clamp(min=0)
    return torch.where(xs.abs() <= torch.from_numpy(tails).view(-1, 1), out,
                       torch.zeros_like(out))


def gaussian_smooth(x: torch.Tensor, sigma_rows: np.ndarray, sigma_cols: np.ndarray
                    ) -> torch.Tensor:
    """MONAI's ``GaussianSmooth`` per image (σ along the rows' axis, then the columns'),
    zero padding."""
    return separable_filter(x, monai_gaussian_kernels(sigma_rows),
                            monai_gaussian_kernels(sigma_cols), reflect=False)


def _where(applied: np.ndarray, x: torch.Tensor, fn) -> torch.Tensor:
    """fn applied to the images where ``applied`` (fn takes the sub-batch and the indices)."""
    if not applied.any():
        return x
    idx = np.flatnonzero(applied)
    out = x.clone()
    out[idx] = fn(x[idx], idx)
    return out


def medical_intensity(x: torch.Tensor, p: MedicalParams) -> torch.Tensor:
    """The medical views' intensity steps on a batch, in MONAI's order: contrast, histogram
    shift, bias field, smoothing, noise."""
    x = _where(p.contrast, x, lambda s, i: adjust_contrast(s, p.gamma[i]))
    x = _where(p.shift, x, lambda s, i: histogram_shift(s, p.points[i], p.floating[i]))
    x = _where(p.bias, x, lambda s, i: bias_field(s, p.coeff[i]))
    x = _where(p.smooth, x, lambda s, i: gaussian_smooth(s, p.sigma_rows[i],
                                                         p.sigma_cols[i]))

    def noise(s: torch.Tensor, i: np.ndarray) -> torch.Tensor:
        g = torch.Generator().manual_seed(p.noise_seed)
        std = torch.as_tensor(p.noise_std[i], dtype=s.dtype).view(-1, 1, 1, 1)
        return s + std * torch.randn(s.shape, generator=g, dtype=s.dtype)

    return _where(p.noise, x, noise)
