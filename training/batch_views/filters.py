"""The 1-D filters the batched views share, on tensors: separable filtering of a batch with
one kernel per image (grouped convolutions or band matrices), reflect-101 borders as OpenCV
mirrors them, and the Gaussian kernels of the three libraries the per-image views use
(albumentations' blur, OpenCV's ``GaussianBlur`` for texture scrambling, MONAI's ``erf``
kernel for smoothing)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def reflect101(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel coordinates mirrored into [0, size − 1] about the border pixels (OpenCV's
    BORDER_REFLECT_101, repeated: a period of 2·(size − 1))."""
    if size == 1:
        return torch.zeros_like(coord)
    period = 2 * (size - 1)
    coord = torch.remainder(coord.abs(), period)
    return torch.where(coord > size - 1, period - coord, coord)


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
        src = reflect101(src.to(torch.float64), size).long()
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
            idx = reflect101(torch.arange(-pad, side + pad, dtype=torch.float64), side).long()
            out = out.index_select(axis, idx)
        out = F.conv2d(out, weight, groups=n * c)
    return out.view(n, c, h, w)


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
