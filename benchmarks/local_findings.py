"""Scans whose label is a small local finding: does pretraining beat raw pixels there?

``python benchmarks/local_findings.py --budget 10m --seeds 2 --variant default= --variant "local=--findings local"``

Data: ``clinical_examples/finding_scans.py`` (288 px 12-bit DICOM scans, a texture unique to
each image, regular structures, brightness and gradients that must not matter; the label is
a crack, a blob or a faint patch covering at most 2% of the image): 3,000 unlabeled scans for
pretraining and 400 labelled ones (half ``normal``, half ``defective`` in grades 1–3) that
the encoder never sees. Written once into ``--work``.

Each variant is a set of ``cossl-edge pretrain`` options, run exactly as a user runs it:
``cossl-edge pretrain UNLABELED --time-budget B --seed S [options]``, then
``cossl-edge export RUN --local-map`` and the **int8** encoder embeds the labelled scans.
Scored with the project's episode protocol
(:func:`cossl_edge.evaluation.episodes.evaluate_episodes`):
defective vs normal, 2-way 1- and 5-shot, nearest prototype after CL2N with the model's
centring (what ``cossl-edge fewshot eval`` does), 400 episodes, 15 queries, episode seed =
run seed; the four grades 4-way 5-shot the same way; and the local (patch-memory)
classifier when the runtime has one. Floors, same protocol: raw pixels at 32, 64 and 128 px
(the best of the three is the floor) and the random-init encoder of the variant.

``--scans radiographs`` asks the same question where the label is a whole-image matter:
the chest radiograph phantoms of ``benchmarks/global_scans.py`` (its own data, scores and
results file).

Finished runs are cached in ``--work``; results go to ``benchmarks/results/local_findings.json``
and, with ``--docs``, to the ``local-findings`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_findings_docs import write_docs  # noqa: E402

from clinical_examples.finding_scans import read_boxes, write_dataset  # noqa: E402
from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.evaluation.episodes import evaluate_episodes  # noqa: E402
from cossl_edge.sources import labelled_samples, load_many  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "local_findings.json"
EPISODES, QUERIES = 400, 15


# --scans: the finding scans (this module) or the radiograph phantoms, whose label is a
# whole-image matter (benchmarks/global_scans.py): the same question on the other kind of label
DEFAULTS = {"findings": dict(budget="10m", seeds=[0, 1], work=ROOT / "build" / "local_findings",
                             unlabeled=3000, labeled=400),
            "radiographs": dict(budget="5m", seeds=[0], work=ROOT / "build" / "global_scans",
                                unlabeled=1500, labeled=300)}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", choices=sorted(DEFAULTS), default="findings",
                    help="findings: labels of a small local finding (default); radiographs: "
                    "labels of the whole image (benchmarks/global_scans.py)")
    ap.add_argument("--budget", help="Pretraining budget per run (10m, 90s; radiographs 5m).")
    ap.add_argument("--seeds", type=int, nargs="+", help="Run seeds (0 1; radiographs 0).")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS",
                    help="A named set of `cossl-edge pretrain` options (repeatable); "
                    "'default=' is the recipe with no option.")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "build" / "findings",
                    help="Benchmark data (generated here when missing).")
    ap.add_argument("--unlabeled", type=int)
    ap.add_argument("--labeled", type=int)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--docs", action="store_true", help="Write the docs/benchmarks.md section.")
    ap.add_argument("--floors-only", action="store_true")
    ap.add_argument("--parallel", action="store_true", help="radiographs: pretrain the "
                    "variants at the same time (equal share of the CPU).")
    args = ap.parse_args()
    for key, value in DEFAULTS[args.scans].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.variants = dict(v.partition("=")[::2] for v in args.variant) or {"default": ""}
    return args


def ensure_data(args: argparse.Namespace) -> None:
    if (args.data / "findings.csv").exists():
        return
    print(f"writing the benchmark scans into {args.data} (once)", flush=True)
    write_dataset(args.data, args.unlabeled, args.labeled, seed=0)


def cli(*argv: str) -> None:
    cmd = [sys.executable, "-m", "cossl_edge", *argv]
    print("$ cossl-edge " + shlex.join(argv), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def labelled(args, contract: PreprocessContract) -> tuple[np.ndarray, list[str], list[str]]:
    refs, labels, _ = labelled_samples(args.data / "labeled")
    images, kept, skipped = load_many(refs, contract)
    if skipped:
        raise SystemExit(f"{len(skipped)} unreadable labelled scans")
    table = read_boxes(args.data)
    grades = [str(table[refs[i].path.relative_to(args.data).as_posix()][1]) for i in kept]
    return images, [labels[i] for i in kept], grades


def score(x: np.ndarray, y: list[str], grades: list[str], seed: int,
          centering: np.ndarray | None) -> dict:
    binary = evaluate_episodes(x, y, (1, 5), EPISODES, 2, "proto", QUERIES, seed, centering)
    four = evaluate_episodes(x, grades, (5,), EPISODES, 4, "proto", QUERIES, seed, centering)
    return {"binary_1shot": binary["shots"]["1"]["accuracy"],
            "binary_5shot": binary["shots"]["5"]["accuracy"],
            "binary_5shot_ci95": binary["shots"]["5"]["ci95"],
            "binary_5shot_auc": binary["shots"]["5"].get("auc"),
            "grades_5shot": four["shots"]["5"]["accuracy"]}


def local_score(model: Path, images: np.ndarray, y: list[str], seed: int) -> dict | None:
    """The patch-memory (local) classifier on the same episodes, when the runtime has it."""
    try:
        from cossl_edge.evaluation.features import OnnxFeatures
        extractor = OnnxFeatures(model)
        maps = extractor(images).local_maps
        res = evaluate_episodes(maps, y, (5,), EPISODES, 2, "local", QUERIES, seed,
                                _local_centering(extractor), normal_class="normal",
                                scoring=_scoring(extractor), pool=extractor.pool)
    except (ImportError, TypeError, ValueError) as e:  # no local classifier (yet)
        return {"error": f"{type(e).__name__}: {e}"[:200]}
    return {"local_5shot": res["shots"]["5"]["accuracy"],
            "local_5shot_ci95": res["shots"]["5"]["ci95"]}


def heatmap_hits(model: Path, args, seed: int, episodes: int = 40) -> dict:
    """How often the local classifier's heatmap points at the finding: over ``episodes``
    5-shot episodes, the share of correctly classified defective queries whose heatmap
    maximum (the centre of its map cell, in stored-image pixels) lies inside a finding's
    bounding box grown by a margin of half a cell plus 4 px (13 px for a 16×16 map of a
    288-px scan: the heatmap cannot be finer than its cells)."""
    from cossl_edge.evaluation.features import OnnxFeatures
    from cossl_edge.fewshot import FewShotClassifier

    feats = OnnxFeatures(model)
    refs, labels, _ = labelled_samples(args.data / "labeled")
    images, kept, _ = load_many(refs, feats.contract)
    maps = feats(images).local_maps
    table = read_boxes(args.data)
    boxes = [table[refs[i].path.relative_to(args.data).as_posix()][2] for i in kept]
    y = np.asarray([labels[i] for i in kept])
    scale = table_size(args) / maps.shape[-1]  # stored pixels per map cell

    def fit(support):
        return FewShotClassifier.fit(maps[support], list(y[support]), kind="local",
                                     centering=_local_centering(feats), normal_class="normal",
                                     scoring=_scoring(feats), pool=feats.pool)

    hits, correct = hit_rate(maps, y, boxes, scale, fit, episodes, seed)
    return {"heatmap_hit_rate": hits / max(1, correct), "heatmap_positives": correct,
            "heatmap_margin_px": round(scale / 2 + 4, 1)}


def hit_rate(maps: np.ndarray, y: np.ndarray, boxes, scale: float, fit, episodes: int,
             seed: int) -> tuple[int, int]:
    """(hits, correct calls): over ``episodes`` 5-shot episodes, the correctly called
    defective queries, and those whose heatmap maximum (the centre of its map cell, in
    stored-image pixels) lies in a finding's box grown by half a cell plus 4 px.
    ``fit(support indices)`` gives a classifier with ``predict_local``."""
    from cossl_edge.evaluation.episodes import sample_episodes

    margin = scale / 2 + 4
    hits = correct = 0
    for support, query in sample_episodes(y, 2, 5, QUERIES, episodes, seed, keep="normal"):
        clf = fit(support)
        proba, heat = clf.predict_local(maps[query])
        pred = np.asarray(clf.classes)[proba.argmax(1)]
        for q, p, h in zip(query, pred, heat, strict=True):
            if y[q] != "defective" or p != "defective":
                continue
            correct += 1
            r, c = np.unravel_index(np.argmax(h), h.shape)
            cy, cx = (r + 0.5) * scale, (c + 0.5) * scale
            hits += any(r0 - margin <= cy <= r1 + margin and c0 - margin <= cx <= c1 + margin
                        for r0, c0, r1, c1 in boxes[q])
    return hits, correct


def anomaly_part(encoder, args, images: np.ndarray, y: list[str], seed: int,
                 episodes: int = 40) -> dict:
    """What ``fewshot fit`` does without options (``auto``) and the anomaly reading alone,
    on the same episodes, when the model has an anomaly map; and how often the anomaly
    heatmap's maximum is on the finding (as :func:`heatmap_hits`)."""
    from cossl_edge.fewshot import FewShotClassifier

    if not encoder.has_anomaly_map:
        return {}
    names = ["embedding", "anomaly_map"]
    readings = encoder.read_prepared(images, names)
    auto = evaluate_episodes(readings, y, (5,), EPISODES, 2, "auto", QUERIES, seed,
                             encoder.centering, normal_class="normal")["shots"]["5"]
    anomaly = evaluate_episodes(readings["anomaly_map"], y, (5,), EPISODES, 2, "anomaly",
                                QUERIES, seed, normal_class="normal")["shots"]["5"]
    refs, _, _ = labelled_samples(args.data / "labeled")
    table = read_boxes(args.data)
    boxes = [table[r.path.relative_to(args.data).as_posix()][2] for r in refs]
    maps, yy = readings["anomaly_map"], np.asarray(y)
    hits, correct = hit_rate(maps, yy, boxes, table_size(args) / maps.shape[-1],
                             lambda support: FewShotClassifier.fit(
                                 maps[support], list(yy[support]), kind="anomaly",
                                 normal_class="normal"), episodes, seed)
    return {"auto_5shot": auto["accuracy"], "auto_chosen": auto.get("chosen"),
            "anomaly_5shot": anomaly["accuracy"], "anomaly_5shot_auc": anomaly.get("auc"),
            "anomaly_heatmap_hit_rate": hits / max(1, correct)}


def _scoring(feats) -> str:
    """As `fewshot --local-scoring auto` (:func:`cossl_edge.fewshot.policy.local_scoring`)."""
    from cossl_edge.fewshot.policy import local_scoring

    return local_scoring(feats.pool)


def _local_centering(feats):
    """As `fewshot fit` (:func:`cossl_edge.fewshot.policy.fit_centering`)."""
    from cossl_edge.fewshot.policy import fit_centering

    return fit_centering(feats.encoder.centering, feats.pool, "local", _scoring(feats))


def table_size(args) -> int:
    from clinical_examples.finding_scans import SIZE
    return SIZE


def floors(args) -> dict:
    out = {}
    for size in (32, 64, 128):
        contract = PreprocessContract(channels=1, size=size)
        images, y, grades = labelled(args, contract)
        x = contract.normalize(images).reshape(len(images), -1)
        for seed in args.seeds:
            out[f"raw-pixels-{size}/s{seed}"] = score(x, y, grades, seed, x.mean(0))
    return out


def local_part(model: Path, args, images: np.ndarray, y: list[str], seed: int) -> dict:
    """The local classifier's accuracy and heatmap hit rate, with the scoring used."""
    from cossl_edge.evaluation.features import OnnxFeatures

    rec = local_score(model, images, y, seed) or {}
    if "local_5shot" in rec:
        rec.update(heatmap_hits(model, args, seed))
        rec["local_scoring"] = _scoring(OnnxFeatures(model))
    return rec


def run_variant(args, name: str, options: str, seed: int) -> dict:
    from cossl_edge.evaluation.features import OnnxFeatures
    from cossl_edge.runtime.encoder import Encoder

    run = args.work / "runs" / f"{name}-{args.budget}-s{seed}"
    done = run / "benchmark.json"
    if done.exists():
        rec = json.loads(done.read_text())
        if "local_5shot" in rec and rec.get("local_scoring") != _scoring(
                OnnxFeatures(run / "encoder.int8.onnx")):  # the local scoring changed since
            images, y, _ = labelled(args, Encoder(run / "encoder.int8.onnx").contract)
            rec.update(local_part(run / "encoder.int8.onnx", args, images, y, seed))
            done.write_text(json.dumps(rec, indent=1))
        return rec
    t0 = time.time()
    trained = run / "pretrained.ok"  # pretraining finished: only export and evaluate again
    if not trained.exists():
        if run.exists():
            import shutil
            shutil.rmtree(run)
        cli("pretrain", str(args.data / "unlabeled"), "--out", str(run), "--time-budget",
            args.budget, "--seed", str(seed), "--quiet", *shlex.split(options))
        trained.write_text(options + "\n")
    cli("export", str(run), "--local-map", "--no-latency")
    config = json.loads((run / "config.json").read_text())
    steps = max((json.loads(line).get("step", 0)
                 for line in (run / "metrics.jsonl").read_text().splitlines()), default=0)
    model = run / "encoder.int8.onnx"
    encoder = Encoder(model)
    contract = encoder.contract
    images, y, grades = labelled(args, contract)
    x = encoder.embed_prepared(images)
    rec = {"variant": name, "options": options, "seed": seed, "budget": args.budget,
           "steps": steps, "size": contract.size, "feature_grid": config.get("feature_grid"),
           "wall_s": round(time.time() - t0), **score(x, y, grades, seed, encoder.centering)}
    rec.update(local_part(model, args, images, y, seed))
    rec.update(anomaly_part(encoder, args, images, y, seed))
    rec["arch"] = config.get("arch")
    done.write_text(json.dumps(rec, indent=1))
    return rec


def main() -> None:
    args = parse_args()
    if args.scans == "radiographs":
        from global_scans import run_radiographs

        return run_radiographs(args)
    ensure_data(args)
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results.setdefault("floors", {}).update(floors(args))
    if not args.floors_only:
        for name, options in args.variants.items():
            for seed in args.seeds:
                rec = run_variant(args, name, options, seed)
                results.setdefault("runs", {})[f"{name}/{args.budget}/s{seed}"] = rec
                print(json.dumps(rec), flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1, sort_keys=True))
    if args.docs:
        write_docs(results)
    for key, rec in sorted(results["floors"].items()):
        print(f"{key:28s} binary 5-shot {100 * rec['binary_5shot']:.1f}%  "
              f"grades {100 * rec['grades_5shot']:.1f}%")


if __name__ == "__main__":
    main()
