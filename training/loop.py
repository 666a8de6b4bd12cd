"""The pretraining loop: one code path for CPU, one GPU, or several processes (torchrun).

``pretrain(config, data_dir, out_dir)`` discovers and caches the data, builds the method from
the registry, and trains with the optimiser, LR/EMA schedules, optional bf16 autocast and
gradient accumulation that the config names. It writes the run directory described in
:mod:`cossl_edge.rundir`, checkpoints atomically, resumes after a kill, and stops cleanly on
SIGTERM/Ctrl-C after writing a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import signal
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cossl_edge import rundir
from cossl_edge.privacy import file_token
from cossl_edge.sources import SourceError, discover, labelled_samples, native_side
from cossl_edge.training import diagnostics
from cossl_edge.training.checkpoint import CheckpointError, load_checkpoint, save_atomic
from cossl_edge.training.config import PretrainConfig, size_for_native
from cossl_edge.training.dataset import (
    PROCESS,
    VIEWS,
    TwoViewDataset,
    build_cache,
    epoch_batches,
    epoch_loader,
    stream_seed,
)
from cossl_edge.training.distributed import scaled_lr, setup_distributed
from cossl_edge.training.methods import build_method, resolved_w_s
from cossl_edge.training.optim import build_optimizer, ema_tau_at, lr_at, set_lr
from cossl_edge.training.precision import PrecisionChoice
from cossl_edge.training.precision import resolve as resolve_precision
from cossl_edge.training.views import TwoViews

CALIBRATION_COUNT = 256  # prepared training images kept for export (int8 calibration)
CHECKPOINT_SECONDS = 120.0  # also checkpoint mid-epoch this often, so a SIGKILL loses little
# The effective-rank diagnostics (512 images embedded) after the last epoch and otherwise at
# most every DIAGNOSE_SECONDS, and no more often than keeps them under DIAGNOSE_SHARE of the
# time; with --monitor every epoch. On small data sets an epoch lasts seconds, and
# diagnosing each one cost 6-8% of the training time (docs/benchmarks.md).
DIAGNOSE_SECONDS = 10.0
DIAGNOSE_SHARE = 0.02


class Stop(Exception):
    """Raised inside the loop when SIGTERM/SIGINT asked for a clean stop."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed this process's global generators (python, numpy, torch: the model's
    initialisation). The views draw from their own streams (``dataset.epoch_loader``)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _resolve_preset(config: PretrainConfig, kinds: set[str]) -> str:
    if config.preset != "auto":
        return config.preset
    return "medical" if "dicom" in kinds else "camera"


def data_fingerprint(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _prepare_run_dir(config: PretrainConfig, out: Path, resume: bool,
                     auto_size: bool = False) -> PretrainConfig:
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


class _Monitor:
    """kNN accuracy of the online backbone's pooled features on a labelled folder."""

    def __init__(self, folder: str, config: PretrainConfig, progress: bool):
        refs, labels, _ = labelled_samples(folder)
        images, kept, _ = build_cache(refs, config.contract, progress=progress)
        self.x = torch.from_numpy(config.contract.normalize(images.astype(np.float32)))
        self.y = np.asarray([labels[i] for i in kept])
        self.train_idx, self.test_idx = diagnostics.stratified_halves(self.y, config.seed)

    def __call__(self, embed) -> float:
        z = embed(self.x)
        return diagnostics.knn_accuracy(z[self.train_idx], self.y[self.train_idx],
                                        z[self.test_idx], self.y[self.test_idx])


def pretrain(config: PretrainConfig, data_dir: str | Path, out_dir: str | Path,
             resume: bool = False, progress: bool = True, max_steps: int | None = None,
             console: Console | None = None, sync_bn: bool = False,
             auto_size: bool = False) -> dict:
    """Train; return a summary dict. ``max_steps`` stops early (tests, smoke runs).
    ``auto_size``: choose the input size from the data (:func:`size_for_native`) instead of
    ``config.contract.size``; a resumed run keeps its size."""
    dist = setup_distributed(sync_bn)
    console = console or Console(stderr=True, quiet=not dist.is_main)
    out = Path(out_dir)
    if config.epochs is None and config.time_budget is None and max_steps is None:
        raise ValueError("give --epochs or --time-budget")
    monitor_dir = config.monitor  # a path: used, never written to the run directory
    config = _prepare_run_dir(config, out, resume, auto_size)
    auto_size = auto_size and not resume  # a resumed run keeps its size
    config.monitor = file_token(monitor_dir) if monitor_dir else None
    device = pick_device(config.device) if dist.world == 1 else dist.device
    seed_everything(stream_seed(config.seed, PROCESS, dist.rank))

    # data: discover, decode once, cache
    found = discover(data_dir, dicom_stride=config.dicom_stride,
                     video_every=config.video_every, video_fps=config.video_fps,
                     progress=progress and dist.is_main)
    if not found.samples:
        raise SourceError(f"{data_dir}: no images found ({len(found.skipped)} files skipped); "
                          "point to a folder of PNG/JPEG/TIFF, DICOM or video files")
    if auto_size:
        side = native_side(found.samples)
        size = size_for_native(side, config.findings)
        config = replace(config, contract=replace(config.contract, size=size))
        console.print(f"image size: {size} px (auto; the images' median short side is "
                      f"{side if side is not None else 'unknown'} px; --image-size to choose)")
    if config.findings == "local" and (config.view_size or 0) >= config.contract.size:
        config = replace(config, view_size=None)  # small images: a view is the whole image
    images, kept, skipped = build_cache(found.samples, config.contract,
                                        progress=progress and dist.is_main)
    skipped = found.skipped + skipped
    if len(images) < 2 * dist.world:
        raise SourceError(f"{data_dir}: only {len(images)} usable image(s); need at least 2")
    batch = min(config.batch_size, max(2, len(images) // dist.world))
    ids = [found.samples[i].sample_id() for i in kept]
    kinds = {found.samples[i].kind for i in kept}
    preset = _resolve_preset(config, kinds)
    views = TwoViews(preset, config.contract, config.min_scale, config.resolved_hflip(),
                     config.solarize, config.blur, config.resolved_rotate(),
                     config.resolved_view_size(), config.texture, config.cutpaste,
                     config.jitter)
    dataset = TwoViewDataset(images, views)

    # channels_last: 1.5× faster convolutions on this CPU (oneDNN), and the usual GPU layout.
    method = build_method(config).to(device, memory_format=torch.channels_last)
    grid = method.backbone.feature_grid(config.resolved_view_size())
    w_s = resolved_w_s(config)
    if w_s > 0 and grid < 2 and (config.local_grid or grid) < 2:
        console.print(f"[yellow]warning: the last feature map is {grid}×{grid}; the local term "
                      "has a single position and CO-SSL degenerates to its base method. Use "
                      "--stem small or a larger --image-size.")
    model = dist.wrap(method)
    # --lr is the peak for one process; N processes see N times the batch (distributed.py)
    peak_lr, lr_rule = scaled_lr(config.optimizer, config.lr, dist.world)
    optimizer = build_optimizer(config.optimizer, method, peak_lr, config.weight_decay)
    steps_per_epoch = max(1, len(epoch_batches(len(images), batch, 0, config.seed,
                                                dist.rank, dist.world)) // config.accumulate)
    # --max-steps alone (no --epochs) sets the schedule's length too
    total_steps = config.epochs * steps_per_epoch if config.epochs else max_steps or 0

    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "elapsed": 0.0}
    if resume and (out / rundir.LAST_CHECKPOINT).exists():
        ckpt = load_checkpoint(out / rundir.LAST_CHECKPOINT)
        try:
            method.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{out / rundir.LAST_CHECKPOINT}: does not match this "
                                  f"configuration ({type(e).__name__}); start a new run") from e
        state.update({k: ckpt["state"][k] for k in state})
        console.print(f"resuming at epoch {state['epoch']} step {state['global_step']}")

    precision = _precision(config, out, resume, method, dataset, batch, device, dist, peak_lr)
    console.print(precision.describe())
    if not resume:
        state["elapsed"] += precision.probe_s  # the probe counts inside --time-budget

    out.mkdir(parents=True, exist_ok=True)
    # No raw path in the run directory (a folder may be named after a patient): the data is
    # identified by a fingerprint of salted ids, and export calibrates on calibration.npy.
    facts = {"feature_grid": grid, "w_s_resolved": w_s,
             "preset_resolved": preset, "stem_resolved": config.resolved_stem(),
             "hflip_resolved": config.resolved_hflip(),
             "rotate_resolved": config.resolved_rotate(),
             "view_size_resolved": config.resolved_view_size(),
             "inference_grid": method.backbone.feature_grid(config.contract.size),
             "num_images": len(images), "num_skipped": len(skipped),
             "effective_batch_size": batch * config.accumulate * dist.world,
             "world_size": dist.world, "device": str(device), "sync_bn": dist.sync_bn,
             "peak_lr": peak_lr, "lr_scaling": lr_rule,
             "embedding_dim": method.backbone.out_channels,
             "bf16_resolved": precision.bf16, "bf16_choice": precision.to_dict()}
    if dist.is_main:
        config.save(out / rundir.CONFIG, facts)
        (out / rundir.FINGERPRINT).write_text(data_fingerprint(ids) + "\n")
        pick = np.random.default_rng(config.seed).permutation(len(images))[:CALIBRATION_COUNT]
        with open(out / rundir.CALIBRATION, "wb") as f:
            np.save(f, images[np.sort(pick)], allow_pickle=False)
    console.print(
        f"{config.method} · {config.arch} ×{config.width} · {config.contract.size}px "
        f"{config.contract.channels}ch · map {grid}×{grid} · {len(images)} images "
        f"({len(skipped)} skipped) · batch {facts['effective_batch_size']}"
        f" · lr {peak_lr:.3g} ({lr_rule} scaling)"
        f"{f' ({dist.world} processes)' if dist.world > 1 else ''} · {device}")

    monitor = _Monitor(monitor_dir, config, progress) if monitor_dir else None
    metrics_file = (out / rundir.METRICS).open("a") if dist.is_main else None

    def log(rec: dict) -> None:
        if metrics_file:
            metrics_file.write(json.dumps(rec) + "\n")
            metrics_file.flush()

    def embed(x: torch.Tensor) -> np.ndarray:
        was = method.training
        method.eval()
        with torch.no_grad():
            z = torch.cat([method.backbone(x[i:i + 256].to(
                device, memory_format=torch.channels_last)).float().cpu()
                           for i in range(0, len(x), 256)])
        method.train(was)
        return z.numpy()

    probe_images = images[np.random.default_rng(0).permutation(len(images))[:512]]
    view = config.resolved_view_size()
    if view < config.contract.size:  # patch views: diagnose on centre patches, as trained
        top = (config.contract.size - view) // 2
        probe_images = probe_images[:, top:top + view, top:top + view]
    probe = torch.from_numpy(config.contract.normalize(probe_images.astype(np.float32)))

    def diagnose(rec: dict) -> None:
        z = embed(probe)
        rec["effective_rank"] = diagnostics.effective_rank(z)
        rec["normalized_std"] = diagnostics.normalized_std(z)
        if monitor is not None:
            rec["knn_monitor"] = monitor(embed)

    if state["global_step"] == 0 and dist.is_main:
        rec = {"epoch": 0, "step": 0, "event": "init"}
        diagnose(rec)
        log(rec)

    def checkpoint(periodic: bool = False) -> None:
        if not dist.is_main:
            return
        payload = {"model": method.state_dict(), "optimizer": optimizer.state_dict(),
                   "state": dict(state), "config": json.dumps(config.to_dict())}
        save_atomic(payload, out / rundir.LAST_CHECKPOINT)
        if periodic:
            save_atomic(payload, out / rundir.CHECKPOINTS / f"epoch-{state['epoch']:04d}.pt")
        save_atomic(method.backbone.state_dict(), out / rundir.ENCODER)

    stop_requested = {"flag": False}

    def on_signal(signum, frame):
        stop_requested["flag"] = True

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
        if _in_main_thread() else {}

    budget = config.time_budget
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision.bf16
                else nullcontext())

    def progress_fraction() -> float:
        if budget:
            return state["elapsed"] / budget
        return state["global_step"] / max(1, total_steps)

    def finished() -> bool:
        if max_steps is not None and state["global_step"] >= max_steps:
            return True
        if budget:
            return state["elapsed"] >= budget
        return config.epochs is not None and state["epoch"] >= config.epochs

    columns = [TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[info]}"),
               TimeRemainingColumn()]
    start_wall = time.perf_counter() - state["elapsed"]
    last_ckpt = last_diagnosis = time.perf_counter()
    diagnose_every = DIAGNOSE_SECONDS
    stopped_by_signal = False
    method.train()
    try:
        with Progress(*columns, console=console, disable=not progress or not dist.is_main,
                      transient=False) as bar:
            task = bar.add_task("pretraining", total=budget or max(1, max_steps or total_steps),
                                info="")
            while not finished():
                batches = epoch_batches(len(images), batch, state["epoch"], config.seed,
                                        dist.rank, dist.world)
                batches = batches[state["step_in_epoch"] * config.accumulate:]
                loader = epoch_loader(dataset, batches, config.workers, config.seed, dist.rank,
                                      state["epoch"])
                losses, seen, t_epoch = [], 0, time.perf_counter()
                accum = 0
                for batch_views in loader:
                    if dist.any(stop_requested["flag"]):  # all ranks stop at one batch
                        raise Stop
                    batch_views = [v.to(device, memory_format=torch.channels_last)
                                   for v in batch_views]
                    view_a = batch_views[0]
                    method.set_progress(progress_fraction())
                    with autocast:
                        loss, _stats = model(*batch_views)
                    (loss / config.accumulate).backward()
                    accum += 1
                    seen += len(view_a) * dist.world
                    if accum < config.accumulate:
                        continue
                    accum = 0
                    frac = progress_fraction()
                    lr = lr_at(frac, peak_lr, config.warmup_fraction)
                    set_lr(optimizer, lr)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    method.momentum_update(ema_tau_at(frac, config.ema_base))
                    state["global_step"] += 1
                    state["step_in_epoch"] += 1
                    state["elapsed"] = dist.max(time.perf_counter() - start_wall)
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"loss became {value} at step {state['global_step']}; lower --lr "
                            "or turn off --bf16")
                    losses.append(value)
                    ips = seen / max(1e-9, time.perf_counter() - t_epoch)
                    bar.update(task, completed=state["elapsed"] if budget
                               else state["global_step"],
                               info=f"ep {state['epoch'] + 1} loss {value:.3f} {ips:.0f} img/s")
                    if time.perf_counter() - last_ckpt > CHECKPOINT_SECONDS:
                        checkpoint()
                        last_ckpt = time.perf_counter()
                    if finished():
                        break
                else:  # the epoch ran to its end
                    state["epoch"] += 1
                    state["step_in_epoch"] = 0
                rec = {"epoch": state["epoch"], "step": state["global_step"],
                       "loss": float(np.mean(losses)) if losses else None,
                       "lr": lr_at(progress_fraction(), peak_lr, config.warmup_fraction),
                       "tau": ema_tau_at(progress_fraction(), config.ema_base),
                       "images_per_s": seen / max(1e-9, time.perf_counter() - t_epoch),
                       "elapsed_s": state["elapsed"]}
                if dist.is_main and (monitor is not None or finished()
                                     or time.perf_counter() - last_diagnosis >= diagnose_every):
                    t_diag = time.perf_counter()
                    diagnose(rec)
                    last_diagnosis = time.perf_counter()
                    diagnose_every = max(DIAGNOSE_SECONDS,
                                         (last_diagnosis - t_diag) / DIAGNOSE_SHARE)
                    warn = diagnostics.collapse_warning(rec["effective_rank"],
                                                        method.backbone.out_channels)
                    if warn:
                        console.print(f"[yellow]warning: {warn}")
                if dist.is_main:
                    bar.console.print(_epoch_line(rec))
                    log(rec)
                checkpoint(periodic=state["epoch"] % max(1, config.checkpoint_every) == 0)
                last_ckpt = time.perf_counter()
    except Stop:
        stopped_by_signal = True
        checkpoint()
        console.print(f"stopped: checkpoint written to {out / rundir.LAST_CHECKPOINT}; "
                      "continue with --resume")
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        if metrics_file:
            metrics_file.close()
    if not stopped_by_signal:
        checkpoint()
    dist.barrier()
    summary = {"steps": state["global_step"], "epochs": state["epoch"],
               "elapsed_s": round(state["elapsed"], 1), "images": len(images),
               "skipped": len(skipped), "stopped": stopped_by_signal,
               "skipped_files": [s.reason for s in skipped[:20]]}
    dist.close()
    return summary


def _precision(config: PretrainConfig, out: Path, resume: bool, method,
               dataset: TwoViewDataset, batch: int, device: torch.device, dist,
               peak_lr: float) -> PrecisionChoice:
    """bf16 or fp32: forced by ``--bf16``/``--no-bf16``; kept from the run when resumed;
    else (auto) timed on a copy of the model with one batch of this run's views
    (:mod:`cossl_edge.training.precision`)."""
    if resume:
        saved = json.loads((out / rundir.CONFIG).read_text()).get("bf16_choice") or {}
        return PrecisionChoice(bool(config.bf16), saved.get("how", "forced"),
                               saved.get("step_s", {}), saved.get("probe_s", 0.0),
                               resumed=True)
    views = None
    if config.bf16 is None:
        # the probe's views draw from a stream of their own; every epoch reseeds the views
        dataset.views.reseed(stream_seed(config.seed, VIEWS, dist.rank, -1, 0))
        items = [dataset[i] for i in range(batch)]
        views = [torch.stack(t).to(device, memory_format=torch.channels_last)
                 for t in zip(*items, strict=True)]
    return resolve_precision(
        config.bf16, method, lambda m: build_optimizer(config.optimizer, m, peak_lr,
                                                       config.weight_decay),
        views, device, agree=dist.max)


def _epoch_line(rec: dict) -> str:
    parts = [f"epoch {rec['epoch']}", f"loss {rec['loss']:.4f}" if rec.get("loss") else "",
             f"{rec['images_per_s']:.0f} img/s",
             f"eff. rank {rec['effective_rank']:.1f}" if "effective_rank" in rec else ""]
    if "knn_monitor" in rec:
        parts.append(f"kNN {100 * rec['knn_monitor']:.1f}%")
    return " · ".join(p for p in parts if p)


def _in_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()

