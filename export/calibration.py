"""Calibration images: real, unlabeled images through the run's preprocessing contract.

They serve int8 calibration, the fp32 parity check, the int8 agreement figures and the
centring vector, so they come from the training data by default (``data_dir`` in
config.json) or from a folder the user names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from cossl_edge.export.errors import ExportError

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import SourceError, discover, load_many

DEFAULT_COUNT = 256


def calibration_folder(calibration: str | Path | None, extra: dict, config_path: Path) -> Path:
    """The folder to draw from: the one given, else the run's recorded training data."""
    if calibration is not None:
        return Path(calibration)
    recorded = extra.get("data_dir")
    if not recorded:
        raise ExportError(f"{config_path}: no training data folder recorded (key data_dir); "
                          "pass --calibration DIR with a few hundred unlabeled images")
    folder = Path(recorded)
    if not folder.exists():
        raise ExportError(f"{config_path}: the recorded training data folder no longer exists; "
                          "pass --calibration DIR with a few hundred unlabeled images")
    return folder


def load_calibration(folder: Path, contract: PreprocessContract, count: int = DEFAULT_COUNT,
                     seed: int = 0, advance: Callable[[int], None] | None = None
                     ) -> tuple[np.ndarray, int]:
    """Up to ``count`` images of ``folder`` (a fixed random pick), as N×C×S×S normalised,
    and how many picked files could not be read (left out)."""
    if count < 1:
        raise ExportError(f"--calibration-count must be at least 1, got {count}")
    try:
        samples = discover(folder).samples
    except SourceError as e:
        raise ExportError(f"{e}; pass --calibration DIR with unlabeled images") from e
    if len(samples) > count:
        picked = np.random.default_rng(seed).choice(len(samples), count, replace=False)
        samples = [samples[i] for i in sorted(picked)]
    prepared, skipped = [], 0
    for start in range(0, len(samples), 32):
        chunk, _, bad = load_many(samples[start:start + 32], contract)
        prepared.append(chunk)
        skipped += len(bad)
        if advance is not None:
            advance(min(32, len(samples) - start))
    images = np.concatenate(prepared) if prepared else np.zeros((0,), np.float32)
    if len(images) == 0:
        raise ExportError(f"{folder}: no readable images for calibration; pass "
                          "--calibration DIR with PNG/JPEG/TIFF/DICOM images")
    return contract.normalize(images).astype(np.float32), skipped
