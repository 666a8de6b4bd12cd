"""The pretraining loop: one code path for CPU, one GPU, or several processes (torchrun).

``pretrain(config, data_dir, out_dir)`` is a list of named steps: prepare the run directory
(:mod:`~cossl_edge.training.run_setup`), load the data (:func:`load_training_data`), build
the method from the method list, restore a checkpoint, choose the precision, write the
run's files, then train (:class:`Trainer`: epochs of steps with the LR/EMA schedules,
gradient accumulation, checkpoints (:class:`Checkpointer`) and diagnostics
(:class:`Diagnoser`)). It writes the run directory described in :mod:`cossl_edge.rundir`,
checkpoints atomically, resumes after a kill, and stops cleanly on SIGTERM/Ctrl-C after
writing a checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
import random
import signal
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from cossl_edge import rundir
from cossl_edge.privacy import file_token
from cossl_edge.training import bn_recalibration, normal_stats
from cossl_edge.training.checkpoint import Checkpointer
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.dataset import (
    PROCESS,
    TrainingData,
    epoch_batches,
    epoch_loader,
    load_training_data,
    stream_seed,
)
from cossl_edge.training.distributed import scaled_lr, setup_distributed
from cossl_edge.training.layout import layout_of, memory_format
from cossl_edge.training.methods import build_method, resolved_w_s
from cossl_edge.training.monitoring import Diagnoser, Monitor
from cossl_edge.training.optim import build_optimizer, ema_tau_at, lr_at, set_lr
from cossl_edge.training.precision import PrecisionChoice, choose_precision
from cossl_edge.training.run_setup import prepare_run_dir, run_facts, write_run_files
from cossl_edge.training.volume_data import load_volume_data

CHECKPOINT_SECONDS = 120.0  # also checkpoint mid-epoch this often, so a SIGKILL loses little


class Stop(Exception):
    """Raised inside the loop when SIGTERM/SIGINT asked for a clean stop."""


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
    config = prepare_run_dir(config, out, resume, auto_size)
    config.monitor = file_token(monitor_dir) if monitor_dir else None
    device = pick_device(config.device) if dist.world == 1 else dist.device
    seed_everything(stream_seed(config.seed, PROCESS, dist.rank))
    show = progress and dist.is_main

    if config.volumes:
        data = load_volume_data(config, data_dir, dist.world, console, show)
    else:
        data = load_training_data(config, data_dir, auto_size and not resume, dist.world,
                                  console, show)
    config = data.config
    method, grid, w_s = build_method_for(config, device, console)
    peak_lr, lr_rule = scaled_lr(config.optimizer, config.lr, dist.world)
    optimizer = build_optimizer(config.optimizer, method, peak_lr, config.weight_decay)

    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "elapsed": 0.0}
    checkpoints = Checkpointer(out, method, optimizer, config, enabled=dist.is_main)
    if resume and checkpoints.restore(state):
        console.print(f"resuming at epoch {state['epoch']} step {state['global_step']}")
    precision = choose_precision(config, out, resume, method, data, device, dist, peak_lr)
    console.print(precision.describe())
    if not resume:
        state["elapsed"] += precision.probe_s  # the probe counts inside --time-budget

    facts = run_facts(config, data, method, grid, w_s, dist, device, peak_lr, lr_rule,
                      precision)
    if dist.is_main:
        write_run_files(out, config, facts, data)
    console.print(_run_line(config, facts, dist))
    monitor = Monitor(monitor_dir, config, progress) if monitor_dir else None
    diagnoser = Diagnoser(method, data.images, config, device, monitor)
    trainer = Trainer(config, data, dist.wrap(method), method, optimizer, peak_lr, precision,
                      device, dist, state, max_steps)
    with (out / rundir.METRICS).open("a") if dist.is_main else nullcontext() as metrics:
        def log(rec: dict) -> None:
            if metrics:
                metrics.write(json.dumps(rec) + "\n")
                metrics.flush()

        if state["global_step"] == 0 and dist.is_main:
            log(diagnoser({"epoch": 0, "step": 0, "event": "init"}))
        stopped = trainer.run(checkpoints, diagnoser, log, console, show)
    if stopped:
        console.print(f"stopped: checkpoint written to {checkpoints.last}; "
                      "continue with --resume")
    elif dist.is_main and config.volumes:
        console.print("no BatchNorm recalibration, no normal model: not built for 3D yet")
    elif dist.is_main:
        encoder = method.backbone
        if config.recalibrate_bn:
            encoder = recalibrated(method.backbone, data, config, device, checkpoints, console)
        write_normal_model(encoder, data, config, device, out, console)
    dist.barrier()
    dist.close()
    return {"steps": state["global_step"], "epochs": state["epoch"],
            "elapsed_s": round(state["elapsed"], 1), "images": len(data.images),
            "skipped": len(data.skipped), "stopped": stopped,
            "skipped_files": [s.reason for s in data.skipped[:20]]}


def recalibrated(backbone, data: TrainingData, config: PretrainConfig, device: torch.device,
                 checkpoints: Checkpointer, console: Console):
    """A copy of the backbone whose trained BatchNorm layers' statistics come from clean
    training images (:mod:`~cossl_edge.training.bn_recalibration`), written as
    ``encoder.pt``; the training state (``last.pt``, which a resume reads) keeps its own."""
    t0 = time.perf_counter()
    encoder = copy.deepcopy(backbone)
    n = bn_recalibration.recalibrate(encoder, data.images, config.contract, device,
                                     config.seed)
    if n:
        checkpoints.save_encoder(encoder)
        console.print(f"BatchNorm statistics: {n} clean training images "
                      f"({time.perf_counter() - t0:.0f} s)")
    return encoder


def write_normal_model(backbone, data: TrainingData, config: PretrainConfig,
                       device: torch.device, out: Path, console: Console) -> None:
    """The statistics of the training images that the exported anomaly map reads
    (:mod:`~cossl_edge.training.normal_stats`), once training has ended."""
    t0 = time.perf_counter()
    stats = normal_stats.compute(backbone, data.images, config.contract, device, config.seed)
    normal_stats.save(stats, out / rundir.NORMAL_MODEL)
    h, w = (int(v) for v in stats["grid"])
    console.print(f"normal model: {int(stats['images'])} images, {h}×{w} positions "
                  f"({time.perf_counter() - t0:.0f} s)")


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


def build_method_for(config: PretrainConfig, device: torch.device, console: Console):
    """The method on ``device`` (channels_last: 1.5× faster convolutions on a CPU with
    oneDNN, and the usual GPU layout) and its resolved local weight; warns when the local
    term would see a single position. Returns (method, feature grid of the views, w_s)."""
    method = build_method(config).to(device, memory_format=memory_format(config.volumes))
    grid = method.backbone.feature_grid(config.resolved_view_size())
    w_s = resolved_w_s(config)
    if w_s > 0 and grid < 2 and (config.local_grid or grid) < 2:
        console.print(f"[yellow]warning: the last feature map is {grid}×{grid}; the local term "
                      "has a single position and CO-SSL degenerates to its base method. Use "
                      "--stem small or a larger --image-size.")
    return method, grid, w_s


class Trainer:
    """Epochs of steps until the budget, the step count or the epochs are done, or a signal
    asks to stop; the schedules follow the fraction of training done."""

    def __init__(self, config: PretrainConfig, data: TrainingData, model, method, optimizer,
                 peak_lr: float, precision: PrecisionChoice, device, dist, state: dict,
                 max_steps: int | None):
        self.config, self.data, self.model, self.method = config, data, model, method
        self.optimizer, self.peak_lr, self.device, self.dist = optimizer, peak_lr, device, dist
        self.state, self.max_steps = state, max_steps
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision.bf16
                         else nullcontext())
        self.steps_per_epoch = max(1, len(self._batches(0)) // config.accumulate)
        # --max-steps alone (no --epochs) sets the schedule's length too
        self.total_steps = (config.epochs * self.steps_per_epoch if config.epochs
                            else max_steps or 0)
        self.budget = config.time_budget
        self.stop_requested = False

    def _batches(self, epoch: int) -> list[list[int]]:
        return epoch_batches(len(self.data.images), self.data.batch, epoch, self.config.seed,
                             self.dist.rank, self.dist.world)

    def fraction(self) -> float:
        if self.budget:
            return self.state["elapsed"] / self.budget
        return self.state["global_step"] / max(1, self.total_steps)

    def finished(self) -> bool:
        if self.max_steps is not None and self.state["global_step"] >= self.max_steps:
            return True
        if self.budget:
            return self.state["elapsed"] >= self.budget
        return self.config.epochs is not None and self.state["epoch"] >= self.config.epochs

    def run(self, checkpoints: Checkpointer, diagnoser: Diagnoser, log, console,
            show: bool) -> bool:
        """Train to the end; True when stopped by a signal (a checkpoint is written)."""
        def on_signal(signum, frame):
            self.stop_requested = True

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
            if _in_main_thread() else {}
        columns = [TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[info]}"),
                   TimeRemainingColumn()]
        self.start_wall = time.perf_counter() - self.state["elapsed"]
        diagnoser.last = time.perf_counter()
        self.method.train()
        try:
            with Progress(*columns, console=console, disable=not show, transient=False) as bar:
                task = bar.add_task("pretraining", info="", total=self.budget
                                    or max(1, self.max_steps or self.total_steps))
                while not self.finished():
                    rec = self.epoch(checkpoints, lambda **kw: bar.update(task, **kw))
                    if self.dist.is_main:
                        warn = diagnoser.after_epoch(rec, self.finished())
                        if warn:
                            console.print(f"[yellow]warning: {warn}")
                        bar.console.print(_epoch_line(rec))
                        log(rec)
                    checkpoints.save(self.state, periodic=self.state["epoch"]
                                     % max(1, self.config.checkpoint_every) == 0)
        except Stop:
            checkpoints.save(self.state)
            return True
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        checkpoints.save(self.state)
        return False

    def epoch(self, checkpoints: Checkpointer, update) -> dict:
        """One epoch (or what is left of it after a resume); its record for metrics.jsonl."""
        cfg, state = self.config, self.state
        batches = self._batches(state["epoch"])[state["step_in_epoch"] * cfg.accumulate:]
        loader = epoch_loader(self.data.dataset, batches, cfg.workers, cfg.seed,
                              self.dist.rank, state["epoch"])
        losses, seen, t_epoch, accum = [], 0, time.perf_counter(), 0
        terms: dict[str, list[float]] = {}  # the method's terms (loss_global, loss_local)
        last_ckpt = time.perf_counter()
        for batch_views in loader:
            if self.dist.any(self.stop_requested):  # all ranks stop at one batch
                raise Stop
            batch_views = [v.to(self.device, memory_format=layout_of(v))
                           for v in batch_views]
            self.method.set_progress(self.fraction())
            with self.autocast:
                loss, stats = self.model(*batch_views)
            for key, value in stats.items():
                terms.setdefault(key, []).append(value)
            (loss / cfg.accumulate).backward()
            accum += 1
            seen += len(batch_views[0]) * self.dist.world
            if accum < cfg.accumulate:
                continue
            accum = 0
            losses.append(self.step(loss))
            ips = seen / max(1e-9, time.perf_counter() - t_epoch)
            update(completed=state["elapsed"] if self.budget else state["global_step"],
                   info=f"ep {state['epoch'] + 1} loss {losses[-1]:.3f} {ips:.0f} img/s")
            if time.perf_counter() - last_ckpt > CHECKPOINT_SECONDS:
                checkpoints.save(state)
                last_ckpt = time.perf_counter()
            if self.finished():
                break
        else:  # the epoch ran to its end
            state["epoch"] += 1
            state["step_in_epoch"] = 0
        frac = self.fraction()
        return {"epoch": state["epoch"], "step": state["global_step"],
                "loss": float(np.mean(losses)) if losses else None,
                **{k: float(np.mean(v)) for k, v in terms.items() if v},
                "lr": lr_at(frac, self.peak_lr, cfg.warmup_fraction),
                "tau": ema_tau_at(frac, cfg.ema_base),
                "images_per_s": seen / max(1e-9, time.perf_counter() - t_epoch),
                "elapsed_s": state["elapsed"]}

    def step(self, loss: torch.Tensor) -> float:
        """The optimiser step at the scheduled LR, the EMA update, the clocks; the loss."""
        frac, state = self.fraction(), self.state
        set_lr(self.optimizer, lr_at(frac, self.peak_lr, self.config.warmup_fraction))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.method.momentum_update(ema_tau_at(frac, self.config.ema_base))
        state["global_step"] += 1
        state["step_in_epoch"] += 1
        state["elapsed"] = self.dist.max(time.perf_counter() - self.start_wall)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value} at step {state['global_step']}; "
                                     "lower --lr or turn off --bf16")
        return value


def _run_line(config: PretrainConfig, facts: dict, dist) -> str:
    grid = facts["feature_grid"]
    arch = f"{config.arch} from {config.init}" if config.arch == "efficientnet-lite0" else \
        f"{config.arch} ×{config.width}"
    size, what = (f"{config.contract.size}³ voxels at {config.spacing:g} mm,", "volumes") \
        if config.volumes else (f"{config.contract.size}px", "images")
    side = "×".join([str(grid)] * (3 if config.volumes else 2))
    return (f"{config.method} · {arch} · {size} "
            f"{config.contract.channels}ch · map {side} · {facts['num_images']} {what} "
            f"({facts['num_skipped']} skipped) · batch {facts['effective_batch_size']}"
            f" · lr {facts['peak_lr']:.3g} ({facts['lr_scaling']} scaling)"
            f"{f' ({dist.world} processes)' if dist.world > 1 else ''} · {facts['device']}")


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
