"""A first look at 3D CO-SSL on the 3D CT phantoms: does a short ``pretrain --volumes`` run
give series embeddings that tell nodule from no nodule better than a random-init 3D encoder
of the same shape and than raw voxels? Not the 3D benchmark the volumes work asks for (no
export, no 2D slice path, one seed, a short budget): a check that it learns at all.

``python benchmarks/analysis/volumes_first_look.py --budget 4m --seed 0``

Unlabeled: ``--unlabeled`` series of ``clinical_examples.ct_volumes`` (seed 100 + seed);
labelled: ``--labeled`` other series (seed 200 + seed), never seen in pretraining. Each
labelled series is read as the run reads one (``cossl_edge.volumes``, the run's spacing and
window), resized whole to the run's cube, and embedded by the torch encoder (pooled);
5-shot nearest CL2N prototype, 400 episodes. Results: ``benchmarks/results/
volumes_first_look.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from clinical_examples.ct_volumes import write_series_set  # noqa: E402
from cossl_edge.evaluation.episodes import evaluate_episodes  # noqa: E402
from cossl_edge.volumes.discovery import discover_volumes, load_volumes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "volumes_first_look.json"


def labelled_cubes(folder: Path, config) -> tuple[np.ndarray, list[str]]:
    from cossl_edge.training.volume_data import MIN_DEPTH
    from cossl_edge.training.volume_views import whole_cube

    labels = {r["series"]: r["label"] for r in csv.DictReader((folder / "labels.csv").open())}
    found = discover_volumes(folder)
    cubes, ys = [], []
    for ref, vol in load_volumes(found.volumes, config.contract.window,
                                 (config.spacing,) * 3, MIN_DEPTH):
        if hasattr(vol, "array"):
            cubes.append(whole_cube(vol.array, config.contract.size))
            ys.append(labels[ref.paths[0].parent.relative_to(folder).as_posix()])
    return np.stack(cubes), ys


def embed(encoder, cubes: np.ndarray, config) -> np.ndarray:
    import torch

    from cossl_edge.training.volume_views import normalize_cubes

    x = normalize_cubes(cubes, config.contract.mean[0], config.contract.std[0])
    encoder.eval()
    with torch.no_grad():
        return np.concatenate([encoder(torch.from_numpy(x[i:i + 8])).numpy()
                               for i in range(0, len(x), 8)])


def score(x: np.ndarray, y: list[str], seed: int) -> float:
    r = evaluate_episodes(x, y, (5,), 400, 2, "proto", 15, seed)["shots"]["5"]
    return round(100 * r["accuracy"], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="4m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--unlabeled", type=int, default=60)
    ap.add_argument("--labeled", type=int, default=40)
    ap.add_argument("--size", type=int, default=96, help="phantom slice side, px")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "volumes_first_look")
    args = ap.parse_args()
    import torch

    from cossl_edge.export.loaded_run import load_run
    from cossl_edge.training.backbones import build_encoder

    unl, lab = args.work / f"unlabeled-s{args.seed}", args.work / f"labeled-s{args.seed}"
    if not (unl / "labels.csv").exists():
        write_series_set(unl, args.unlabeled, 100 + args.seed, args.size)
    if not (lab / "labels.csv").exists():
        write_series_set(lab, args.labeled, 200 + args.seed, args.size)
    run = args.work / f"run-{args.budget}-s{args.seed}"
    if not (run / "encoder.pt").exists():
        subprocess.run([sys.executable, "-m", "cossl_edge", "pretrain", str(unl), "--volumes",
                        "--out", str(run), "--time-budget", args.budget, "--seed",
                        str(args.seed), "--quiet"], check=True)
    loaded = load_run(run)
    config = loaded.config
    cubes, y = labelled_cubes(lab, config)
    torch.manual_seed(args.seed)
    random_init = build_encoder(config, pretrained=False)
    rec = {"budget": args.budget, "seed": args.seed, "series": len(y),
           "nodule": y.count("nodule"), "cube": config.contract.size,
           "spacing_mm": config.spacing,
           "steps": max(json.loads(line).get("step", 0) for line in
                        (run / "metrics.jsonl").read_text().splitlines()),
           "pretrained": score(embed(loaded.encoder, cubes, config), y, args.seed),
           "random_init": score(embed(random_init, cubes, config), y, args.seed),
           "raw_voxels_16": score(torch.nn.functional.interpolate(
               torch.from_numpy(cubes[:, None].astype(np.float32)), size=(16,) * 3,
               mode="trilinear").flatten(1).numpy(), y, args.seed)}
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[f"{args.budget}/s{args.seed}"] = rec
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
