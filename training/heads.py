"""Projection and prediction heads (MLPs), applied to global vectors or to every local vector.

A head applied to a B×N×C tensor of local vectors is the same as a 1×1 convolution over the
feature map: one MLP shared by all positions, as in CO-SSL's local projector g2 and local
predictor q2 (Aubret et al. 2025, Eq. 2).
"""

from __future__ import annotations

import torch
from torch import nn


class MLPHead(nn.Module):
    """Linear → BatchNorm → ReLU → Linear (BYOL's projector and predictor shape).

    Accepts B×C or B×N×C; BatchNorm statistics are taken over all vectors given.

    >>> head = MLPHead(16, 32, 8)
    >>> head(torch.randn(4, 16)).shape, head(torch.randn(4, 5, 16)).shape
    (torch.Size([4, 8]), torch.Size([4, 5, 8]))
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, batch_norm: bool = True):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=not batch_norm),
            nn.BatchNorm1d(hidden_dim) if batch_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            b, n, c = x.shape
            return self.net(x.reshape(b * n, c)).reshape(b, n, -1)
        return self.net(x)


def local_vectors(feature_map: torch.Tensor, grid: int | None = None) -> torch.Tensor:
    """B×C×H×W map → B×N×C local vectors (N = H·W, or grid² after adaptive average pooling).
    A volume's B×C×D×H×W map: N = D·H·W (or grid³), every position of the 3D map."""
    if grid is not None and feature_map.shape[-1] != grid:
        pool = (nn.functional.adaptive_avg_pool3d if feature_map.dim() == 5
                else nn.functional.adaptive_avg_pool2d)
        feature_map = pool(feature_map, grid)
    return feature_map.flatten(2).transpose(1, 2)
