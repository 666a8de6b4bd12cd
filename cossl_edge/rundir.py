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
  normal-stats.npz     the normal model of the training images, once a run has finished
  encoder.init.onnx    (export, runs started from ImageNet weights) the network before
                       adaptation: the floor fewshot eval prints
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
# written by export for a run started from ImageNet weights: that network before adaptation
# (embedding only, fp32), the floor ``fewshot eval`` shows beside raw pixels
INIT_MODEL = "encoder.init.onnx"


class RunDirError(ValueError):
    """A run directory that lacks what a command needs."""


def require(run_dir: str | Path, name: str, hint: str) -> Path:
    path = Path(run_dir) / name
    if not path.exists():
        raise RunDirError(f"{path}: not found; {hint}")
    return path
