"""Few-shot diagnosis on real solar-cell EL scans (the development split), the user's path.

``python benchmarks/elpv_fewshot.py --budget 10m --seeds 0 1``

1. The 1,838 dev cells of ``elpv-dataset`` as DICOM DX (``benchmarks/elpv_data.py``): 1,238
   unlabeled for pretraining, 600 labelled never seen in pretraining.
2. Per seed: ``cossl-edge pretrain UNLABELED --time-budget B --seed S`` with **no other
   option** (``--variant NAME="OPTIONS"`` adds recipes), ``cossl-edge export`` (int8).
3. The int8 model reads the labelled cells once (embedding, anomaly map); episodes:
   defective (probability ≥ 0.5) vs functional, 5- and 10-shot, 500 episodes, 15 queries per
   class, episode seed = the run's seed; classifiers ``auto`` (what ``fewshot fit`` does
   without options), ``proto`` (the pooled embedding) and ``anomaly`` (the anomaly map).
4. The same episodes for the baselines: raw pixels (the prepared image at 64 px, nearest
   prototype, as ``fewshot eval`` prints it), the ImageNet EfficientNet-Lite0 at 224 px
   (its pooled features, no training: what a user would pick instead of pretraining) and a
   random-init EfficientNet-Lite0 with its own normal model (the same reading, no ImageNet).

Results: ``benchmarks/results/elpv_fewshot.json``; ``docs/benchmarks.md`` has the table.
The other 786 cells of the package are the hidden evaluation's and are never read here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.cli_runs import (  # noqa: E402
    pretrained_int8,
    read_model,
    steps_of,
    untrained_run,
)
from benchmarks.elpv_data import main as write_data  # noqa: E402
from cossl_edge.evaluation.episodes import evaluate_episodes  # noqa: E402
from cossl_edge.sources import labelled_samples, load_many  # noqa: E402

EPISODES, QUERIES, SHOTS = 500, 15, (5, 10)
RESULTS = ROOT / "benchmarks" / "results" / "elpv_fewshot.json"


def episodes(x, labels, kind: str, seed: int, centering=None) -> dict:
    extra = {"normal_class": "functional"} if kind in ("auto", "anomaly") else {}
    res = evaluate_episodes(x, labels, SHOTS, EPISODES, 2, kind, QUERIES, seed, centering,
                            **extra)
    out = {}
    for k, r in res["shots"].items():
        out[f"{k}shot"] = round(100 * r["accuracy"], 2)
        out[f"{k}shot_auc"] = round(r.get("auc", float("nan")), 4)
        if "chosen" in r:
            out[f"{k}shot_chosen"] = r["chosen"]
    return out


def imagenet_features(refs) -> tuple[np.ndarray, list[int]]:
    """Pooled ImageNet EfficientNet-Lite0 features at 224 px (the grey image in R, G, B)."""
    import torch

    from cossl_edge.contract import PreprocessContract
    from cossl_edge.training.efficientnet import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        EfficientNetLiteEncoder,
    )

    contract = PreprocessContract(channels=1, size=224, mean=(IMAGENET_MEAN,),
                                  std=(IMAGENET_STD,))
    images, kept, _ = load_many(refs, contract)
    enc = EfficientNetLiteEncoder(1, "imagenet", freeze_through_tap=False).eval()
    with torch.no_grad():
        x = np.concatenate([enc(torch.from_numpy(contract.normalize(images[i:i + 32]))).numpy()
                            for i in range(0, len(images), 32)])
    return x, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS",
                    help='a recipe beside the default, e.g. resnet10="--arch resnet10"')
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "elpv")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--no-window", action="store_true",
                    help="Data written without a header window (each image windowed alone); "
                    "results under the key nowindow/…")
    args = ap.parse_args()
    data = args.work / "data"
    if not (data / "manifest.json").exists():
        sys.argv = [sys.argv[0], str(data)] + (["--no-window"] if args.no_window else [])
        write_data()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    refs, labels, _ = labelled_samples(data / "labeled")
    variants = {"default": "", **dict(v.partition("=")[::2] for v in args.variant)}
    for name, options in variants.items():
        for seed in args.seeds:
            run = args.work / "runs" / f"{name}-{args.budget}-s{seed}"
            model = pretrained_int8(data / "unlabeled", run, args.budget, seed, options)
            readings, raw, kept, enc = read_model(model, refs)
            y = [labels[i] for i in kept]
            config = json.loads((run / "config.json").read_text())
            steps = steps_of(run)
            report = json.loads((run / "export-report.json").read_text())
            rec = {"variant": name, "options": options, "seed": seed, "budget": args.budget,
                   "steps": steps, "arch": config.get("arch"), "size": enc.contract.size,
                   "bf16": config.get("bf16_resolved"),
                   "int8_agreement": report.get("int8_agreement"),
                   "proto": episodes(readings["embedding"], y, "proto", seed, enc.centering)}
            if "anomaly_map" in readings:
                rec["auto"] = episodes(readings, y, "auto", seed, enc.centering)
                rec["anomaly"] = episodes(readings["anomaly_map"], y, "anomaly", seed)
            rec["raw_pixels_64"] = episodes(raw, y, "proto", seed)
            prefix = "nowindow/" if args.no_window else ""
            results.setdefault("runs", {})[f"{prefix}{name}/{args.budget}/s{seed}"] = rec
            print(json.dumps(rec), flush=True)
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    if not args.no_baselines:
        x, kept = imagenet_features(refs)
        y = [labels[i] for i in kept]
        for seed in args.seeds:
            base = results.setdefault("baselines", {}).setdefault(f"s{seed}", {})
            base["imagenet_lite0_224_proto"] = episodes(x, y, "proto", seed)
            model = untrained_run(args.work / "runs" / f"random-init-s{seed}",
                                  data / "unlabeled", "random", 224, seed, normal_model=True)
            readings, _, kept_r, enc = read_model(model, refs)
            y_r = [labels[i] for i in kept_r]
            base["random_init_lite0_auto"] = episodes(readings, y_r, "auto", seed,
                                                      enc.centering)
            base["random_init_lite0_proto"] = episodes(readings["embedding"], y_r, "proto",
                                                       seed, enc.centering)
            print(json.dumps({f"baselines/s{seed}": base}), flush=True)
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
