"""Calibration images: real, unlabeled images through the run's preprocessing contract.

They serve int8 calibration, the fp32 parity check, the int8 agreement figures and the
centring vector. By default they are the prepared training images that pretraining keeps in
``calibration.npy`` (the run directory holds no raw path to the data); ``--calibration DIR``
draws from a folder instead, decoded with :mod:`cossl_edge.sources` and the run's contract,
and sampled as pretraining sampled its data (the run's ``dicom_stride``, ``video_every``,
``video_fps``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cossl_edge import rundir
from cossl_edge.contract import PreprocessContract
from cossl_edge.export.errors import ExportError
from cossl_edge.sources import SamplingOptions, SourceError, discover, load_many

DEFAULT_COUNT = 256
Advance = Callable[[int], None]


def run_sampling(config) -> SamplingOptions:
    """The sampling a run was pretrained with, from its PretrainConfig or config.json dict
    (runs written before these fields existed sampled every slice and frame)."""
    own = getattr(config, "sampling", None)  # PretrainConfig.sampling(), once it has one
    if isinstance(own, SamplingOptions):
        return own
    if callable(own):
        return own()
    get = config.get if isinstance(config, dict) else lambda k, d: getattr(config, k, d)
    try:
        return SamplingOptions(dicom_stride=get("dicom_stride", 1),
                               video_every=get("video_every", 1),
                               video_fps=get("video_fps", None))
    except SourceError as e:
        raise ExportError(f"the run's config.json: {e}") from e


def calibration_images(run_dir: Path, extra: dict, contract: PreprocessContract,
                       folder: str | Path | None = None, count: int = DEFAULT_COUNT,
                       advance: Advance | None = None,
                       sampling: SamplingOptions | None = None, dims: int = 2
                       ) -> tuple[np.ndarray, int, str]:
    """(N×C×S×S normalised images, unreadable files left out, where they came from).
    A folder is sampled with ``sampling`` (pass :func:`run_sampling` of the run).
    ``dims=3`` (a volume run): the whole-volume cubes of ``calibration.npy``, N×1×S×S×S."""
    if count < 1:
        raise ExportError(f"--calibration-count must be at least 1, got {count}")
    if dims == 3:
        return load_cubes(run_dir / rundir.CALIBRATION, contract, count, folder), 0, \
            rundir.CALIBRATION
    if folder is not None:
        return (*load_calibration(Path(folder), contract, count, advance=advance,
                                  sampling=sampling), "folder")
    stored = run_dir / rundir.CALIBRATION
    if stored.is_file():
        return load_stored(stored, contract, count), 0, rundir.CALIBRATION
    if extra.get("data_dir") and Path(extra["data_dir"]).is_dir():  # runs that recorded it
        images, skipped = load_calibration(Path(extra["data_dir"]), contract, count,
                                           advance=advance, sampling=sampling)
        return images, skipped, "data_dir"
    raise ExportError(f"{stored}: not found, and no --calibration folder given; pass "
                      "--calibration DIR with a few hundred unlabeled training-like images")


def load_stored(path: Path, contract: PreprocessContract, count: int,
                seed: int = 0) -> np.ndarray:
    """Up to ``count`` images of ``calibration.npy`` (N×S×S×C, prepare() output)."""
    try:
        prepared = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ExportError(f"{path}: corrupt calibration images ({type(e).__name__}); pass "
                          "--calibration DIR with unlabeled images instead") from e
    expected = (contract.size, contract.size, contract.channels)
    if prepared.ndim != 4 or prepared.shape[1:] != expected or len(prepared) == 0:
        raise ExportError(f"{path}: holds images of shape {prepared.shape[1:]}, the run's "
                          f"contract needs {expected}; pass --calibration DIR instead")
    if len(prepared) > count:
        picked = np.random.default_rng(seed).choice(len(prepared), count, replace=False)
        prepared = prepared[np.sort(picked)]
    prepared = prepared.astype(np.float32)
    if not np.isfinite(prepared).all():
        raise ExportError(f"{path}: holds NaN or infinite values; pass --calibration DIR")
    return contract.normalize(prepared).astype(np.float32)


def load_calibration(folder: Path, contract: PreprocessContract, count: int = DEFAULT_COUNT,
                     seed: int = 0, advance: Advance | None = None,
                     sampling: SamplingOptions | None = None) -> tuple[np.ndarray, int]:
    """Up to ``count`` images of ``folder`` (a fixed random pick), as N×C×S×S normalised,
    and how many picked files could not be read (left out)."""
    try:
        samples = discover(folder, sampling).samples
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


def load_cubes(path: Path, contract: PreprocessContract, count: int,
               folder: str | Path | None = None, seed: int = 0) -> np.ndarray:
    """Up to ``count`` whole-volume cubes of a volume run's ``calibration.npy`` (N×S×S×S,
    the training's ``whole_cube`` of each volume), normalised to N×1×S×S×S."""
    if folder is not None:
        raise ExportError(f"{folder}: --calibration takes image folders; a 3D run calibrates "
                          f"on its own {rundir.CALIBRATION} (drop --calibration)")
    if not path.is_file():
        raise ExportError(f"{path}: not found; a 3D run calibrates on the whole-volume cubes "
                          "pretrain --volumes keeps there: re-run or resume the pretraining")
    try:
        cubes = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ExportError(f"{path}: corrupt calibration volumes ({type(e).__name__}); re-run "
                          "the pretraining to write it again") from e
    expected = (contract.size,) * 3
    if cubes.ndim != 4 or cubes.shape[1:] != expected or len(cubes) == 0:
        raise ExportError(f"{path}: holds arrays of shape {cubes.shape[1:]}, the 3D run's "
                          f"contract needs {expected} cubes; re-run the pretraining")
    if len(cubes) > count:
        picked = np.random.default_rng(seed).choice(len(cubes), count, replace=False)
        cubes = cubes[np.sort(picked)]
    cubes = cubes.astype(np.float32)
    if not np.isfinite(cubes).all():
        raise ExportError(f"{path}: holds NaN or infinite values; re-run the pretraining")
    x = (cubes - np.float32(contract.mean[0])) / np.float32(contract.std[0])
    return np.ascontiguousarray(x[:, None], dtype=np.float32)
