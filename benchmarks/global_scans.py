"""High-resolution scans whose label is a whole-image matter: what ``--findings`` costs there.

``python benchmarks/local_findings.py --scans radiographs --budget 5m --variant global="--findings global" --variant local="--findings local"``

The radiographs of ``benchmarks/local_findings.py`` (``--scans radiographs``): the same
question (which recipe for high-resolution grayscale scans) on data whose labels are *not* a
small local finding —
chest radiographs of ``clinical_examples/phantoms.py`` at 288 × 320 px: ``no_finding``,
``nodule`` (round opacities of 13–24 px) and ``effusion`` (fluid filling the bottom of a
lung: a large region). Anatomy, exposure, heel effect and noise vary from image to image.
1,500 unlabeled radiographs for pretraining, 300 labelled (100 per class) never seen in
pretraining, 8-bit PNG (the image-folder path).

Each variant is ``cossl-edge pretrain UNLABELED --time-budget B --seed S [options]`` then
``cossl-edge export`` and the **int8** encoder embeds; scored with the project's episodes
(3-way 5-shot, nearest prototype after CL2N with the model's centring, 400 episodes, 15
queries) and the binary task no_finding vs nodule (the local one). Floor: raw pixels at 32,
64 and 128 px. Results: ``benchmarks/results/global_scans.json``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clinical_examples.phantoms import FINDINGS, radiograph  # noqa: E402
from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.evaluation.episodes import evaluate_episodes  # noqa: E402
from cossl_edge.sources import labelled_samples, load_many  # noqa: E402

SHAPE = (288, 320)
EPISODES, QUERIES = 400, 15
RESULTS = ROOT / "benchmarks" / "results" / "global_scans.json"


def write_data(out: Path, unlabeled: int, labeled: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(11)
    for i in range(unlabeled + labeled):
        finding = FINDINGS[i % 3]
        att = radiograph(rng, finding, SHAPE) ** rng.uniform(0.85, 1.2)
        folder = out / "unlabeled" if i < unlabeled else out / "labeled" / finding
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(255 * att).astype(np.uint8)).save(folder / f"r{i:05d}.png")
    (out / "done").write_text("ok\n")


def score(x: np.ndarray, y: list[str], seed: int, centering) -> dict:
    three = evaluate_episodes(x, y, (5,), EPISODES, 3, "proto", QUERIES, seed, centering)
    keep = [i for i, lab in enumerate(y) if lab != "effusion"]
    two = evaluate_episodes(x[keep], [y[i] for i in keep], (5,), EPISODES, 2, "proto",
                            QUERIES, seed, centering)
    return {"3way_5shot": three["shots"]["5"]["accuracy"],
            "nodule_5shot": two["shots"]["5"]["accuracy"]}


def run_radiographs(args) -> None:
    """``local_findings.py --scans radiographs``: ``args`` as its parser gives them (budget,
    seeds, variant, work, unlabeled, labeled, parallel)."""
    variants = dict(v.partition("=")[::2] for v in args.variant) or {"default": ""}
    data = args.work / "data"
    if not (data / "done").exists():
        print(f"writing {args.unlabeled + args.labeled} radiographs into {data}", flush=True)
        write_data(data, args.unlabeled, args.labeled)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    refs, labels, _ = labelled_samples(data / "labeled")
    for side in (32, 64, 128):
        contract = PreprocessContract(channels=1, size=side)
        images, kept, _ = load_many(refs, contract)
        x = contract.normalize(images).reshape(len(images), -1)
        results.setdefault("floors", {})[f"raw-pixels-{side}"] = score(
            x, [labels[i] for i in kept], 0, None)
    jobs = {}
    for name, options in variants.items():
        for seed in args.seeds:
            run = args.work / "runs" / f"{name}-{args.budget}-s{seed}"
            if (run / "checkpoints").exists():
                continue
            cmd = [sys.executable, "-m", "cossl_edge", "pretrain", str(data / "unlabeled"),
                   "--out", str(run), "--time-budget", args.budget, "--seed", str(seed),
                   "--quiet", *shlex.split(options)]
            print("$ cossl-edge " + shlex.join(cmd[3:]), flush=True)
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
            jobs[run] = p
            if not args.parallel:
                p.wait()
    for run, p in jobs.items():
        if p.wait():
            raise SystemExit(f"pretraining {run} failed")
    from cossl_edge.runtime.encoder import Encoder

    for name, options in variants.items():
        for seed in args.seeds:
            run = args.work / "runs" / f"{name}-{args.budget}-s{seed}"
            model = run / "encoder.int8.onnx"
            if not model.exists():
                subprocess.run([sys.executable, "-m", "cossl_edge", "export", str(run),
                                "--no-latency"], check=True, stdout=subprocess.DEVNULL)
            enc = Encoder(model)
            images, kept, _ = load_many(refs, enc.contract)
            x = enc.embed_prepared(images)
            steps = max((json.loads(line).get("step", 0) for line in
                         (run / "metrics.jsonl").read_text().splitlines()), default=0)
            config = json.loads((run / "config.json").read_text())
            rec = {"variant": name, "options": options, "seed": seed, "budget": args.budget,
                   "steps": steps, "size": enc.contract.size, "arch": config.get("arch"),
                   "findings": config.get("findings"), "parallel": args.parallel,
                   **score(x, [labels[i] for i in kept], seed, enc.centering)}
            if enc.has_anomaly_map:  # what fewshot fit does without options, nodule task
                y = np.asarray([labels[i] for i in kept])
                keep = y != "effusion"
                names = ["embedding", "anomaly_map"]
                readings = {n: v[keep] for n, v in enc.read_prepared(images, names).items()}
                auto = evaluate_episodes(readings, list(y[keep]), (5,), EPISODES, 2, "auto",
                                         QUERIES, seed, enc.centering,
                                         normal_class="no_finding")["shots"]["5"]
                rec["nodule_5shot_auto"], rec["auto_chosen"] = auto["accuracy"], auto["chosen"]
            results.setdefault("runs", {})[f"{name}/{args.budget}/s{seed}"] = rec
            print(json.dumps(rec), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    for key, rec in sorted(results["floors"].items()):
        print(key, json.dumps(rec))

