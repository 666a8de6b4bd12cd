"""The 3D encoder of volume runs (``pretrain --volumes``): MONAI's ResNet with
``spatial_dims=3``, with the interface of :class:`~cossl_edge.training.backbones.ResNetEncoder`
(``forward_features`` → B×C×d×h×w map before pooling, ``forward`` → pooled B×C,
``tap_features``, ``feature_grid``), so the methods, their local term and the loop take it as
they take the 2D one.

Same depths, width multiplier and stems as 2D (``small``: 3×3×3 stride 1; ``strided``:
3×3×3 stride 2; ``standard``: 7×7×7 stride 2 and a max-pool). At the default 64³ view and
the ``strided`` stem the last map is 4×4×4: 64 local vectors per view.
"""

from __future__ import annotations

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock
from torch import nn

from cossl_edge.runtime.pooling import POOLS
from cossl_edge.training.pooling import global_pool

# as training/backbones.py's (which builds this encoder, so this module does not import it)
DEPTHS = {"resnet10": [1, 1, 1, 1], "resnet18": [2, 2, 2, 2]}
STEMS = {"small": (3, 1, False), "strided": (3, 2, False), "standard": (7, 2, True)}


class ResNet3DEncoder(nn.Module):
    """3D ResNet trunk.

    >>> enc = ResNet3DEncoder("resnet10", width=0.25, stem="strided")
    >>> enc.forward_features(torch.zeros(2, 1, 32, 32, 32)).shape
    torch.Size([2, 128, 2, 2, 2])
    """

    dims = 3

    def __init__(self, arch: str = "resnet10", width: float = 0.25, in_channels: int = 1,
                 stem: str = "strided", pool: str = "mean") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if arch not in DEPTHS:
            raise ValueError(f"a 3D encoder is a ResNet: arch must be one of {sorted(DEPTHS)}, "
                             f"got {arch!r}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {sorted(STEMS)}, got {stem!r}")
        self.pool = pool
        planes = [max(8, int(round(c * width))) for c in (64, 128, 256, 512)]
        kernel, stride, max_pool = STEMS[stem]
        net = ResNet(
            block=ResNetBlock, layers=DEPTHS[arch], block_inplanes=planes, spatial_dims=3,
            n_input_channels=in_channels, conv1_t_size=kernel, conv1_t_stride=stride,
            no_max_pool=not max_pool, shortcut_type="B", feed_forward=False,
            bias_downsample=False,
        )
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act,
                                  net.maxpool if max_pool else nn.Identity())
        self.stages = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = planes[-1]
        self.stride = 8 * stride * (2 if max_pool else 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def tap_features(self, x: torch.Tensor) -> torch.Tensor:
        """The map before the last stage."""
        return self.stages[:3](self.stem(x))

    def forward_from_tap(self, tap: torch.Tensor) -> torch.Tensor:
        return self.stages[3](tap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(self.forward_features(x), self.pool)

    def feature_grid(self, size: int) -> int:
        """Side of the last-stage map for a cubic input of side ``size`` (n, for n³ local
        vectors)."""
        with torch.no_grad():
            training = self.training
            self.eval()
            w = self.stem[0].weight
            probe = torch.zeros(1, w.shape[1], size, size, size, device=w.device)
            g = self.forward_features(probe).shape[-1]
            self.train(training)
        return int(g)
