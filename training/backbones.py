"""ResNet backbones that return the unpooled last-stage feature map.

Built on MONAI's :class:`monai.networks.nets.ResNet` (2D), with a ``forward_features`` that
stops before pooling, as timm does. Options: depth (ResNet-10/18), width multiplier, input
channels, a stem chosen by input size (``small``: 3×3 stride 1, no max-pool; ``strided``:
3×3 stride 2, no max-pool; ``standard``: 7×7 stride 2 and a max-pool), and an RF-bounded
variant whose later blocks use 1×1 convolutions (BagNet-style), which limits the receptive
field of each local vector (Aubret et al. 2025, "RF-ResNet").
"""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock
from torch import nn

from cossl_edge.runtime.pooling import POOLS  # one list for torch and numpy
from cossl_edge.training.pooling import global_pool  # noqa: F401  (re-exported)

DEPTHS = {"resnet10": [1, 1, 1, 1], "resnet18": [2, 2, 2, 2]}
# stem name → (kernel, stride, max-pool): the input is divided by 1, 2 or 4 before the stages
STEMS = {"small": (3, 1, False), "strided": (3, 2, False), "standard": (7, 2, True)}


class ResNetEncoder(nn.Module):
    """ResNet trunk. ``forward_features(x)`` → B×C×h×w map; ``forward(x)`` → pooled B×C.

    >>> enc = ResNetEncoder("resnet10", width=0.25, in_channels=1, stem="small")
    >>> enc.forward_features(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 128, 4, 4])
    """

    def __init__(self, arch: str = "resnet18", width: float = 1.0, in_channels: int = 1,
                 stem: str = "small", rf_bounded_after: int | None = None,
                 pool: str = "mean") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        if arch not in DEPTHS:
            raise ValueError(f"arch must be one of {sorted(DEPTHS)}, got {arch!r}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {sorted(STEMS)}, got {stem!r}")
        planes = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        kernel, stride, pool = STEMS[stem]
        net = ResNet(
            block=ResNetBlock, layers=DEPTHS[arch], block_inplanes=planes, spatial_dims=2,
            n_input_channels=in_channels, conv1_t_size=kernel,
            conv1_t_stride=stride, no_max_pool=not pool, shortcut_type="B",
            feed_forward=False, bias_downsample=False,
        )
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act,
                                  net.maxpool if pool else nn.Identity())
        self.stages = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = planes[-1]
        self.stride = 8 * stride * (2 if pool else 1)
        if rf_bounded_after is not None:
            _bound_receptive_field(self.stages, rf_bounded_after)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def tap_features(self, x: torch.Tensor) -> torch.Tensor:
        """The map before the last stage (stride 16 with the standard stem): the features
        the normal model reads (:mod:`cossl_edge.training.normal_stats`)."""
        return self.stages[:3](self.stem(x))

    def forward_from_tap(self, tap: torch.Tensor) -> torch.Tensor:
        """``forward_features`` from the output of ``tap_features``."""
        return self.stages[3](tap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(self.forward_features(x), self.pool)

    def feature_grid(self, image_size: int) -> int:
        """Side of the last-stage map for a square input (n, for n×n local vectors)."""
        with torch.no_grad():
            training = self.training
            self.eval()
            w = self.stem[0].weight
            probe = torch.zeros(1, w.shape[1], image_size, image_size, device=w.device)
            g = self.forward_features(probe).shape[-1]
            self.train(training)
        return int(g)


def _bound_receptive_field(stages: nn.Sequential, keep_blocks: int) -> None:
    """Replace the 3×3 convolutions of every residual block after the first ``keep_blocks``
    by 1×1 convolutions with the same stride, so later blocks stop widening the receptive
    field of the local vectors."""
    blocks = [b for stage in stages for b in stage]
    for block in blocks[keep_blocks:]:
        for name in ("conv1", "conv2"):
            conv: nn.Conv2d = getattr(block, name)
            setattr(block, name, nn.Conv2d(conv.in_channels, conv.out_channels, 1,
                                           stride=conv.stride, bias=conv.bias is not None))


def build_encoder(config, pretrained: bool = True) -> nn.Module:
    """The backbone a :class:`~cossl_edge.training.config.PretrainConfig` describes.
    ``pretrained=False`` skips loading ImageNet weights (a run's own weights follow).
    A volume run (``config.volumes``) gets the 3D ResNet of the same depth and width."""
    if getattr(config, "volumes", False):
        from cossl_edge.training.backbones3d import ResNet3DEncoder

        if config.arch not in DEPTHS:
            raise ValueError(f"--volumes trains a 3D ResNet: --arch resnet10 or resnet18, "
                             f"not {config.arch}")
        return ResNet3DEncoder(config.arch, config.width, config.contract.channels,
                               config.resolved_stem(), config.pool)
    if config.arch == "efficientnet-lite0":
        from cossl_edge.training.efficientnet import EfficientNetLiteEncoder

        init = config.init if pretrained else "random"
        return EfficientNetLiteEncoder(config.contract.channels, init, config.pool)
    return ResNetEncoder(config.arch, config.width, config.contract.channels,
                         config.resolved_stem(), config.rf_bounded_after, config.pool)
