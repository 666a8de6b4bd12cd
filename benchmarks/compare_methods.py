"""Does CO-SSL beat its base method here, and is it more robust? (issue "Evaluation")

``python benchmarks/compare_methods.py --budget 10m --seeds 3 --datasets digits mnist5k``

For each data set (``benchmarks/datasets.py``: pretrain on the unlabeled split, evaluate on
the held-out labelled split) and seed: pretrain ``co-byol``, ``byol``, ``co-simclr`` and
``simclr`` with the same wall-clock budget and the project's default recipe at 32 px, add a
random-init encoder and raw pixels as floors, and evaluate all of them with the same
protocol (:mod:`cossl_edge.evaluation.protocol`, evaluation seed = run seed; PGD at ε 1, 2,
4 /255 on the first ``--pgd-episodes`` 5-shot episodes, ``--pgd-steps`` steps, when asked).
Writes a table (mean ± 95% CI over seeds, Student t), the CO − base differences, and plots
into the
``compare`` section of ``docs/benchmarks.md``; every record into
``benchmarks/results/compare_methods.json``. Finished runs are cached in ``--work``, so an
interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from compare_report import write_report
from datasets import DATASETS, write_split

from cossl_edge.commands.pretrain import parse_duration
from cossl_edge.contract import PreprocessContract
from cossl_edge.evaluation.features import PixelFeatures
from cossl_edge.evaluation.protocol import EvaluationSettings, drop_at, evaluate
from cossl_edge.progress import self_closing_bar as progress_factory
from cossl_edge.sources import labelled_samples, load_many
from cossl_edge.training.backbones import build_encoder
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.diagnostics import effective_rank
from cossl_edge.training.loop import pretrain
from cossl_edge.training.method_list import (
    DEFAULT_METHOD,
    METHODS,
    all_options,
    method_info,
    method_names,
)
from cossl_edge.training.run_features import RunFeatures

FLOORS = ("random-init", "raw-pixels")
PGD_EPS = (1 / 255, 2 / 255, 4 / 255)
PROTOCOL = 3  # bump when the evaluation changes, so cached results are evaluated again
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    methods = method_names()  # the method list: every listed method is a choice
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", default="10m", help="Wall-clock pretraining budget per run "
                    "(e.g. 10m, 90s).")
    ap.add_argument("--seeds", type=int, default=3, help="Seeds per method (0..N-1).")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--methods", nargs="+", default=methods, choices=methods,
                    help="Methods to compare (from the method list) [default: all].")
    ap.add_argument("--size", type=int, default=32, help="Input side in pixels.")
    ap.add_argument("--episodes", type=int, default=200, help="Few-shot episodes per K.")
    ap.add_argument("--pgd-episodes", type=int, default=0, help="Few-shot episodes whose "
                    "queries are attacked by PGD at ε 1, 2, 4 /255 (e.g. 10; a few minutes "
                    "per encoder on two CPU cores) [default: 0, no PGD].")
    ap.add_argument("--pgd-steps", type=int, default=5, help="PGD steps (size 2.5·ε/steps).")
    ap.add_argument("--no-floors", action="store_true", help="Skip the random-init and "
                    "raw-pixel floors (a sweep that already has them elsewhere).")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast in pretraining.")
    ap.add_argument("--data-path-before", action="store_true", help="The training data "
                    "path as before the batched views (views image by image, albumentations' Affine "
                    "rotation, OpenCV's thread pool, diagnostics every epoch), for a "
                    "before/after on one machine; use its own --work.")
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "compare",
                    help="Data sets, run directories and cached results.")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="Override a PretrainConfig field for every method (a sweep: "
                    "w_s, min_scale, local_grid, local_target, width, lr, ...). Runs are "
                    "cached per set of overrides; docs are then written only with --docs.")
    ap.add_argument("--docs", type=Path, default=None,
                    help="Markdown file for the tables [default: docs/benchmarks.md "
                    "without --set].")
    ap.add_argument("--results", type=Path, default=None, help="JSON of every record "
                    "[default: benchmarks/results/compare_methods[-<overrides>].json].")
    ap.add_argument("--smoke", action="store_true", help="Label the output a smoke run "
                    "(implied by a budget under 5 minutes).")
    args = ap.parse_args(argv)
    args.budget_s = parse_duration(args.budget)
    args.smoke = args.smoke or args.budget_s < 300
    args.overrides = parse_overrides(args.set)
    tag = "-".join(f"{k}={v}" for k, v in sorted(args.overrides.items())) or "default"
    args.tag = re.sub(r"[^\w.=-]", "_", tag)
    if args.docs is None and not args.overrides:
        args.docs = ROOT / "docs" / "benchmarks.md"
    suffix = "" if not args.overrides else "-" + args.tag
    args.results = args.results or ROOT / "benchmarks" / "results" / f"compare_methods{suffix}.json"
    return args


def parse_overrides(items: list[str]) -> dict:
    """['w_s=0.5', 'local_target=g1'] → {'w_s': 0.5, 'local_target': 'g1'} (JSON values)."""
    known = ({f.name for f in dataclasses.fields(PretrainConfig)} | set(all_options())) \
        - {"contract", "method", "seed", "method_options"}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(known)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def base_config(method: str, seed: int, args: argparse.Namespace) -> PretrainConfig:
    """The project's default recipe; only what the comparison fixes is set here."""
    config = PretrainConfig(method=method, seed=seed, time_budget=args.budget_s,
                            contract=PreprocessContract(channels=1, size=args.size),
                            device=args.device, bf16=args.bf16)
    # w_s = 0 is what makes a base method; an override of w_s is for the CO variants only
    info = method_info(method)
    overrides = {k: v for k, v in args.overrides.items()
                 if k != "w_s" or not info.is_base}
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    own = {o.name for o in info.options}
    options = {k: v for k, v in overrides.items() if k not in fields and k in own}
    overrides = {k: v for k, v in overrides.items() if k in fields}
    return dataclasses.replace(config, method_options=options, **overrides)


def load_labelled(folder: Path, contract: PreprocessContract) -> tuple[np.ndarray, list[str]]:
    samples, labels, _ = labelled_samples(folder)
    images, kept, skipped = load_many(samples, contract)
    if skipped:
        raise SystemExit(f"{len(skipped)} unreadable images in {folder}")
    return images, [labels[i] for i in kept]


class _Capture:
    """Wraps an extractor to keep the clean embeddings (first call) for the effective rank."""

    def __init__(self, inner) -> None:
        self.inner, self.first = inner, None
        self.contract, self.description = inner.contract, inner.description

    def __call__(self, prepared, advance=None):
        out = self.inner(prepared, advance)
        if self.first is None:
            self.first = out.embeddings
        return out

    def __getattr__(self, name):  # ``attack`` (PGD) when the inner extractor has gradients
        return getattr(self.inner, name)


def extractor_for(name: str, seed: int, split, args, folder: Path) -> tuple[object, dict]:
    """The encoder to evaluate and what its pretraining cost (empty for the floors). A run
    that finished with the same pretraining settings is reused, not trained again."""
    config = base_config(name if name in METHODS else DEFAULT_METHOD, seed, args)
    if name == "raw-pixels":
        return PixelFeatures(config.contract), {}
    if name == "random-init":
        torch.manual_seed(seed)
        return RunFeatures(build_encoder(config), config.contract, {"kind": "random-init"}), {}
    run_dir, done = folder / "run", folder / "pretrain.json"
    key = {"config": config.to_dict(), "data": split.name}
    if done.exists() and _comparable(json.loads(done.read_text())["key"]) == _comparable(key):
        return RunFeatures.from_run_dir(run_dir), json.loads(done.read_text())["cost"]
    if run_dir.exists():  # a run that did not finish, or other settings: start again
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    summary = pretrain(config, split.unlabeled, run_dir, progress=True)
    if summary["stopped"]:  # a signal stopped it: not the run asked for; nothing is cached
        raise SystemExit(f"{run_dir}: pretraining was stopped at step {summary['steps']}; "
                         "run the comparison again (this run starts over)")
    facts = json.loads((run_dir / "config.json").read_text())
    cost = {"steps": summary["steps"], "epochs": summary["epochs"],
            "train_s": summary["elapsed_s"], "wall_s": round(time.perf_counter() - t0, 1),
            "images_per_s": summary["steps"] * facts["effective_batch_size"]
            / max(1e-9, summary["elapsed_s"]),
            "recipe": {k: facts.get(k) for k in ("arch", "width", "batch_size", "lr",
                                                 "w_s_resolved", "feature_grid", "min_scale")}}
    done.write_text(json.dumps({"key": key, "cost": cost}))
    return RunFeatures.from_run_dir(run_dir), cost


def _comparable(key: dict) -> dict:
    """A pretraining key as it compares: runs recorded before ``method_options`` existed hold
    None there, which trains what {} does (a refactor kept every weight)."""
    config = dict(key["config"])
    config["method_options"] = config.get("method_options") or {}
    return {**key, "config": config}


def run_one(name: str, seed: int, split, args, images, labels) -> dict:
    """One encoder × seed, pretrained if needed and evaluated; cached in the work folder."""
    folder = args.work / split.name / args.tag / f"{name}-s{seed}"
    cached = folder / "result.json"
    key = {"budget_s": args.budget_s, "size": args.size, "episodes": args.episodes,
           "bf16": args.bf16, "protocol": PROTOCOL, "overrides": args.overrides}
    if args.data_path_before:
        key["data_path"] = "before issue 16"
    if args.pgd_episodes:  # records without PGD stay valid for runs that ask for none
        key["pgd"] = [args.pgd_episodes, args.pgd_steps]
    if cached.exists():
        record = json.loads(cached.read_text())
        if record.get("key") == key:
            return record
    folder.mkdir(parents=True, exist_ok=True)
    extractor, cost = extractor_for(name, seed, split, args, folder)
    capture = _Capture(extractor)
    pgd = PGD_EPS if args.pgd_episodes else ()
    settings = EvaluationSettings(seed=seed, episodes=args.episodes,
                                  noise_levels=(0.1, 0.2, 0.3), mask_levels=(0.25, 0.5, 0.75),
                                  pgd_eps=pgd, pgd_episodes=max(1, args.pgd_episodes),
                                  pgd_steps=args.pgd_steps)
    t0 = time.perf_counter()
    result = evaluate(capture, images, labels, settings, progress=progress_factory)
    record = {"key": key, "dataset": split.name, "encoder": name, "seed": seed, "cost": cost,
              "eval_s": round(time.perf_counter() - t0, 1),
              "effective_rank": effective_rank(capture.first), "metrics": flat(result),
              "result": result}
    cached.write_text(json.dumps(record, indent=1))
    return record


def flat(result: dict) -> dict:
    """The numbers the comparison tables show, for one encoder and seed."""
    shot5 = result["fewshot"]["shots"].get("5", {})
    red = result["redundancy"]
    out = {"fewshot5": shot5.get("accuracy"), "fewshot5_ci": shot5.get("ci95"),
           "probe": result["linear_probe"]["accuracy"], "knn": result["knn"]["accuracy"],
           "redundancy": red["mean"] if red["available"] else None,
           "drop_mask50": drop_at(result["robustness"]["masking"], 0.5),
           "drop_noise02": drop_at(result["robustness"]["noise"], 0.2)}
    pgd = result["robustness"].get("pgd", {})
    for eps in PGD_EPS:  # few-shot accuracy under attack (the clean point is pgd_clean)
        name = f"pgd{round(eps * 255)}"
        out[name] = (pgd["accuracy"][pgd["levels"].index(eps)]
                     if pgd.get("available") and eps in pgd["levels"] else None)
    out["pgd_clean"] = pgd["accuracy"][0] if pgd.get("available") else None
    return out


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": datetime.date.today().isoformat()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 1)
    return info


def main() -> None:
    args = parse_args()
    if args.data_path_before:
        from loop_throughput import emulate_before

        emulate_before()
    records = []
    for name in args.datasets:
        split = write_split(name, args.work / "data")
        contract = base_config("byol", 0, args).contract
        images, labels = load_labelled(split.labeled, contract)
        n_pretrain = len(list(split.unlabeled.glob("*.png")))
        for seed in range(args.seeds):
            for encoder in (*args.methods, *(() if args.no_floors else FLOORS)):
                rec = run_one(encoder, seed, split, args, images, labels)
                rec["n_labeled"], rec["n_pretrain"] = len(labels), n_pretrain
                records.append(rec)
                m = rec["metrics"]
                pgd = " ".join(f"{k} {m[k]:.3f}" for k in ("pgd1", "pgd2", "pgd4")
                               if m.get(k) is not None)
                print(f"{name} s{seed} {encoder:11s} 5-shot {m['fewshot5']:.3f} "
                      f"probe {m['probe']:.3f} kNN {m['knn']:.3f} {pgd} "
                      f"({rec['cost'].get('steps', '-')} steps)", flush=True)
    command = "python benchmarks/compare_methods.py " + " ".join(sys.argv[1:])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"command": command, "machine": machine(),
                                        "records": records}, indent=1))
    if args.docs is not None:
        write_report(records, args, command.strip(), machine())
        print(f"tables and plots → {args.docs}")
    print(f"records → {args.results}")


if __name__ == "__main__":
    main()
