"""Global pooling of a feature map into the embedding, shared by every backbone."""

from __future__ import annotations

import torch

from cossl_edge.runtime.pooling import GEM_P


def global_pool(fmap: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """B×C×h×w (or a volume's B×C×d×h×w) → B×C. ``mean``: global average pooling.
    ``gem``: generalised mean with p = 3, (mean xᵖ)^(1/p), which follows the strongest
    positions of each channel, so a finding that covers one position of the map is not
    diluted by the other h·w − 1.
    ``max``: the strongest position, whatever the size of the map."""
    dims = tuple(range(2, fmap.dim()))  # (2, 3); a volume's B×C×d×h×w map: (2, 3, 4)
    if how == "gem":
        return fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=dims).pow(1.0 / GEM_P)
    if how == "max":
        return fmap.amax(dim=dims)
    return fmap.mean(dim=dims)
