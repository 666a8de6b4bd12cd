"""The local-finding steps of the camera views (``training/local_augment.py``), batched:
texture scrambling (the image less its Gaussian low-pass at σ = side / 8, plus a new smooth
shading and grain from white noise, OpenCV's kernels and reflect-101 borders) and the
CutPaste hard negative (a square or a thin scar of the view moved, its contrast changed),
with the draws of the per-image functions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cossl_edge.training.batch_views.filters import cv2_gaussian_kernel, separable_filter


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
