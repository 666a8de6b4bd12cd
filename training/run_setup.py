"""The run directory's set-up: start or resume (the saved configuration wins), the facts
recorded beside the configuration, and the files written before the first step."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from cossl_edge import __version__, rundir
from cossl_edge.training.config import PretrainConfig

CALIBRATION_COUNT = 256  # prepared training images kept for export (int8 calibration)


def prepare_run_dir(config: PretrainConfig, out: Path, resume: bool,
                    auto_size: bool = False) -> PretrainConfig:
    """The configuration to train with: ``config`` for a new run (refusing to overwrite
    one), the saved run's for ``resume`` (only its length may change)."""
    cfg_path = out / rundir.CONFIG
    if resume:
        if not cfg_path.exists():
            raise ValueError(f"{out}: no run to resume (config.json missing); drop --resume")
        try:
            saved = PretrainConfig.load(cfg_path)
        except (ValueError, TypeError) as e:  # bad JSON, unknown or mistyped fields
            raise ValueError(f"{cfg_path}: corrupt run configuration ({type(e).__name__}); "
                             "restore it, or start a new --out without --resume") from e
        if auto_size:  # the size was chosen from the data when the run started
            config = replace(config, contract=replace(config.contract,
                                                      size=saved.contract.size))
        if config.arch in ("auto", saved.arch):  # ... and the backbone with its input rule
            config = replace(config, arch=saved.arch, contract=replace(
                config.contract, mean=saved.contract.mean, std=saved.contract.std))
        clash = saved.incompatible_with(config)
        if clash:
            raise ValueError(
                f"{out}: cannot resume with a changed configuration ({', '.join(clash)}); "
                "resume with the original settings or start a new --out"
            )
        # The run length may be extended on resume; everything else is the saved run's.
        if config.epochs is not None or config.time_budget is not None:
            saved.epochs, saved.time_budget = config.epochs, config.time_budget
        return saved
    if (out / rundir.LAST_CHECKPOINT).exists():
        raise ValueError(f"{out}: a run already exists here; pass --resume to continue it or "
                         "choose another --out")
    return config


def data_fingerprint(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def run_facts(config: PretrainConfig, data, method, grid: int, w_s: float, dist, device,
              peak_lr: float, lr_rule: str, precision) -> dict:
    """What the run resolved (config.json beside the settings). No raw path: a folder may
    be named after a patient; the data is identified by a fingerprint of salted ids."""
    return {"feature_grid": grid,
            "w_s_resolved": w_s,
            "preset_resolved": data.preset, "stem_resolved": config.resolved_stem(),
            "hflip_resolved": config.resolved_hflip(),
            "rotate_resolved": config.resolved_rotate(),
            "view_size_resolved": config.resolved_view_size(),
            "inference_grid": method.backbone.feature_grid(config.contract.size),
            "num_images": len(data.images), "num_skipped": len(data.skipped),
            "effective_batch_size": data.batch * config.accumulate * dist.world,
            "world_size": dist.world, "device": str(device), "sync_bn": dist.sync_bn,
            "peak_lr": peak_lr, "lr_scaling": lr_rule,
            "embedding_dim": method.backbone.out_channels,
            "bf16_resolved": precision.bf16, "bf16_choice": precision.to_dict(),
            "cossl_edge_version": __version__,
            **({"dim": 3, "volume_spacing_mm": [config.spacing] * 3,
                "volume_size": config.contract.size} if config.volumes else {})}


def write_run_files(out: Path, config: PretrainConfig, facts: dict, data) -> None:
    """config.json (settings + facts), the data fingerprint, and calibration.npy (the
    prepared images export calibrates on)."""
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / rundir.CONFIG, facts)
    (out / rundir.FINGERPRINT).write_text(data_fingerprint(data.ids) + "\n")
    pick = np.random.default_rng(config.seed).permutation(len(data.images))[:CALIBRATION_COUNT]
    with open(out / rundir.CALIBRATION, "wb") as f:
        np.save(f, data.images[np.sort(pick)], allow_pickle=False)
