"""Torch-side feature extraction for the evaluation: a run directory's encoder (or any
backbone, e.g. a random initialisation) → embeddings and last-stage local maps.

>>> from cossl_edge.contract import PreprocessContract
>>> from cossl_edge.training.backbones import ResNetEncoder
>>> enc = ResNetEncoder("resnet10", width=0.125, in_channels=1, stem="small")
>>> f = RunFeatures(enc, PreprocessContract(channels=1, size=16))
>>> f(np.zeros((3, 16, 16, 1), np.float32)).local_maps.shape
(3, 64, 2, 2)

``RunFeatures.attack`` is the gradient half of the PGD robustness curve
(:mod:`cossl_edge.evaluation.adversarial`): it differentiates the few-shot loss through the
contract's normalisation and the encoder with respect to the prepared image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cossl_edge import rundir
from cossl_edge.contract import PreprocessContract
from cossl_edge.evaluation.features import Features
from cossl_edge.privacy import file_token
from cossl_edge.runtime.pooling import pooled
from cossl_edge.training.backbones import ResNetEncoder, build_encoder, global_pool
from cossl_edge.training.run_config import load_run_config


class RunFeatures:
    """A torch backbone in eval mode; ``forward_features`` gives the map, numpy pools it."""

    def __init__(self, encoder: ResNetEncoder, contract: PreprocessContract,
                 description: dict | None = None, batch_size: int = 256,
                 device: str = "cpu") -> None:
        self.encoder = encoder.eval().to(device)
        self.contract = contract
        self.description = description or {"kind": "torch"}
        self.batch_size = batch_size
        self.device = torch.device(device)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, batch_size: int = 256,
                     device: str = "cpu") -> RunFeatures:
        run_dir = Path(run_dir)
        config, _ = load_run_config(run_dir)
        path = rundir.require(run_dir, rundir.ENCODER, "the run has no encoder weights yet; "
                              "finish or resume it with cossl-edge pretrain")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            encoder = build_encoder(config)
            encoder.pool = config.resolved_embed_pool()  # as the exported embedding
            encoder.load_state_dict(state, strict=True)
        except Exception as e:  # a damaged zip, a refused pickle, mismatched shapes
            raise rundir.RunDirError(f"{path}: cannot load the encoder weights "
                                     f"({type(e).__name__}); re-run or resume pretraining "
                                     "to write encoder.pt again") from e
        description = {"kind": "run-dir", "run": file_token(run_dir), "method": config.method,
                       "arch": config.arch, "width": config.width, "w_s": config.w_s,
                       "seed": config.seed}
        return cls(encoder, config.contract, description, batch_size, device)

    def __call__(self, prepared: np.ndarray,
                 advance: Callable[[int], None] | None = None) -> Features:
        maps = []
        with torch.inference_mode():
            for i in range(0, len(prepared), self.batch_size):
                x = self.contract.normalize(np.asarray(prepared[i:i + self.batch_size],
                                                       np.float32))
                fmap = self.encoder.forward_features(torch.from_numpy(x).to(self.device))
                maps.append(fmap.float().cpu().numpy())
                if advance:
                    advance(len(x))
        local = np.concatenate(maps)
        return Features(pooled(local, getattr(self.encoder, "pool", "mean")), local)


    def embed_torch(self, prepared: torch.Tensor) -> torch.Tensor:
        """Prepared N×S×S×C tensor in [0, 1] → pooled N×D embeddings, differentiably (the
        contract's normalisation, the map, the encoder's own pooling)."""
        mean = torch.tensor(self.contract.mean, dtype=prepared.dtype, device=prepared.device)
        std = torch.tensor(self.contract.std, dtype=prepared.dtype, device=prepared.device)
        x = ((prepared - mean) / std).movedim(-1, -3)
        fmap = self.encoder.forward_features(x)
        return global_pool(fmap.float(), getattr(self.encoder, "pool", "mean"))

    def attack(self, prepared: np.ndarray, target: np.ndarray, prototypes: np.ndarray,
               centering: np.ndarray, temperature: float, eps: float, steps: int,
               step_size: float, random_start: bool = False, seed: int = 0) -> np.ndarray:
        """L∞ PGD on prepared images (N×S×S×C in [0, 1]) against a prototype classifier."""
        return pgd_linf(self.embed_torch, prepared, target, prototypes, centering,
                        temperature, eps, steps, step_size, random_start, seed,
                        self.batch_size, self.device)


def prototype_loss(embeddings: torch.Tensor, target: torch.Tensor, prototypes: torch.Tensor,
                   centering: torch.Tensor, temperature: float) -> torch.Tensor:
    """Summed cross-entropy of the CL2N prototype softmax (``FewShotClassifier`` ``proto``):
    logits = cl2n(e − c) · Pᵀ / T. A sum, so that each image's gradient is its own loss's."""
    z = torch.nn.functional.normalize(embeddings - centering, dim=1, eps=1e-12)
    logits = z @ prototypes.T / temperature
    return torch.nn.functional.cross_entropy(logits, target, reduction="sum")


def pgd_linf(embed: Callable[[torch.Tensor], torch.Tensor], prepared: np.ndarray,
             target: np.ndarray, prototypes: np.ndarray, centering: np.ndarray,
             temperature: float, eps: float, steps: int, step_size: float,
             random_start: bool = False, seed: int = 0, batch_size: int = 256,
             device: torch.device | str = "cpu") -> np.ndarray:
    """Projected gradient ascent (Madry et al. 2018) of :func:`prototype_loss` within
    ‖x' − x‖∞ ≤ ε and x' ∈ [0, 1]: ``steps`` steps x' ← clip(Π_ε(x' + α·sign ∇)), from x
    (or a uniform random point of the ball). ε = 0 returns the images unchanged."""
    if eps < 0 or steps < 0:
        raise ValueError(f"PGD needs ε ≥ 0 and steps ≥ 0, got {eps} and {steps}")
    clean = np.asarray(prepared, np.float32)
    if eps == 0 or steps == 0 and not random_start:
        return clean.copy()
    device = torch.device(device)
    protos = torch.as_tensor(np.asarray(prototypes, np.float32), device=device)
    center = torch.as_tensor(np.asarray(centering, np.float32), device=device)
    labels = torch.as_tensor(np.asarray(target, np.int64), device=device)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(clean), batch_size):
        x0 = torch.from_numpy(clean[i:i + batch_size]).to(device)
        lo, hi = (x0 - eps).clamp(0.0, 1.0), (x0 + eps).clamp(0.0, 1.0)
        x = x0.clone()
        if random_start:
            noise = torch.rand(x0.shape, generator=gen, dtype=x0.dtype) * 2 - 1
            x = torch.minimum(torch.maximum(x0 + eps * noise.to(device), lo), hi)
        for _ in range(steps):
            x.requires_grad_(True)
            with torch.enable_grad():
                loss = prototype_loss(embed(x), labels[i:i + batch_size], protos, center,
                                      temperature)
                (grad,) = torch.autograd.grad(loss, x)
            x = torch.minimum(torch.maximum(x.detach() + step_size * grad.sign(), lo), hi)
        out.append(x.detach().cpu().numpy())
    return np.concatenate(out)
