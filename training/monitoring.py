"""What the loop watches while it trains: the embedding's effective rank and spread on a
fixed probe of the training images, and (``--monitor``) a kNN accuracy on a labelled
folder; scheduled so that watching costs at most a small share of the time."""

from __future__ import annotations

import time

import numpy as np
import torch

from cossl_edge.sources import labelled_samples
from cossl_edge.training import diagnostics
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.dataset import build_cache
from cossl_edge.training.layout import layout_of
from cossl_edge.training.volume_views import normalize_cubes

# After the last epoch, and otherwise at most every DIAGNOSE_SECONDS and no more often than
# keeps them under DIAGNOSE_SHARE of the time; with --monitor every epoch. On small data
# sets an epoch lasts seconds, and diagnosing each one cost 6-8% of the training time
# (docs/benchmarks.md).
DIAGNOSE_SECONDS = 10.0
DIAGNOSE_SHARE = 0.02
PROBE_IMAGES = 512


class Monitor:
    """kNN accuracy of the online backbone's pooled features on a labelled folder."""

    def __init__(self, folder: str, config: PretrainConfig, progress: bool):
        refs, labels, _ = labelled_samples(folder, sampling=config.sampling())
        images, kept, _ = build_cache(refs, config.contract, progress=progress)
        self.x = torch.from_numpy(config.contract.normalize(images.astype(np.float32)))
        self.y = np.asarray([labels[i] for i in kept])
        self.train_idx, self.test_idx = diagnostics.stratified_halves(self.y, config.seed)

    def __call__(self, embed) -> float:
        z = embed(self.x)
        return diagnostics.knn_accuracy(z[self.train_idx], self.y[self.train_idx],
                                        z[self.test_idx], self.y[self.test_idx])


class Diagnoser:
    """Adds ``effective_rank``, ``normalized_std`` (and ``knn_monitor``) to an epoch's
    record when due."""

    def __init__(self, method, images: np.ndarray, config: PretrainConfig,
                 device: torch.device, monitor: Monitor | None):
        self.method, self.device, self.monitor = method, device, monitor
        probe = images[np.random.default_rng(0).permutation(len(images))[:PROBE_IMAGES]]
        self.last = time.perf_counter()
        self.every = DIAGNOSE_SECONDS
        if config.volumes:  # N×S×S×S whole-volume cubes (training/volume_data.py)
            self.probe = torch.from_numpy(normalize_cubes(probe, config.contract.mean[0],
                                                          config.contract.std[0]))
            return
        view = config.resolved_view_size()
        if view < config.contract.size:  # patch views: diagnose on centre patches, as trained
            top = (config.contract.size - view) // 2
            probe = probe[:, top:top + view, top:top + view]
        self.probe = torch.from_numpy(config.contract.normalize(probe.astype(np.float32)))

    def embed(self, x: torch.Tensor) -> np.ndarray:
        was = self.method.training
        self.method.eval()
        with torch.no_grad():
            z = torch.cat([self.method.backbone(x[i:i + 256].to(
                self.device, memory_format=layout_of(x))).float().cpu()
                for i in range(0, len(x), 256)])
        self.method.train(was)
        return z.numpy()

    def __call__(self, rec: dict) -> dict:
        z = self.embed(self.probe)
        rec["effective_rank"] = diagnostics.effective_rank(z)
        rec["normalized_std"] = diagnostics.normalized_std(z)
        if self.monitor is not None:
            rec["knn_monitor"] = self.monitor(self.embed)
        return rec

    def after_epoch(self, rec: dict, last_epoch: bool) -> str | None:
        """Diagnose ``rec`` when due; a collapse warning, if any."""
        if not (self.monitor is not None or last_epoch
                or time.perf_counter() - self.last >= self.every):
            return None
        t = time.perf_counter()
        self(rec)
        self.last = time.perf_counter()
        self.every = max(DIAGNOSE_SECONDS, (self.last - t) / DIAGNOSE_SHARE)
        return diagnostics.collapse_warning(rec["effective_rank"],
                                            self.method.backbone.out_channels)
