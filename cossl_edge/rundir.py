"""The layout of a pretraining run directory (shared by training, export and evaluation).

RUN_DIR/
  config.json          resolved PretrainConfig (with the preprocessing contract) + run facts
  metrics.jsonl        one JSON object per logged step / epoch
  checkpoints/last.pt  full training state (atomic replace), loads with weights_only=True
  checkpoints/epoch-NNNN.pt  periodic copies
  encoder.pt           backbone weights only (a plain state_dict of tensors)
  data-fingerprint.txt sha256 over the training samples' salted ids
  calibration.npy      up to 256 prepared training images (N×S×S×C float16, the contract's
                       prepare() output) for int8 calibration and the centring vector at export
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "checkpoints/last.pt"
ENCODER = "encoder.pt"
FINGERPRINT = "data-fingerprint.txt"
CALIBRATION = "calibration.npy"
NORMAL_MODEL = "normal-stats.npz"  # the normal model of the training images (export bakes it in)


class RunDirError(ValueError):
    """A run directory that lacks what a command needs."""


def require(run_dir: str | Path, name: str, hint: str) -> Path:
    path = Path(run_dir) / name
    if not path.exists():
        raise RunDirError(f"{path}: not found; {hint}")
    return path
