"""BatchNorm statistics of the trained layers, estimated again on clean training images.

During pretraining every BatchNorm layer keeps running statistics of what it saw: the
augmented views (crops, blur, noise, intensity changes). The exported encoder reads
un-augmented images, so those statistics describe another distribution, and the
embedding drifts from what the trained weights compute on the images it will be given.
Once training has ended, the trained layers' statistics are estimated again — a plain
average over a fixed pick of the training images as the edge prepares them
(``contract.normalize`` of the prepared images), nothing else changes. Frozen layers (an
ImageNet start's blocks up to the tap) keep their own statistics.

Measured on the radiograph phantoms (EfficientNet-Lite0 from ImageNet, two ten-minute
seeds, int8, 5-shot): docs/recipe.md, "BatchNorm statistics".
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_IMAGES = 512  # a fixed random pick of the training images beyond this many
BATCH = 32


def trained_batchnorms(encoder: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers whose affine weights train (the frozen ones are left out)."""
    return [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats
            and (m.weight is None or m.weight.requires_grad)]


@torch.no_grad()
def recalibrate(encoder: nn.Module, images: np.ndarray, contract, device: torch.device,
                seed: int = 0) -> int:
    """Re-estimate the running statistics of ``encoder``'s trained BatchNorm layers on
    (a fixed pick of up to ``MAX_IMAGES`` of) the prepared images N×S×S×C. Returns the
    number of images read; 0 (and nothing changed) when there is no such layer or image."""
    layers = trained_batchnorms(encoder)
    if not layers or len(images) == 0:
        return 0
    if len(images) > MAX_IMAGES:
        pick = np.sort(np.random.default_rng(seed).choice(len(images), MAX_IMAGES, False))
        images = images[pick]
    was = encoder.training
    encoder.eval()
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
        m.train()
    try:
        for i in range(0, len(images), BATCH):
            x = torch.from_numpy(contract.normalize(np.asarray(images[i:i + BATCH],
                                                               np.float32)))
            encoder.forward_features(x.to(device))
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        encoder.train(was)
    return len(images)
