"""The methods' implementations: each declares its heads, its loss and its (online,
target) pairs. Which methods exist, their summaries, default ``w_s`` and settings are in
:mod:`cossl_edge.training.method_list`; a class here is registered under those names
with :func:`implements`.

The training loop knows nothing about methods: it calls ``method.loss(view_a, view_b)``,
optimises ``method.parameters()`` that require grad, and calls ``method.momentum_update(tau)``
which moves every (online, target) pair the method declared (solo-learn's
``momentum_pairs`` idea).

- ``co-byol`` and ``byol`` (= co-byol with w_s = 0): one class.
- ``co-simclr`` and ``simclr`` (= co-simclr with w_s = 0): one class.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from cossl_edge.training.backbones import ResNetEncoder, build_encoder, global_pool
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.heads import MLPHead, local_vectors
from cossl_edge.training.losses import byol_loss, co_byol_loss, co_simclr_loss
from cossl_edge.training.method_list import METHODS, method_info  # noqa: F401 (re-exported)

IMPLEMENTATIONS: dict[str, type] = {}
LOCAL_TARGETS = ("g2", "g1", "online")


def implements(*names: str):
    """Class decorator: the implementation of the listed methods (``method_list``)."""
    def deco(cls):
        for name in names:
            IMPLEMENTATIONS[name] = cls
        return cls
    return deco


def resolved_w_s(config: PretrainConfig) -> float:
    info = method_info(config.method)
    w = info.default_w_s if config.w_s is None else float(config.w_s)
    if info.is_base and w != 0:
        raise ValueError(f"{config.method} is the base method (w_s = 0); use "
                         f"co-{config.method} for a local term")
    if not 0 <= w < 1:
        raise ValueError(f"w_s must be in [0, 1), got {w}")
    return w


def build_method(config: PretrainConfig) -> SSLMethod:
    info = method_info(config.method)
    if info.name not in IMPLEMENTATIONS:
        raise ValueError(f"method {info.name!r} is listed but has no implementation: register "
                         "a class with @implements in cossl_edge.training.methods")
    config.check_method_options()
    return IMPLEMENTATIONS[info.name](build_encoder(config), config)


class SSLMethod(nn.Module):
    """Base: a backbone, a loss over two views, and (online, target) pairs for the EMA."""

    def __init__(self, backbone: ResNetEncoder, config: PretrainConfig):
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.w_s = resolved_w_s(config)
        self.w_s_now = self.w_s  # the weight this step (w_s_warmup ramps it up from 0)
        if not 0 <= config.w_s_warmup < 1:
            raise ValueError(f"w_s_warmup must be a fraction in [0, 1), got {config.w_s_warmup}")
        if config.pred_lr <= 0:
            raise ValueError(f"pred_lr must be positive, got {config.pred_lr}")
        if config.backbone_lr <= 0:
            raise ValueError(f"backbone_lr must be positive, got {config.backbone_lr}")
        self.grid = config.local_grid

    def set_progress(self, fraction: float) -> None:
        """Called before each step with the fraction of training done."""
        warm = self.config.w_s_warmup
        # never exactly 0 while the method has a local term: its heads always get a gradient
        # (DistributedDataParallel expects every parameter to)
        self.w_s_now = self.w_s * (min(1.0, max(fraction / warm, 1e-4)) if warm > 0 else 1.0)

    def lr_scales(self) -> dict[int, float]:
        """id(parameter) → multiple of the scheduled learning rate (default 1): a
        pretrained backbone's trained blocks at ``backbone_lr``."""
        scale = float(self.config.backbone_lr)
        if scale == 1 or not getattr(self.backbone, "frozen", False) or \
                self.config.init != "imagenet":
            return {}
        return {id(p): scale for p in self.backbone.parameters() if p.requires_grad}

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return []

    @torch.no_grad()
    def momentum_update(self, tau: float) -> None:
        for online, target in self.momentum_pairs():
            tp, op = list(target.parameters()), [p.detach() for p in online.parameters()]
            if len(tp) != len(op):
                raise RuntimeError("online and target networks differ in structure")
            # one fused update over all tensors instead of a Python loop per tensor
            torch._foreach_lerp_(tp, op, 1 - tau)
            for bo, bt in zip(online.buffers(), target.buffers(), strict=True):
                bt.copy_(bo)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(feature map B×C×H×W, pooled h B×C) of the online backbone."""
        fmap = self.backbone.forward_features(x)
        return fmap, global_pool(fmap, self.backbone.pool)

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def forward(self, view_a: torch.Tensor, view_b: torch.Tensor,
                *negatives: torch.Tensor) -> tuple[torch.Tensor, dict]:
        # forward() is the loss so that DistributedDataParallel can wrap the whole method.
        if negatives:
            return self.loss(view_a, view_b, negatives[0])
        return self.loss(view_a, view_b)


def _frozen_copy(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


@implements("co-byol", "byol")
class CoBYOL(SSLMethod):
    """Online: backbone, g1 (projector), q1 (predictor), g2/q2 (local projector/predictor).
    Target (EMA, no gradient): backbone, g1, g2."""

    def __init__(self, backbone: ResNetEncoder, config: PretrainConfig):
        super().__init__(backbone, config)
        if config.cutpaste:
            raise ValueError(f"--cutpaste adds negatives, which {config.method} has none of; "
                             "use co-simclr or simclr, or drop --cutpaste")
        c, d = backbone.out_channels, config.proj_dim
        self.g1 = MLPHead(c, config.proj_hidden, d)
        self.q1 = MLPHead(d, config.pred_hidden, d)
        self.use_local = self.w_s > 0
        if config.local_target not in LOCAL_TARGETS:
            raise ValueError(f"local_target must be one of {LOCAL_TARGETS}, "
                             f"got {config.local_target!r}")
        if self.use_local:
            self.g2 = MLPHead(c, config.local_hidden, d)
            self.q2 = MLPHead(d, config.local_hidden, d)
        self.target_backbone = _frozen_copy(backbone)
        self.target_g1 = _frozen_copy(self.g1)
        if self.use_local and config.local_target == "g2":
            self.target_g2 = _frozen_copy(self.g2)

    def lr_scales(self):
        scales = super().lr_scales()
        scale = float(self.config.pred_lr)
        heads = [self.q1] + ([self.q2] if self.use_local else [])
        if scale != 1:
            scales.update({id(p): scale for q in heads for p in q.parameters()})
        return scales

    def momentum_pairs(self):
        pairs = [(self.backbone, self.target_backbone), (self.g1, self.target_g1)]
        if hasattr(self, "target_g2"):
            pairs.append((self.g2, self.target_g2))
        return pairs

    def loss(self, view_a, view_b):
        x = torch.cat([view_a, view_b])
        fmap, h = self.features(x)
        z_online = self.g1(h)
        p_a, p_b = self.q1(z_online).chunk(2)
        target = self.config.local_target
        with torch.no_grad():
            h_t = self.target_backbone(x)
            z_a, z_b = self.target_g1(h_t).chunk(2)
            if self.use_local:
                t = (self.target_g2(h_t) if target == "g2" else
                     z_online.detach() if target == "online" else torch.cat([z_a, z_b]))
                t_a, t_b = t.chunk(2)
        if not self.use_local:
            loss = byol_loss(p_a, z_b) + byol_loss(p_b, z_a)
            return loss, {"loss_global": float(loss.detach())}
        lp_a, lp_b = self.q2(self.g2(local_vectors(fmap, self.grid))).chunk(2)
        w, terms = self.w_s_now, {}
        loss = (co_byol_loss(p_a, z_b, lp_a, t_b, w, terms)
                + co_byol_loss(p_b, z_a, lp_b, t_a, w, terms))
        return loss, {f"loss_{k}": v for k, v in terms.items()}


@implements("co-simclr", "simclr")
class CoSimCLR(SSLMethod):
    """Backbone, g1 (projector), g2 (local projector). No target network."""

    def __init__(self, backbone: ResNetEncoder, config: PretrainConfig):
        super().__init__(backbone, config)
        c, d = backbone.out_channels, config.proj_dim
        self.g1 = MLPHead(c, config.proj_hidden, d)
        self.use_local = self.w_s > 0
        if self.use_local:
            self.g2 = MLPHead(c, config.local_hidden, d)

    def loss(self, view_a, view_b, negative=None):
        """``negative``: B hard negatives (views of each image with a CutPaste), which join
        the global term's negatives."""
        views = [view_a, view_b] + ([negative] if negative is not None else [])
        fmap, h = self.features(torch.cat(views))
        z = self.g1(h).split(len(view_a))
        fmap = fmap[:2 * len(view_a)]
        la = lb = None
        if self.use_local:
            la, lb = self.g2(local_vectors(fmap, self.grid)).chunk(2)
        terms: dict = {}
        loss = co_simclr_loss(z[0], z[1], la, lb, self.w_s_now, self.config.temperature,
                              z[2] if negative is not None else None, terms)
        return loss, {f"loss_{k}": v for k, v in terms.items()}
