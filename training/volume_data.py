"""The data of a volume run (``pretrain --volumes``): every DICOM series and NIfTI file of
the folder read once as a volume (:mod:`cossl_edge.volumes`), resampled to the run's
isotropic spacing, held in memory (float16), and the two-view dataset of 3D views
(:mod:`~cossl_edge.training.volume_views`). Series that cannot be volumes (too thin, a
missing slice, mixed orientations, …) are skipped, each reported with its reason."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from rich.progress import Progress

from cossl_edge.sources import Skipped, SourceError
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.dataset import TrainingData, TwoViewDataset
from cossl_edge.training.volume_views import VolumeViews, VolumeViewSettings, whole_cube
from cossl_edge.volumes import discover_volumes, load_volumes

# Fewer slices than this after resampling: not a volume to crop (skipped, not padded)
MIN_DEPTH = 8
SHOWN_SKIPS = 20  # series skips printed one by one; the rest counted


def volume_view_settings(config: PretrainConfig) -> VolumeViewSettings:
    return VolumeViewSettings(size=config.contract.size, min_scale=config.min_scale,
                              flip=config.resolved_hflip(), rotate=config.resolved_rotate(),
                              blur=config.blur, mean=config.contract.mean[0],
                              std=config.contract.std[0])


def load_volume_data(config: PretrainConfig, data_dir, world: int, console,
                     progress: bool) -> TrainingData:
    """Discover, read, resample and cache the volumes; the run's :class:`TrainingData`:
    ``images`` holds each volume resized whole to the view cube (N×S×S×S, float16: the
    diagnostics' probe and ``calibration.npy``), the dataset draws views from the volumes
    at their resampled size."""
    if config.contract.channels != 1:
        raise ValueError("--volumes reads one-channel CT/MR volumes: use --channels 1")
    if not config.spacing > 0:
        raise ValueError(f"--spacing must be positive millimetres, got {config.spacing}")
    found = discover_volumes(data_dir, progress=progress)
    if not found.volumes:
        raise SourceError(f"{data_dir}: no DICOM series or NIfTI volumes found "
                          f"({len(found.skipped)} files skipped); point --volumes to a "
                          "folder of CT/MR series")
    spacing = (config.spacing,) * 3
    volumes: list[np.ndarray] = []
    ids: list[str] = []
    bad: list[Skipped] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"reading volumes at {config.spacing:g} mm",
                            total=len(found.volumes))
        for ref, vol in load_volumes(found.volumes, config.contract.window, spacing,
                                     MIN_DEPTH):
            bar.advance(task)
            if isinstance(vol, Skipped):
                bad.append(vol)
                continue
            volumes.append(vol.array.astype(np.float16))
            ids.append(ref.sample_id())
    for s in bad[:SHOWN_SKIPS]:
        console.print(f"skipped {s.reason}")
    if len(bad) > SHOWN_SKIPS:
        console.print(f"... and {len(bad) - SHOWN_SKIPS} more series skipped")
    if found.skipped:
        console.print(f"{len(found.skipped)} other file(s) skipped (not part of a DICOM "
                      "series or a NIfTI file)")
    if len(volumes) < 2 * world:
        raise SourceError(f"{data_dir}: only {len(volumes)} usable volume(s) of "
                          f"{len(found.volumes)}; need at least 2")
    shapes = np.array([v.shape for v in volumes])
    console.print(f"volumes: {len(volumes)} at {config.spacing:g} mm isotropic (median "
                  f"{'×'.join(str(int(n)) for n in np.median(shapes, 0))} voxels), "
                  f"{len(bad)} series skipped; views {config.contract.size}³")
    size = config.contract.size
    cubes = np.stack([whole_cube(v, size) for v in volumes]).astype(np.float16)
    config = replace(config, view_size=None)
    views = VolumeViews(volume_view_settings(config))
    return TrainingData(config, cubes, ids, found.skipped + bad,
                        min(config.batch_size, max(2, len(volumes) // world)), "medical-3d",
                        TwoViewDataset(volumes, views))
