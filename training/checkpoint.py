"""Checkpoints: atomic writes, safe loads (``weights_only=True``), clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from cossl_edge import rundir


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or from another configuration."""


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``: a reader
    sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged zip/pickle stream
        raise CheckpointError(
            f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}); copy the latest "
            "checkpoints/epoch-*.pt over it to resume from there, or retrain"
        ) from e


class Checkpointer:
    """The run's checkpoints: ``last.pt`` (model, optimiser, loop state, configuration),
    periodic copies under ``checkpoints/``, and the encoder's weights alone."""

    def __init__(self, out: Path, method, optimizer, config, enabled: bool = True):
        self.out = Path(out)
        self.method, self.optimizer, self.config = method, optimizer, config
        self.enabled = enabled  # only rank 0 writes

    @property
    def last(self) -> Path:
        return self.out / rundir.LAST_CHECKPOINT

    def save(self, state: dict, periodic: bool = False) -> None:
        if not self.enabled:
            return
        payload = {"model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "state": dict(state), "config": json.dumps(self.config.to_dict())}
        save_atomic(payload, self.last)
        if periodic:
            save_atomic(payload, self.out / rundir.CHECKPOINTS
                        / f"epoch-{state['epoch']:04d}.pt")
        self.save_encoder()

    def save_encoder(self, backbone=None) -> None:
        """The encoder's weights alone (``encoder.pt``, what export reads): the method's
        backbone, or ``backbone`` (the finished copy a run ends with)."""
        if self.enabled:
            net = self.method.backbone if backbone is None else backbone
            save_atomic(net.state_dict(), self.out / rundir.ENCODER)

    def restore(self, state: dict) -> bool:
        """Load ``last.pt`` into the model, the optimiser and ``state``; False if none."""
        if not self.last.exists():
            return False
        ckpt = load_checkpoint(self.last)
        try:
            self.method.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{self.last}: does not match this configuration "
                                  f"({type(e).__name__}); start a new run") from e
        state.update({k: ckpt["state"][k] for k in state})
        return True
