"""Where the training loop's time goes besides the model: a breakdown per step
(``benchmarks/train_throughput.py --profile``).

``python benchmarks/train_throughput.py --profile [--sizes 32] [--batch 128] [--bf16]`` (the
first of ``--sizes``)

The default recipe (co-simclr, ResNet-10 ×0.25, camera views of one-channel images: ±15°
rotation, random resized crop, no flip, brightness/contrast, blur, solarize) on the digits
written as PNG files (``benchmarks/datasets.py``). Timed one at a time, in one process:

- decoding: ``build_cache`` with a warm disk cache (what every run but the first pays) and
  without one (the first run);
- each albumentations transform of a view alone, the whole ``Compose`` of a view, the pair
  (``TwoViews``: both views, clipping, normalising) and the dataset item (+ tensors);
- a batch of views image by image and on tensors (``TwoViews.batch``: the loop's path);
- collating a batch; a whole epoch through ``epoch_loader`` with 0, 1 and 2 workers and no
  model (the data path's own pairs/s);
- what the loop does once per epoch: the diagnostics (embedding 512 images, effective rank)
  and the checkpoints (``last.pt``, the encoder, and every ``checkpoint_every`` epochs a copy);
- the model's step itself (forward, backward, AdamW, EMA) on one batch.

Prints a table (ms per step of ``batch`` pairs) and writes JSON with ``--json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import write_split
from loop_throughput import training_step

from cossl_edge.contract import PreprocessContract
from cossl_edge.sources import discover
from cossl_edge.training import diagnostics
from cossl_edge.training.checkpoint import save_atomic
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.dataset import (
    TwoViewDataset,
    build_cache,
    epoch_batches,
    epoch_loader,
)
from cossl_edge.training.methods import build_method
from cossl_edge.training.views import TwoViews, rotate


def per_call(fn, n: int, repeat: int = 3) -> float:
    """Seconds per call: the fastest of ``repeat`` runs of ``n`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def profile(args) -> None:
    """Print the table (and write ``args.json``): ``args`` holds ``size``, ``batch``,
    ``bf16``, ``work`` and ``json``, as ``train_throughput.py --profile`` parses them."""
    import albumentations as A

    cfg = PretrainConfig(contract=PreprocessContract(size=args.size), bf16=args.bf16)
    data = write_split("digits", args.work / "datasets").unlabeled
    found = discover(data, progress=False)
    t0 = time.perf_counter()
    images, _, _ = build_cache(found.samples, cfg.contract, progress=False)
    cached_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_cache(found.samples[:200], cfg.contract, use_disk=False, progress=False)
    decode_s = (time.perf_counter() - t0) / 200 * len(found.samples)
    n, b = len(images), args.batch
    steps_per_epoch = n // b
    rows: list[tuple[str, float, str]] = []  # (what, ms per step, note)
    rows.append(("decode + prepare, cold (first run only)", 1e3 * decode_s / steps_per_epoch,
                 f"{decode_s:.2f} s once for {n} images"))
    rows.append(("read the disk cache (every run)", 1e3 * cached_s / steps_per_epoch,
                 f"{cached_s:.2f} s once"))

    views = TwoViews(cfg.view_settings("camera"), cfg.contract, seed=0)
    img = images[0].astype(np.float32)
    pipe_a = views.view_a.albumentations[0]
    pipe_b = views.view_b.albumentations[0]
    calls = 400
    for t in pipe_a.transforms:  # each transform of view 1 alone (p forced to 1)
        one = copy.deepcopy(t)
        one.p = 1.0
        op = A.Compose([one])
        s = per_call(lambda op=op: op(image=img), calls)
        rows.append((f"  {t.__class__.__name__} (view 1, p=1)",
                     1e3 * 2 * b * s * (t.p if t.p < 1 else 1.0),
                     f"{1e6 * s:.0f} µs per call, p {t.p:g} per view"))
    rng = np.random.default_rng(0)
    s = per_call(lambda: rotate(img, float(rng.uniform(-15, 15))), calls)
    rows.append(("  rotation ±15° (views.rotate, before the Compose)", 1e3 * 2 * b * s,
                 f"{1e6 * s:.0f} µs per call, every view"))
    s_a = per_call(lambda: pipe_a(image=img), calls)
    s_b = per_call(lambda: pipe_b(image=img), calls)
    rows.append(("albumentations Compose, view 1 + view 2", 1e3 * b * (s_a + s_b),
                 f"{1e6 * s_a:.0f} + {1e6 * s_b:.0f} µs per view"))
    s_pair = per_call(lambda: views(img), calls)
    rows.append(("TwoViews pair (+ clip, normalise)", 1e3 * b * s_pair,
                 f"{1e6 * s_pair:.0f} µs per pair"))
    per_image = TwoViews(cfg.view_settings("camera"), cfg.contract, seed=0)
    per_image.batched = False
    some = images[:b]
    s_pi = per_call(lambda: per_image.batch(some), 3)
    rows.append(("a batch of views image by image (TwoViews.batch, per-image path)",
                 1e3 * s_pi, f"{1e6 * s_pi / b:.0f} µs per pair"))
    s_bv = per_call(lambda: views.batch(some), 10)
    rows.append(("a batch of views on tensors (TwoViews.batch, batch_views/: the loop's)",
                 1e3 * s_bv, f"{1e6 * s_bv / b:.0f} µs per pair; {s_pi / s_bv:.1f}× faster"))
    dataset = TwoViewDataset(images, views)
    s_item = per_call(lambda: dataset[0], calls)
    rows.append(("dataset item (+ float32, tensors)", 1e3 * b * s_item,
                 f"{1e6 * s_item:.0f} µs per pair"))
    items = [dataset[i] for i in range(b)]
    s_coll = per_call(lambda: torch.utils.data.default_collate(items), 50)
    rows.append(("collate a batch", 1e3 * s_coll, ""))
    loader_rates = {}
    for workers in (0, 1, 2):
        batches = epoch_batches(n, b, 0, cfg.seed)
        t0 = time.perf_counter()
        for _ in epoch_loader(dataset, batches, workers, cfg.seed, 0, 0):
            pass
        dt = time.perf_counter() - t0
        loader_rates[workers] = len(batches) * b / dt
        rows.append((f"a loader epoch, {workers} workers, no model", 1e3 * dt / len(batches),
                     f"{loader_rates[workers]:.0f} pairs/s (worker start-up included)"))

    torch.manual_seed(0)
    method = build_method(cfg).to(memory_format=torch.channels_last)
    batch_views = [torch.stack(t).contiguous(memory_format=torch.channels_last)
                   for t in zip(*items, strict=True)]
    step, opt = training_step(method, cfg, batch_views, args.bf16)
    step()
    s_step = per_call(step, 5, repeat=2)
    probe = torch.from_numpy(cfg.contract.normalize(
        images[np.random.default_rng(0).permutation(n)[:512]].astype(np.float32)))

    def diagnose():
        method.eval()
        with torch.no_grad():
            z = torch.cat([method.backbone(probe[i:i + 256].contiguous(
                memory_format=torch.channels_last)).float() for i in range(0, 512, 256)])
        method.train()
        z = z.numpy()
        diagnostics.effective_rank(z)
        diagnostics.normalized_std(z)

    s_diag = per_call(diagnose, 3, repeat=1)
    rows.append(("per-epoch diagnostics (512 images embedded)", 1e3 * s_diag / steps_per_epoch,
                 f"{1e3 * s_diag:.0f} ms per epoch of {steps_per_epoch} steps"))
    with tempfile.TemporaryDirectory() as tmp:
        def ckpt():
            payload = {"model": method.state_dict(), "optimizer": opt.state_dict(),
                       "state": {}, "config": "{}"}
            save_atomic(payload, Path(tmp) / "last.pt")
            save_atomic(method.backbone.state_dict(), Path(tmp) / "encoder.pt")
        s_ckpt = per_call(ckpt, 3, repeat=1)
    rows.append(("per-epoch checkpoint (last.pt + encoder)", 1e3 * s_ckpt / steps_per_epoch,
                 f"{1e3 * s_ckpt:.0f} ms per epoch"))
    rows.append(("the model's step (forward, backward, AdamW, EMA)", 1e3 * s_step,
                 f"{b / s_step:.0f} pairs/s; {'bf16' if args.bf16 else 'fp32'}"))
    print(f"{args.size} px, batch {b}, {n} images, {steps_per_epoch} steps per epoch, "
          f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    print("| what | ms per step | note |\n|---|---|---|")
    for what, ms, note in rows:
        print(f"| {what} | {ms:.1f} | {note} |")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "batch": b, "rows": rows,
                                         "loader_pairs_per_s": loader_rates}, indent=1))

