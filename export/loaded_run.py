"""Reading a pretraining run directory: its configuration and its encoder weights.

Every way a run directory can be unusable (no ``encoder.pt``, a truncated or foreign
checkpoint, a damaged ``config.json``) becomes one ``ValueError`` line (:class:`ExportError`,
or :class:`~cossl_edge.rundir.RunDirError` from the shared ``config.json`` loader) that names
the file and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cossl_edge import rundir
from cossl_edge.export.errors import ExportError
from cossl_edge.training.backbones import ResNetEncoder, build_encoder
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.run_config import load_run_config, short_error


@dataclass
class LoadedRun:
    """A run's configuration, the keys config.json holds beyond it, and its encoder (eval)."""

    run_dir: Path
    config: PretrainConfig
    extra: dict = field(default_factory=dict)
    encoder: ResNetEncoder | None = None


def load_run(run_dir: str | Path) -> LoadedRun:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: not a folder; pass the run directory that pretrain wrote")
    config, extra = load_run_config(run_dir)
    encoder = _load_encoder(run_dir, config)
    return LoadedRun(run_dir, config, extra, encoder)


def _load_encoder(run_dir: Path, config: PretrainConfig) -> ResNetEncoder:
    path = rundir.require(run_dir, rundir.ENCODER,
                          "the run has no exported encoder weights; finish or resume the run "
                          "with cossl-edge pretrain (it writes encoder.pt at the end)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged zip or a pickle it refuses
        raise ExportError(f"{path}: corrupt or unreadable checkpoint ({short_error(e)}); re-run or "
                          "resume cossl-edge pretrain to write it again") from e
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ExportError(f"{path}: not a state_dict of tensors; encoder.pt must hold the "
                          "backbone weights only, as cossl-edge pretrain writes them")
    encoder = build_encoder(config, pretrained=False)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ExportError(f"{path}: weights do not match the model in config.json "
                          f"({config.arch}, width {config.width}); use the config.json that "
                          "was written with these weights") from e
    encoder.pool = config.resolved_embed_pool()  # what the exported embedding pools with
    return encoder.eval()
