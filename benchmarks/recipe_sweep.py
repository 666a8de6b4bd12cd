"""Recipe sweep: which pretraining settings give an embedding good for few-shot prototypes?

``python benchmarks/recipe_sweep.py --dataset digits --budget 120 --set width=0.25 --set lr=3e-3``

For each setting: pretrain on the data set's images (unlabeled), embed every image with the
pooled backbone, and score 10-way 5-shot nearest-prototype accuracy after centring and L2
normalisation (CL2N, 200 episodes, 15 queries, seed 0), the embedding's effective rank, and
a 50/50 linear probe. Raw pixels and the random-init encoder are scored the same way.
Results are appended as JSON lines to ``--log`` (default benchmarks/results/recipe.jsonl).

``python benchmarks/recipe_sweep.py --report`` turns that log into the ``recipe`` section of
docs/benchmarks.md: one table per data set, every run with its settings (the findings and the
chosen defaults are discussed in docs/recipe.md).
"""

from __future__ import annotations

import os

# before torch loads: no network call from albumentations, no OpenMP spin-waiting (cli.py)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # datasets.py, doc_section.py

from cossl_edge.contract import PreprocessContract
from cossl_edge.evaluation.episodes import evaluate_episodes
from cossl_edge.fewshot.logreg import fit_logistic, predict_logistic_proba
from cossl_edge.training.backbones import build_encoder
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.diagnostics import effective_rank, stratified_halves
from cossl_edge.training.loop import pretrain


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 1] (N×H×W) and integer labels (benchmarks/datasets.py)."""
    from datasets import load

    return load(name)


def write_folder(images: np.ndarray, labels: np.ndarray, root: Path) -> Path:
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        d = root / str(y)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(d / f"{i:05d}.png")
    return root


def embed(config: PretrainConfig, weights: Path | None, x: np.ndarray) -> np.ndarray:
    torch.manual_seed(config.seed)
    enc = build_encoder(config)
    if weights is not None:
        enc.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    enc.eval()
    t = torch.from_numpy(x)
    with torch.no_grad():
        return torch.cat([enc(t[i:i + 512]) for i in range(0, len(t), 512)]).numpy()


def score(z: np.ndarray, y: np.ndarray) -> dict:
    labels = [str(v) for v in y]
    res = evaluate_episodes(z, labels, shots=(5,), episodes=200, seed=0,
                            centering=z.mean(axis=0))["shots"]["5"]
    tr, te = stratified_halves(y, 0)
    mu, sd = z[tr].mean(0), z[tr].std(0) + 1e-6
    w, b = fit_logistic((z[tr] - mu) / sd, y[tr], int(y.max()) + 1, C=1.0)
    probe = float((predict_logistic_proba((z[te] - mu) / sd, w, b).argmax(1) == y[te]).mean())
    return {"fewshot5": res["accuracy"], "fewshot5_ci": res["ci95"], "probe": probe,
            "rank": effective_rank(z)}


START, END = "<!-- recipe:start -->", "<!-- recipe:end -->"
DEFAULTS = {"method": "co-simclr", "arch": "resnet10", "width": 0.25}


def _setting(rec: dict) -> str:
    # Records before "recipe" was logged were made when the default was ResNet-18.
    resolved = rec.get("recipe") or {"arch": rec["overrides"].get("arch", "resnet18")}
    changed = {k: v for k, v in {**rec["overrides"], **resolved}.items()
               if k in rec["overrides"] or k in ("arch", "hflip", "rotate")}
    changed = {k: v for k, v in changed.items() if DEFAULTS.get(k) != v}
    if rec["name"] in ("raw-pixels", "random-init"):
        arch = {**DEFAULTS, **rec["overrides"], **(rec.get("recipe") or {})}
        return "–" if rec["name"] == "raw-pixels" else f"{arch['arch']} ×{arch['width']}"
    return ", ".join(f"{k}={v}" for k, v in changed.items() if k != "method") or "default"


def write_report(log: Path) -> None:
    """Every logged run as a table row, grouped by data set, in log order."""
    from doc_section import replace_section

    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("tag") != "smoke"]
    lines = [START, "## Recipe sweep (`benchmarks/recipe_sweep.py`)", "",
             "Pretraining on all images of the set (labels unused), then 10-way 5-shot "
             "nearest-prototype accuracy after centring and L2 normalisation (CL2N, 200 "
             "episodes, ± 95% CI over episodes), a 50/50 linear probe and the effective rank, "
             "on the pooled backbone. One seed per row unless the settings say otherwise; two "
             "seeds of the default differ by 1.5 points at 150 s. The defaults are "
             "co-simclr, ResNet-10 ×0.25, batch 128, AdamW lr 2e-3, T 0.2, min_scale 0.2 "
             "(older rows name the settings they changed, ResNet-18 included). Rows without "
             "an `hflip` setting trained with a horizontal flip of 0.5, the default before "
             "`--hflip auto` (no flip for one-channel images); rows without a `rotate` "
             "setting trained without rotation, the default before `--rotate auto` (±15° "
             "for one-channel images). Analysis and "
             "the chosen recipe: `docs/recipe.md`. Regenerate with "
             "`python benchmarks/recipe_sweep.py --report`.", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        lines += [f"### {dataset}", "",
                  "| tag | budget | size | encoder | settings | steps | 5-shot CL2N % "
                  "| linear probe % | eff. rank |", "|---|---|---|---|---|---|---|---|---|"]
        for r in records:
            if r["dataset"] != dataset:
                continue
            budget = f"{r['budget']:.0f} s" if r.get("budget") else f"{r.get('max_steps')} steps"
            lines.append(
                f"| {r.get('tag') or '–'} | {budget} | {r['size']} | {r['name']} | "
                f"{_setting(r)} | {r.get('steps', '–')} | {100 * r['fewshot5']:.1f} ± "
                f"{100 * r['fewshot5_ci']:.1f} | {100 * r['probe']:.1f} | {r['rank']:.0f} |")
        lines.append("")
    lines.append(END)
    replace_section(START, END, "\n".join(lines) + "\n")
    print(f"{len(records)} runs → docs/benchmarks.md (recipe section)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist5k"])
    p.add_argument("--budget", type=float, default=600.0, help="seconds of pretraining")
    p.add_argument("--steps", type=int, default=None,
                   help="train for this many steps instead of --budget (load-independent)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--set", action="append", default=[], help="config field=value")
    p.add_argument("--floors", action="store_true", help="also score raw pixels, random init")
    p.add_argument("--log", default=str(Path(__file__).resolve().parent / "results"
                                        / "recipe.jsonl"))
    p.add_argument("--tag", default="")
    p.add_argument("--report", action="store_true",
                   help="write the log's tables into docs/benchmarks.md and exit")
    args = p.parse_args()
    if args.report:
        write_report(Path(args.log))
        return

    images, y = load_dataset(args.dataset)
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = json.loads(v) if v[:1] in "0123456789-[{tn" or v in ("true", "false") \
            else v
    contract = PreprocessContract(size=args.size)
    budget = None if args.steps else args.budget
    cfg = PretrainConfig(contract=contract, time_budget=budget, **overrides)
    x = contract.normalize(np.stack([contract.prepare(im) for im in images]))
    log = Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)

    def record(name: str, result: dict) -> None:
        rec = {"dataset": args.dataset, "name": name, "tag": args.tag, "budget": budget,
               "max_steps": args.steps,
               "recipe": {"arch": cfg.arch, "width": cfg.width, "stem": cfg.resolved_stem(),
                          "hflip": cfg.resolved_hflip(), "rotate": cfg.resolved_rotate()},
               "size": args.size, "overrides": overrides, **result}
        print(json.dumps(rec))
        with log.open("a") as f:
            f.write(json.dumps(rec) + "\n")

    if args.floors:
        record("raw-pixels", score(x.reshape(len(x), -1), y))
        record("random-init", score(embed(cfg, None, x), y))
    with tempfile.TemporaryDirectory() as tmp:
        data = write_folder(images, y, Path(tmp) / "data")
        t0 = time.time()
        summary = pretrain(cfg, data, Path(tmp) / "run", progress=False,
                           max_steps=args.steps)
        wall = time.time() - t0
        r = score(embed(cfg, Path(tmp) / "run" / "encoder.pt", x), y)
        r.update(steps=summary["steps"], epochs=summary["epochs"], wall_s=round(wall, 1))
        record(cfg.method, r)


if __name__ == "__main__":
    main()
