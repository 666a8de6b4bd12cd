"""A tiny run directory as ``pretrain`` writes it: ``config.json`` and ``encoder.pt`` (the
weights of a randomly initialised encoder, seeded) — what ``export``, ``evaluate`` and the
run-feature code read. Needs torch (the full environment)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cossl_edge.contract import PreprocessContract


def write_tiny_run(run: Path, config=None, seed: int = 0, info: dict | None = None):
    """Write ``config`` (a ``PretrainConfig``; by default a ResNet-10 of width 0.125 on
    16-px one-channel images) and its encoder's weights after ``torch.manual_seed(seed)``
    into ``run``; ``info``: extra facts for ``config.json``. Returns the encoder (eval)."""
    import torch

    from cossl_edge.training.backbones import build_encoder
    from cossl_edge.training.config import PretrainConfig

    if config is None:
        config = PretrainConfig(arch="resnet10", width=0.125,
                                contract=PreprocessContract(channels=1, size=16))
    run.mkdir(parents=True, exist_ok=True)
    config.save(run / "config.json", info or {})
    torch.manual_seed(seed)
    encoder = build_encoder(config).eval()
    torch.save(encoder.state_dict(), run / "encoder.pt")
    return encoder


def write_calibrated_run(root: Path, data: Path | None, channels: int = 1, seed: int = 0,
                         legacy_data_dir: bool = False) -> Path:
    """A run directory as pretrain writes it for ``export``: :func:`write_tiny_run` of a
    ResNet-10 (width 0.25) on 32-px images with ``channels``, the prepared images of
    ``data`` as calibration.npy (``legacy_data_dir``: the folder recorded instead, as older
    runs did) and a data fingerprint."""
    from cossl_edge.sources import discover, load_many
    from cossl_edge.training.config import PretrainConfig

    contract = PreprocessContract(channels=channels, size=32, mean=(0.5,), std=(0.25,))
    config = PretrainConfig(method="co-byol", arch="resnet10", width=0.25, contract=contract)
    write_tiny_run(root, config, seed, {"data_dir": str(data)} if legacy_data_dir else {})
    if data is not None and not legacy_data_dir:
        prepared, _, _ = load_many(discover(data).samples, contract)
        np.save(root / "calibration.npy", prepared.astype(np.float16), allow_pickle=False)
    (root / "data-fingerprint.txt").write_text("ab" * 32 + "\n")
    return root
