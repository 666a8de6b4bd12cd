"""Torch-side feature extraction for the evaluation: a run directory's encoder (or any
backbone, e.g. a random initialisation) → embeddings and last-stage local maps.

>>> from cossl_edge.contract import PreprocessContract
>>> from cossl_edge.training.backbones import ResNetEncoder
>>> enc = ResNetEncoder("resnet10", width=0.125, in_channels=1, stem="small")
>>> f = RunFeatures(enc, PreprocessContract(channels=1, size=16))
>>> f(np.zeros((3, 16, 16, 1), np.float32)).local_maps.shape
(3, 64, 2, 2)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cossl_edge import rundir
from cossl_edge.contract import PreprocessContract
from cossl_edge.evaluation.features import Features, pooled
from cossl_edge.privacy import file_token
from cossl_edge.training.backbones import ResNetEncoder, build_encoder
from cossl_edge.training.config import PretrainConfig


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
        config = load_run_config(run_dir)
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


def load_run_config(run_dir: Path) -> PretrainConfig:
    path = rundir.require(run_dir, rundir.CONFIG, "this is not a pretraining run directory "
                          "(cossl-edge pretrain writes config.json)")
    try:
        return PretrainConfig.load(path)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise rundir.RunDirError(f"{path}: corrupt run configuration ({type(e).__name__}); "
                                 "restore it or re-run cossl-edge pretrain") from e
