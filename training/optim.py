"""Optimisers and schedules: AdamW or LARS, linear warmup then cosine decay, BYOL's EMA ramp."""

from __future__ import annotations

import math

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017), as BYOL uses it.
    Parameters in groups with ``lars_exclude=True`` (biases, norms) get plain SGD."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      eta=eta, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["lars_exclude"]:
                    g = g.add(p, alpha=group["weight_decay"])
                    pn, gn = torch.norm(p), torch.norm(g)
                    trust = torch.where((pn > 0) & (gn > 0), group["eta"] * pn / gn,
                                        torch.ones_like(pn))
                    g = g.mul(trust)
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay (and no LARS adaptation) for biases and normalisation parameters.
    Each group carries ``lr_scale``, its learning rate as a multiple of the schedule's
    (a method's ``lr_scales()``: e.g. BYOL's predictor at ``--pred-lr`` × the rate)."""
    scales = model.lr_scales() if hasattr(model, "lr_scales") else {}
    groups: dict[tuple[bool, float], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim <= 1, float(scales.get(id(p), 1.0))), []).append(p)
    return [{"params": ps, "weight_decay": 0.0 if exclude else weight_decay,
             "lars_exclude": exclude, "lr_scale": scale}
            for (exclude, scale), ps in sorted(groups.items(), key=lambda kv: kv[0])]


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float):
    groups = param_groups(model, weight_decay)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if name == "adamw":
        for g in groups:
            g.pop("lars_exclude")
        # the fused kernel runs on CPU and CUDA and is faster than the per-tensor loop
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    if name == "lars":
        return LARS(groups, lr=lr)
    raise ValueError(f"optimizer must be 'adamw' or 'lars', got {name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate, times each group's ``lr_scale``."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def lr_at(progress: float, base_lr: float, warmup_fraction: float) -> float:
    """Linear warmup over ``warmup_fraction`` of training, then cosine decay to 0.
    ``progress`` is the fraction of training done (steps or wall-clock time)."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_fraction > 0 and progress < warmup_fraction:
        return base_lr * progress / warmup_fraction
    rest = (progress - warmup_fraction) / max(1e-8, 1 - warmup_fraction)
    return base_lr * 0.5 * (1 + math.cos(math.pi * rest))


def ema_tau_at(progress: float, base: float) -> float:
    """BYOL's target decay: τ = 1 − (1 − τ_base)(cos(π·progress) + 1)/2, from τ_base to 1."""
    progress = min(max(progress, 0.0), 1.0)
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2
