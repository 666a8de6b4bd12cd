"""What the benchmarks that go through the user's path share: a run made by the CLI
(``cossl-edge pretrain`` then ``export``, each skipped when its output exists, so an
interrupted benchmark continues), its step count, and the readings of its ONNX file."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cossl_edge.evaluation.features import downsampled_pixels
from cossl_edge.sources import load_many


def pretrained_int8(unlabeled: Path, run: Path, budget: str, seed: int, options: str) -> Path:
    """``cossl-edge pretrain UNLABELED --out RUN --time-budget B --seed S OPTIONS`` and
    ``cossl-edge export RUN``; the int8 file."""
    if not (run / "encoder.pt").exists():
        cmd = [sys.executable, "-m", "cossl_edge", "pretrain", str(unlabeled), "--out",
               str(run), "--time-budget", budget, "--seed", str(seed), "--quiet",
               *shlex.split(options)]
        print("$ cossl-edge " + shlex.join(cmd[3:]), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    if not (run / "encoder.int8.onnx").exists():
        subprocess.run([sys.executable, "-m", "cossl_edge", "export", str(run),
                        "--no-latency"], check=True, stdout=subprocess.DEVNULL)
    return run / "encoder.int8.onnx"


def steps_of(run: Path) -> int:
    """The last optimisation step ``metrics.jsonl`` records."""
    return max((json.loads(line).get("step", 0) for line in
                (run / "metrics.jsonl").read_text().splitlines()), default=0)


def read_model(model: Path, refs) -> tuple[dict, np.ndarray, list[int], object]:
    """(readings of ``refs`` by name: the embedding, and the anomaly map when the model has
    one; the raw-pixel floor's vectors; indices kept; the encoder) through the model file."""
    from cossl_edge.runtime.encoder import Encoder

    enc = Encoder(model)
    names = ["embedding"] + (["anomaly_map"] if enc.has_anomaly_map else [])
    images, kept, _ = load_many(refs, enc.contract)
    return enc.read_prepared(images, names), downsampled_pixels(images), kept, enc


def untrained_run(run: Path, unlabeled: Path, init: str, size: int, seed: int = 0,
                  normal_model: bool = False) -> Path:
    """An EfficientNet-Lite0 run directory with no training step (``init``: its ImageNet
    weights, or random ones drawn from ``seed``), exported as a run would be; with
    ``normal_model``, its own normal model of ``unlabeled`` first (all the images; else 256
    for calibration). The int8 file; nothing is redone when it exists."""
    import torch

    from cossl_edge import rundir
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.export import export_run
    from cossl_edge.sources import discover
    from cossl_edge.training import normal_stats
    from cossl_edge.training.backbones import build_encoder
    from cossl_edge.training.config import PretrainConfig
    from cossl_edge.training.efficientnet import IMAGENET_MEAN, IMAGENET_STD

    model = run / "encoder.int8.onnx"
    if model.exists():
        return model
    run.mkdir(parents=True, exist_ok=True)
    contract = PreprocessContract(channels=1, size=size, mean=(IMAGENET_MEAN,),
                                  std=(IMAGENET_STD,))
    cfg = PretrainConfig(arch="efficientnet-lite0", init=init, contract=contract, seed=seed)
    torch.manual_seed(seed)
    enc = build_encoder(cfg).eval()
    cfg.save(run / rundir.CONFIG)
    torch.save(enc.state_dict(), run / rundir.ENCODER)
    (run / rundir.FINGERPRINT).write_text(f"{init}-untrained\n")
    samples = discover(unlabeled).samples
    images, _, _ = load_many(samples if normal_model else samples[:256], contract)
    np.save(run / rundir.CALIBRATION, images[:256].astype(np.float16), allow_pickle=False)
    if normal_model:
        stats = normal_stats.compute(enc, images, contract, torch.device("cpu"), seed)
        normal_stats.save(stats, run / rundir.NORMAL_MODEL)
    export_run(run, measure_latency=False)
    return model
