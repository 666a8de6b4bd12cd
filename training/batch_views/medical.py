"""The medical views' intensity steps (MONAI's transforms of
:func:`cossl_edge.training.views.medical_views`), batched with the same formulas:
``AdjustContrast``, ``HistogramShift``, ``RandBiasField``, ``GaussianSmooth`` and Gaussian
noise, each where its draw says, in MONAI's order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cossl_edge.training.batch_views.filters import monai_gaussian_kernels, separable_filter


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
