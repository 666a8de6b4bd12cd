"""The normal model: statistics of the unlabeled training images, so that the edge can tell
"unlike the usual image at this place" without any label.

Unlabeled scans are mostly normal, and a finding is, position by position, a departure from
them. At the end of pretraining the encoder's mid-level map (``tap_features``, stride 16)
is read on the training images; per position i of that grid the model keeps

- the mean μᵢ and the inverse covariance Σᵢ⁻¹ of the features (PaDiM, Defard et al.,
  "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and Localization",
  ICPR 2021; Σ shrunk towards a scaled identity by ``SHRINKAGE``, more with few images, so
  that it inverts with fewer images than channels), as a Cholesky factor Lᵢ of Σᵢ⁻¹: the
  Mahalanobis distance mᵢ(x) = ‖(fᵢ(x) − μᵢ)ᵀ Lᵢ‖;
- the median and the median absolute deviation (MAD) of mᵢ over the training images, and of
  the input's mean intensity over that cell of the grid, rᵢ.

The anomaly map is the mean of two robust z-scores, each scaled by its median absolute
value over the training images: (mᵢ − med mᵢ)/MAD and (med rᵢ − rᵢ)/MAD, the second
*darkness*: a region darker than the same place usually is (an inactive area of a solar
cell, an opacity on an inverted radiograph). On the real EL scans each alone gave an AUC
of 0.81 and 0.80, their mean 0.85 (docs/recipe.md). The statistics travel inside the
exported ONNX file (:class:`NormalModel`), computed in fp32 even in the int8 file.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SHRINKAGE = 0.01  # Σ ← (1 − s)·Σ + s·(tr Σ / C)·I, with ten or more images per channel
# ... and s = C / (10·N), up to 1 (a scaled Euclidean distance), with fewer: a covariance
# from few images is near singular, its inverse amplifies float32 rounding by its condition
# number (six images of 128 channels: ORT and torch parted by 3e-4 of the map's range)
MAX_IMAGES = 4096  # a fixed random pick of the training images beyond this many
KEYS = ("mean", "chol", "dist_median", "dist_mad", "dist_scale", "pix_median", "pix_mad",
        "pix_scale", "grid")


@torch.no_grad()
def tap_maps(encoder: nn.Module, images: np.ndarray, contract, device: torch.device,
             batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(N×C×h×w tap features, N×h×w mean input per grid cell), both from the normalised
    images (``contract.normalize``, what the ONNX file takes)."""
    was = encoder.training
    encoder.eval()
    feats, pix = [], []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(contract.normalize(np.asarray(images[i:i + batch], np.float32)))
        x = x.to(device)
        f = encoder.tap_features(x).float()
        feats.append(f.cpu().numpy())
        pix.append(cell_means(x, f.shape[-2:]).cpu().numpy())
    encoder.train(was)
    return np.concatenate(feats), np.concatenate(pix)


def cell_means(x: torch.Tensor, grid) -> torch.Tensor:
    """N×C×S×S → N×h×w: the mean over channels and over each cell of an h×w grid."""
    return nn.functional.adaptive_avg_pool2d(x.mean(1, keepdim=True), tuple(grid))[:, 0]


def fit_normal_model(feats: np.ndarray, pix: np.ndarray) -> dict[str, np.ndarray]:
    """The statistics of :data:`KEYS` from N×C×h×w features and N×h×w cell means."""
    n, c, h, w = feats.shape
    if n < 2:
        raise ValueError("the normal model needs at least two training images")
    f = feats.reshape(n, c, h * w).transpose(2, 0, 1).astype(np.float64)  # P×N×C
    mean = f.mean(axis=1)
    d = f - mean[:, None]
    cov = np.einsum("pnc,pnd->pcd", d, d) / max(n - 1, 1)
    scale = np.trace(cov, axis1=1, axis2=2) / c
    shrink = min(1.0, max(SHRINKAGE, c / (10 * n)))
    cov = (1 - shrink) * cov + shrink * scale[:, None, None] * np.eye(c)
    chol = np.linalg.cholesky(np.linalg.inv(cov))  # Σ⁻¹ = L Lᵀ
    dist = np.sqrt((np.einsum("pnc,pcd->pnd", d, chol) ** 2).sum(-1)).T  # N×P
    dist_median, dist_mad = _median_mad(dist)
    zd = (dist - dist_median) / dist_mad
    r = pix.reshape(n, h * w).astype(np.float64)
    pix_median, pix_mad = _median_mad(r)
    zp = (pix_median - r) / pix_mad
    return {"mean": mean.astype(np.float32), "chol": chol.astype(np.float32),
            "dist_median": dist_median.astype(np.float32),
            "dist_mad": dist_mad.astype(np.float32),
            "dist_scale": np.float32(max(np.median(np.abs(zd)), 1e-6)),
            "pix_median": pix_median.astype(np.float32),
            "pix_mad": pix_mad.astype(np.float32),
            "pix_scale": np.float32(max(np.median(np.abs(zp)), 1e-6)),
            "grid": np.array([h, w], np.int64)}


def _median_mad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    med = np.median(x, axis=0)
    mad = np.median(np.abs(x - med), axis=0)
    return med, np.maximum(mad, 1e-3 * max(float(np.abs(med).mean()), 1e-6))


def anomaly_terms(stats: dict, feats: np.ndarray, pix: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The two scaled z-scores, N×P each: features (Mahalanobis) and darkness."""
    n, c, h, w = feats.shape
    f = feats.reshape(n, c, h * w).transpose(0, 2, 1)
    d = f - stats["mean"][None]
    m = np.sqrt((np.einsum("npc,pcd->npd", d, stats["chol"]) ** 2).sum(-1))
    zd = (m - stats["dist_median"]) / stats["dist_mad"] / stats["dist_scale"]
    zp = (stats["pix_median"] - pix.reshape(n, h * w)) / stats["pix_mad"] / stats["pix_scale"]
    return zd, zp


def anomaly_maps(stats: dict, feats: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """N×h×w anomaly maps in numpy (what :class:`NormalModel` computes in the graph)."""
    zd, zp = anomaly_terms(stats, feats, pix)
    return (0.5 * (zd + zp)).reshape(feats.shape[0], *feats.shape[2:]).astype(np.float32)


def compute(encoder: nn.Module, images: np.ndarray, contract, device: torch.device,
            seed: int = 0) -> dict[str, np.ndarray]:
    """The normal model of a run's prepared training images (N×S×S×C)."""
    if len(images) > MAX_IMAGES:
        pick = np.sort(np.random.default_rng(seed).choice(len(images), MAX_IMAGES, False))
        images = images[pick]
    feats, pix = tap_maps(encoder, images, contract, device)
    stats = fit_normal_model(feats, pix)
    stats["images"] = np.int64(len(images))
    return stats


def save(stats: dict, path) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **stats)
    tmp.replace(path)


def load(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        stats = {k: z[k] for k in z.files}
    missing = [k for k in KEYS if k not in stats]
    if missing:
        raise ValueError(f"{path}: not a normal model (missing {', '.join(missing)}); "
                         "delete it and rerun cossl-edge pretrain --resume")
    return stats


class NormalModel(nn.Module):
    """The anomaly map in the graph: (normalised image, tap features) → N×h×w."""

    def __init__(self, stats: dict) -> None:
        super().__init__()
        for k in KEYS[:-1]:
            self.register_buffer(k, torch.as_tensor(np.asarray(stats[k], np.float32)))
        self.grid = tuple(int(v) for v in stats["grid"])

    def forward(self, image: torch.Tensor, tap: torch.Tensor) -> torch.Tensor:
        n = tap.shape[0]
        f = tap.flatten(2).transpose(1, 2)  # N×P×C
        y = torch.matmul((f - self.mean).unsqueeze(2), self.chol).squeeze(2)
        m = y.pow(2).sum(-1).sqrt()
        zd = (m - self.dist_median) / self.dist_mad / self.dist_scale
        r = cell_means(image, self.grid).flatten(1)
        zp = (self.pix_median - r) / self.pix_mad / self.pix_scale
        return (0.5 * (zd + zp)).reshape(n, *self.grid)
