"""Scratch or ImageNet init: which start wins on each data set, through the user's path.

``python benchmarks/init_choice.py --budget 10m --seeds 0 1 --datasets digits mnist5k radiographs elpv``

For each data set and seed, two recipes pretrain with the same wall-clock budget through the
CLI (``cossl-edge pretrain UNLABELED --time-budget B --seed S``), are exported, and the
**int8** file reads the labelled images the pretraining never saw:

- ``scratch``: ``--arch resnet10`` (random init, the CPU recipe);
- ``imagenet``: ``--arch efficientnet-lite0 --init imagenet`` (ImageNet weights, blocks up to
  stride 16 frozen, CO-SSL adapts the rest), at the size ``--image-size auto`` gives.

Beside them, on the same episodes: the ImageNet features *before* adaptation (the same
EfficientNet-Lite0 with no training step, exported the same way; what a user would pick
instead of pretraining), and raw pixels (the floor ``fewshot eval`` prints). Which recipe
``--arch auto`` picks for the data set is recorded from :func:`resolve_arch` itself.

Data sets: ``digits``, ``mnist5k`` (``benchmarks/datasets.py``; 10-way 5-shot prototypes),
``radiographs`` (``benchmarks/global_scans.py``'s phantoms; 3-way and nodule vs no finding)
and ``elpv`` (the real EL dev split, ``benchmarks/elpv_data.py``; defective vs functional).
A 2-way task with a normal class is read as ``fewshot fit`` reads it without options
(``auto``). Results: ``benchmarks/results/init_choice.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cli_runs import pretrained_int8, read_model, steps_of, untrained_run  # noqa: E402

from cossl_edge.evaluation.episodes import evaluate_episodes  # noqa: E402
from cossl_edge.sources import labelled_samples  # noqa: E402

EPISODES, QUERIES = 400, 15
RESULTS = ROOT / "benchmarks" / "results" / "init_choice.json"
REFINISHED = "refinished-from.txt"  # in a run made by refinish(): the run it came from
RECIPES = {"scratch": "--arch resnet10",
           "imagenet": "--arch efficientnet-lite0 --init imagenet"}
# data set → (tasks: name → (ways, classes kept or None, normal class or None))
TASKS = {
    "digits": {"10way_5shot": (10, None, None)},
    "mnist5k": {"10way_5shot": (10, None, None)},
    "radiographs": {"3way_5shot": (3, None, None),
                    "nodule_5shot": (2, ("no_finding", "nodule"), "no_finding")},
    "elpv": {"defect_5shot": (2, None, "functional")},
}


def data_dir(name: str, work: Path) -> Path:
    """The data set's folder (``unlabeled/``, ``labeled/<class>/``), written when missing."""
    if name in ("digits", "mnist5k"):
        from datasets import write_split

        out = work / "datasets"
        if not (out / name / "labeled").exists():
            write_split(name, out)
        return out / name
    if name == "radiographs":
        from global_scans import write_data

        out = ROOT / "build" / "global_scans" / "data"
        if not (out / "done").exists():
            write_data(out, 1500, 300)
        return out
    if name == "elpv":
        out = ROOT / "build" / "elpv" / "data"
        if not (out / "manifest.json").exists():
            from elpv_data import main as write_elpv

            sys.argv = [sys.argv[0], str(out)]
            write_elpv()
        return out
    raise SystemExit(f"unknown data set {name!r}; choose from {sorted(TASKS)}")


def scores(readings: dict, labels: list[str], tasks: dict, seed: int, centering) -> dict:
    out = {}
    y_all = np.asarray(labels)
    for task, (ways, classes, normal) in tasks.items():
        keep = np.ones(len(y_all), bool) if classes is None else np.isin(y_all, classes)
        y = list(y_all[keep])
        if normal and "anomaly_map" in readings:
            x, kind, extra = {k: v[keep] for k, v in readings.items()}, "auto", \
                {"normal_class": normal}
        else:
            x, kind, extra = readings["embedding"][keep], "proto", {}
        r = evaluate_episodes(x, y, (5,), EPISODES, ways, kind, QUERIES, seed, centering,
                              **extra)["shots"]["5"]
        out[task] = round(100 * r["accuracy"], 2)
        if "chosen" in r:
            out[f"{task}_chosen"] = r["chosen"]
    return out


def refinish(old: Path, run: Path, unlabeled: Path, budget: str, seed: int,
             options: str) -> None:
    """``run`` from ``old``, a run of the same recipe trained before its finishing steps
    changed: its last checkpoint is copied and resumed with the recipe's options. No step
    of the budget is left, so only what a run does once training ends runs again (the
    BatchNorm statistics, the normal model) — what a new run of the recipe would end with,
    without training it again."""
    shutil.copytree(old, run, ignore=shutil.ignore_patterns("epoch-*.pt", "*.onnx",
                                                            "export-report.json"))
    cmd = [sys.executable, "-m", "cossl_edge", "pretrain", str(unlabeled), "--out", str(run),
           "--time-budget", budget, "--seed", str(seed), "--quiet", "--resume",
           *shlex.split(options)]
    print("$ cossl-edge " + shlex.join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (run / REFINISHED).write_text(old.name + "\n")


def auto_pick(data: Path) -> tuple[str, float | None]:
    """The backbone ``--arch auto`` resolves to on this folder (the CLI's own rule) and the
    images' detail side it read."""
    from cossl_edge.sources import data_detail, discover
    from cossl_edge.training.config import PretrainConfig, resolve_arch
    from cossl_edge.training.dataset import native_side
    from cossl_edge.training.efficientnet import weights_available

    cfg = PretrainConfig(arch="auto")
    samples = discover(data).samples
    detail = data_detail(samples, cfg.contract)
    return resolve_arch(cfg, native_side(samples), True, weights_available(), detail).arch, \
        detail


def _default_options(rec: dict) -> bool:
    """A run of a recipe as the table shows it: its options, an ``--image-size`` aside, are
    the recipe's own (variants such as ``--backbone-lr`` are recorded, not tabled)."""
    if "options" not in rec:
        return True
    words = rec["options"].split()
    if "--image-size" in words:
        i = words.index("--image-size")
        del words[i:i + 2]
    return " ".join(words) == RECIPES[rec["recipe"]]


def table(results: dict, budget: str = "10m") -> str:
    """A markdown table: per data set and task, each recipe's seeds (runs of ``budget``)
    and the floors, and what ``--arch auto`` picks (with the images' detail side)."""
    rows = ["| data set, task | scratch | ImageNet, adapted | ImageNet, before adaptation "
            "| raw pixels | `--arch auto` picks (detail) |", "|---|---|---|---|---|---|"]
    runs, floors = results.get("runs", {}), results.get("floors", {})
    for ds, tasks in TASKS.items():
        for task in tasks:
            def cell(prefix: str, where: dict, task: str = task) -> str:
                vals = [(k.rsplit("/s", 1)[1], v[task]) for k, v in sorted(where.items())
                        if k.startswith(prefix) and task in v
                        and v.get("budget", budget) == budget and _default_options(v)]
                if not vals:
                    return "–"
                mean = sum(v for _, v in vals) / len(vals)
                return f"{mean:.1f} ({', '.join(f'{v:.1f}' for _, v in vals)})"
            pick = results.get("auto_pick", {}).get(ds, "?")
            detail = results.get("detail", {}).get(ds)
            pick += f" ({detail:.0f} px)" if detail is not None else ""
            rows.append(f"| {ds}, {task} | {cell(f'{ds}/scratch', runs)} | "
                        f"{cell(f'{ds}/imagenet', runs)} | "
                        f"{cell(f'{ds}/imagenet-untrained', floors)} | "
                        f"{cell(f'{ds}/raw-pixels', floors)} | {pick} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--datasets", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--set", action="append", default=[], metavar="RECIPE=OPTIONS",
                    help='extra options for a recipe, e.g. imagenet="--image-size 112"')
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "init_choice")
    ap.add_argument("--refinish", metavar="SUFFIX", help="A run not made yet whose variant "
                    "named with SUFFIX exists (e.g. _keep-bn-stats: trained before the "
                    "finishing steps changed) is made from it: its last checkpoint resumed, "
                    "no step left, only the finishing steps run (see refinish()).")
    ap.add_argument("--table", action="store_true", help="Print the results (the runs of "
                    "--budget) as a markdown table and stop.")
    ap.add_argument("--picks", action="store_true", help="Record what --arch auto picks on "
                    "each data set (and the detail it read) without training, and stop.")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text()), args.budget))
        return
    if args.picks:
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        for ds in args.datasets:
            pick, detail = auto_pick(data_dir(ds, args.work) / "unlabeled")
            results.setdefault("auto_pick", {})[ds] = pick
            results.setdefault("detail", {})[ds] = detail
            print(ds, pick, detail)
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
        return
    extra = dict(v.partition("=")[::2] for v in args.set)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for ds in args.datasets:
        data = data_dir(ds, args.work)
        refs, labels, _ = labelled_samples(data / "labeled")
        for seed in args.seeds:
            for recipe in args.recipes:
                options = f"{RECIPES[recipe]} {extra.get(recipe, '')}".strip()
                tag = extra.get(recipe, "").replace(" ", "").replace("--", "_") or ""
                run = args.work / ds / f"{recipe}{tag}-{args.budget}-s{seed}"
                old = args.work / ds / f"{recipe}{tag}{args.refinish}-{args.budget}-s{seed}"
                if args.refinish and not run.exists() and (old / "encoder.pt").exists():
                    refinish(old, run, data / "unlabeled", args.budget, seed, options)
                model = pretrained_int8(data / "unlabeled", run, args.budget, seed, options)
                readings, raw, kept, enc = read_model(model, refs)
                y = [labels[i] for i in kept]
                steps = steps_of(run)
                rec = {"dataset": ds, "recipe": recipe, "options": options, "seed": seed,
                       "budget": args.budget, "steps": steps, "size": enc.contract.size,
                       "load_average": os.getloadavg()[0],
                       **({"refinished_from": (run / REFINISHED).read_text().strip()}
                          if (run / REFINISHED).exists() else {}),
                       **scores(readings, y, TASKS[ds], seed, enc.centering)}
                results.setdefault("runs", {})[f"{ds}/{recipe}{tag}/{args.budget}/s{seed}"] = rec
                print(json.dumps(rec), flush=True)
                if recipe == "imagenet":  # the same network before adaptation, same size
                    model = untrained_run(args.work / ds / f"untrained-{enc.contract.size}",
                                          data / "unlabeled", "imagenet", enc.contract.size)
                    r0, _, kept0, enc0 = read_model(model, refs)
                    results.setdefault("floors", {})[
                        f"{ds}/imagenet-untrained-{enc.contract.size}/s{seed}"] = scores(
                        {"embedding": r0["embedding"]}, [labels[i] for i in kept0],
                        TASKS[ds], seed, enc0.centering)
                results.setdefault("floors", {})[f"{ds}/raw-pixels-64/s{seed}"] = scores(
                    {"embedding": raw}, y, TASKS[ds], seed, None)
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
        pick, detail = auto_pick(data / "unlabeled")
        results.setdefault("auto_pick", {})[ds] = pick
        results.setdefault("detail", {})[ds] = detail
        RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True))
    print(json.dumps(results.get("floors", {}), indent=1))


if __name__ == "__main__":
    main()
