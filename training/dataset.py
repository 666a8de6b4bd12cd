"""Decoded-once image cache and the two-view dataset.

Decoding and windowing (DICOM) happen once per file: the contract's deterministic output
(``prepare``) is cached on disk per sample, keyed by the file's path, size, mtime, frame and the
contract, and held in memory (float16) for the epochs. Random views are drawn from the cache.
(MONAI's PersistentDataset does the same with a transform chain; here the deterministic part
is the contract's numpy code, which the edge runtime must also run without MONAI.)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import (
    SampleRef,
    Skipped,
    SourceError,
    data_detail,
    discover,
    load_sample,
    native_side,
)
from cossl_edge.training.config import (
    PRETRAINED_MIN_DETAIL,
    PretrainConfig,
    resolve_arch,
    size_for_native,
)
from cossl_edge.training.efficientnet import weights_available
from cossl_edge.training.views import TwoViews


def cache_root() -> Path:
    base = os.environ.get("COSSL_EDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "cossl-edge")
    return Path(base)


def _cache_key(ref: SampleRef, contract: PreprocessContract) -> str:
    st = ref.path.stat()
    raw = f"{ref.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ref.frame}|{contract.to_json()}"
    return hashlib.sha256(raw.encode()).hexdigest()


def build_cache(refs: list[SampleRef], contract: PreprocessContract, use_disk: bool = True,
                progress: bool = True) -> tuple[np.ndarray, list[int], list[Skipped]]:
    """Prepared images N×S×S×C (float16), the indices of ``refs`` kept, and what was skipped."""
    root = cache_root()
    shape = (contract.size, contract.size, contract.channels)
    out = np.zeros((len(refs),) + shape, np.float16)
    kept: list[int] = []
    skipped: list[Skipped] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("decoding (cached after the first run)", total=len(refs))
        for i, ref in enumerate(refs):
            bar.advance(task)
            try:
                path = root / (_cache_key(ref, contract) + ".npy") if use_disk else None
                if path is not None and path.exists():
                    img = np.load(path, allow_pickle=False)
                else:
                    img = contract.prepare(load_sample(ref, contract)).astype(np.float16)
                    if path is not None:
                        _atomic_save(path, img)
                if img.shape != shape:
                    raise ValueError(f"cached shape {img.shape} differs from {shape}")
                out[len(kept)] = img
                kept.append(i)
            except (OSError, ValueError) as e:
                skipped.append(Skipped(ref.path, str(e)))
    return out[: len(kept)], kept, skipped


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    os.replace(tmp, path)


# What a derived seed is for: the key's first element, so that no two uses share a stream.
PROCESS, VIEWS, LOADER = 0, 1, 2


def stream_seed(seed: int, *key: int) -> int:
    """The seed of one random stream of a run, in [0, 2**63): the run's ``seed`` (``--seed``)
    and the stream's ``key`` (what it is for, then rank, epoch, worker, …) mixed by numpy's
    SeedSequence, so that nearby seeds and keys give unrelated streams (``seed + rank``
    would make rank 1 of seed 0 repeat rank 0 of seed 1)."""
    words = [int(k) % 2**64 for k in (seed, *key)]  # SeedSequence takes no negative numbers
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)


class TwoViewDataset(torch.utils.data.Dataset):
    """Item i → (view_a, view_b[, hard negative]) tensors drawn from cached image i; a list
    of indices → the batch's views (B×C×H×W tensors, :meth:`TwoViews.batch`), which is what
    :func:`epoch_loader` asks for."""

    def __init__(self, images: np.ndarray, views: TwoViews):
        self.images = images
        self.views = views

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        if isinstance(i, list | tuple | np.ndarray):
            return self.views.batch(self.images, np.asarray(i, np.int64))
        return tuple(torch.from_numpy(v) for v in self.views(self.images[i].astype(np.float32)))


class _SeedWorker:
    """DataLoader ``worker_init_fn``: the views of worker w of rank r in epoch e draw from
    ``stream_seed(seed, VIEWS, r, e, w + 1)`` (the main process, without workers, is w = 0).
    PyTorch has already seeded the worker's global generators (python, numpy, torch) from the
    loader's generator, which :func:`epoch_loader` seeds from the run's seed."""

    def __init__(self, seed: int, rank: int, epoch: int):
        self.seed, self.rank, self.epoch = seed, rank, epoch

    def __call__(self, worker_id: int) -> None:
        dataset = torch.utils.data.get_worker_info().dataset
        dataset.views.reseed(stream_seed(self.seed, VIEWS, self.rank, self.epoch,
                                         worker_id + 1))


def epoch_loader(dataset: TwoViewDataset, batches: list[list[int]], workers: int, seed: int,
                 rank: int, epoch: int) -> torch.utils.data.DataLoader:
    """The DataLoader of one epoch (of this rank), every random stream of its views seeded
    from (seed, rank, epoch, worker): a run repeats with the same seed and ``workers``, ranks
    and workers draw different views, and each epoch new ones (workers are forked afresh
    every epoch from a main process whose own streams do not move)."""
    if workers == 0:
        dataset.views.reseed(stream_seed(seed, VIEWS, rank, epoch, 0))
    generator = torch.Generator().manual_seed(stream_seed(seed, LOADER, rank, epoch))
    # each item is a whole batch (a list of indices): the views are drawn batch by batch
    return torch.utils.data.DataLoader(
        dataset, sampler=batches, batch_size=None, num_workers=workers,
        persistent_workers=False,
        worker_init_fn=_SeedWorker(seed, rank, epoch) if workers else None,
        generator=generator)


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, rank: int = 0,
                  world: int = 1) -> list[list[int]]:
    """The batches of one epoch: a permutation seeded by (seed, epoch), split across ranks,
    incomplete last batch dropped. Deterministic, so a resumed run can skip what it did."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = len(perm) // world
    mine = perm[rank * per_rank:(rank + 1) * per_rank]
    nb = len(mine) // batch_size
    return [mine[i * batch_size:(i + 1) * batch_size].tolist() for i in range(nb)]


@dataclass
class TrainingData:
    """A run's data, decoded and cached: its configuration (the image size resolved), the
    prepared images, their salted ids, the skipped files, the batch size and the views."""

    config: PretrainConfig
    images: np.ndarray
    ids: list[str]
    skipped: list[Skipped]
    batch: int
    preset: str
    dataset: TwoViewDataset


def load_training_data(config: PretrainConfig, data_dir, auto_size: bool, world: int,
                       console, progress: bool) -> TrainingData:
    """Discover (with the run's sampling), choose the size (``auto_size``), decode once into
    the cache and build the two-view dataset."""
    found = discover(data_dir, config.sampling(), progress=progress)
    if not found.samples:
        raise SourceError(f"{data_dir}: no images found ({len(found.skipped)} files skipped); "
                          "point to a folder of PNG/JPEG/TIFF, DICOM or video files")
    side = native_side(found.samples) if auto_size else None
    if auto_size:
        size = size_for_native(side, config.findings)
        config = replace(config, contract=replace(config.contract, size=size))
    if config.arch == "auto" or config.arch == "efficientnet-lite0":
        asked = config.arch
        weights = weights_available()
        detail = data_detail(found.samples, config.contract) \
            if asked == "auto" and weights and config.findings == "global" else None
        config = resolve_arch(config, side, auto_size, weights, detail)
        if asked == "auto":
            why = "" if detail is None else \
                f"; the images' detail is {detail:.0f} px, ImageNet weights from " \
                f"{PRETRAINED_MIN_DETAIL} px"
            console.print(f"backbone: {config.arch} (auto{why}; --arch to choose)")
    if auto_size:
        console.print(f"image size: {config.contract.size} px (auto; the images' median "
                      f"short side is {side if side is not None else 'unknown'} px; "
                      "--image-size to choose)")
    if config.findings == "local" and (config.view_size or 0) >= config.contract.size:
        config = replace(config, view_size=None)  # small images: a view is the whole image
    images, kept, skipped = build_cache(found.samples, config.contract, progress=progress)
    if len(images) < 2 * world:
        raise SourceError(f"{data_dir}: only {len(images)} usable image(s); need at least 2")
    preset = config.resolved_preset({found.samples[i].kind for i in kept})
    views = TwoViews(config.view_settings(preset), config.contract)
    return TrainingData(config, images, [found.samples[i].sample_id() for i in kept],
                        found.skipped + skipped,
                        min(config.batch_size, max(2, len(images) // world)), preset,
                        TwoViewDataset(images, views))
