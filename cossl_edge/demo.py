"""``python -m cossl_edge.demo`` (what ``make demo`` runs): the whole mission on phantoms.

1. write the default DICOM data set (``clinical_examples/phantoms.py``: CT slices and CR/DX
   radiographs of fake patients, three finding classes) into ``OUT/data``;
2. pretrain (``co-simclr`` by default, ``--method`` to change) on the unlabelled part for a
   small time budget;
3. export it to int8 ONNX, and export a random-init encoder (same seed, no training) the
   same way, so that the comparison isolates what pretraining bought;
4. few-shot episodes on the labelled part with both int8 encoders (and raw pixels), and a
   fitted classifier file per task;
5. a summary table, a privacy check of every artefact, and ``OUT/report.html``.

Needs the ``[train,export]`` extras; torch is imported inside the functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

# On a CPU shared with other jobs, OpenMP threads that spin while waiting for each other
# made a training step 15-20× slower here (11 s vs 0.6 s); passive waiting costs nothing
# on an idle machine. It must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parents[1]
TASKS = {"ct": "CT slice triage", "radiographs": "radiograph findings"}


@dataclass(frozen=True)
class DemoSettings:
    """Data size, recipe and evaluation size; ``tiny`` is what CI runs."""

    ct_patients: int = 16
    slices: int = 24
    radiographs: int = 320
    eval_ct_patients: int = 6
    eval_radiographs: int = 120
    size: int = 32
    arch: str = "resnet10"
    width: float = 0.25
    batch_size: int = 64
    time_budget: float = 240.0
    method: str = "co-simclr"  # co-byol learnt the CT task only at this budget (docs/report.md)
    max_steps: int | None = None
    shots: tuple[int, ...] = (1, 5, 10)
    episodes: int = 300
    latency: bool = True

    @classmethod
    def tiny(cls) -> DemoSettings:
        return cls(ct_patients=2, slices=9, radiographs=24, eval_ct_patients=2,
                   eval_radiographs=24, size=24, batch_size=16, time_budget=60.0,
                   max_steps=4, shots=(1, 3), episodes=20, latency=False)


def phantoms():
    """``clinical_examples.phantoms``, importable from a checkout (it is not installed)."""
    try:
        from clinical_examples import phantoms as module
    except ImportError:
        sys.path.insert(0, str(REPO))
        from clinical_examples import phantoms as module
    return module


def make_data(out: Path, s: DemoSettings, seed: int, console: Console) -> tuple[Path, Path]:
    """Unlabelled ``train`` and labelled ``labelled`` (class subfolders) phantom sets;
    written once per settings (a marker records them), reused on the next run."""
    marker = out / "dataset.json"
    wanted = {"ct_patients": s.ct_patients, "slices": s.slices, "radiographs": s.radiographs,
              "eval_ct_patients": s.eval_ct_patients, "eval_radiographs": s.eval_radiographs,
              "seed": seed, "version": 1}
    train, labelled = out / "train", out / "labelled"
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        console.print(f"data: reusing {out}")
        return train, labelled
    ph = phantoms()
    with console.status("writing the DICOM phantom data set"):
        ph.write_dataset(train, s.ct_patients, s.slices, s.radiographs, seed, labels_csv=False)
        ph.write_dataset(labelled, s.eval_ct_patients, s.slices, s.eval_radiographs, seed + 1,
                         first_patient=1000, layout="folders")
    marker.write_text(json.dumps(wanted))
    console.print(f"data: {s.ct_patients * s.slices + s.radiographs} unlabelled and "
                  f"{s.eval_ct_patients * s.slices + s.eval_radiographs} labelled DICOM "
                  f"images of fake patients in {out}")
    return train, labelled


def pretrain_config(s: DemoSettings, seed: int, monitor: Path | None):
    from cossl_edge.contract import PreprocessContract
    from cossl_edge.training.config import PretrainConfig

    return PretrainConfig(method=s.method, arch=s.arch, width=s.width,
                          batch_size=s.batch_size, time_budget=s.time_budget, seed=seed,
                          contract=PreprocessContract(channels=1, size=s.size),
                          monitor=str(monitor) if monitor else None, checkpoint_every=1000)


def train_encoders(out: Path, train: Path, labelled: Path, s: DemoSettings, seed: int,
                   console: Console, progress: bool) -> tuple[Path, Path]:
    """The pretrained run, and a run directory holding the same network at initialisation
    (same seed, zero steps), so both go through export and evaluation alike."""
    import shutil

    from cossl_edge.training.loop import pretrain

    runs = (out / "run-pretrained", out / "run-random-init")
    for run in runs:
        shutil.rmtree(run, ignore_errors=True)  # a fresh demo, not a resumed one
    console.rule(f"pretraining {s.method}")
    summary = pretrain(pretrain_config(s, seed, labelled), train, runs[0], progress=progress,
                       max_steps=s.max_steps, console=console)
    console.print(f"{summary['steps']} steps, {summary['epochs']} epochs in "
                  f"{summary['elapsed_s']:.0f} s on {summary['images']} images")
    pretrain(pretrain_config(s, seed, None), train, runs[1], progress=False, max_steps=0,
             console=Console(quiet=True))
    return runs


def export_both(runs: tuple[Path, Path], train: Path, s: DemoSettings, console: Console,
                progress: bool) -> None:
    from cossl_edge.export import export_run

    for i, run in enumerate(runs):
        console.rule(f"int8 export · {run.name}")
        with _ProgressBars(console, progress) as bars:
            report = export_run(run, calibration=train, target="auto",
                                measure_latency=s.latency and i == 0, progress=bars)
        agree = report.get("int8_agreement", {})
        console.print(f"encoder.int8.onnx {report['files']['int8']['bytes'] / 1e6:.2f} MB "
                      f"(fp32 {report['files']['fp32']['bytes'] / 1e6:.2f} MB), int8 cosine "
                      f"to fp32 {agree.get('cosine_mean', float('nan')):.4f}")


class _ProgressBars:
    """rich progress bars as export_run's ``progress(description, total)`` callback."""

    def __init__(self, console: Console, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), console=console, transient=True,
                             disable=not enabled)

    def __enter__(self):
        self.bars.__enter__()

        def start(description: str, total: int):
            task = self.bars.add_task(description, total=total)
            return lambda n: self.bars.advance(task, n)
        return start

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)


@dataclass
class Labelled:
    images: np.ndarray  # prepared N×S×S×C
    labels: np.ndarray
    tasks: np.ndarray  # "ct" | "radiographs", from the folder layout <finding>/<task>/...


def load_labelled(folder: Path, contract) -> Labelled:
    from cossl_edge.sources import labelled_samples, load_many

    samples, labels, _ = labelled_samples(folder)
    images, kept, _ = load_many(samples, contract)
    tasks = [samples[i].path.relative_to(folder).parts[1] for i in kept]
    return Labelled(images, np.asarray([labels[i] for i in kept]), np.asarray(tasks))


def evaluate(runs: tuple[Path, Path], labelled_dir: Path, s: DemoSettings, seed: int,
             console: Console) -> dict:
    """Few-shot episodes per task for both int8 encoders and raw pixels; a fitted
    classifier file per task. Returns {encoder: {task: evaluate_episodes result}}."""
    from cossl_edge.encoder import Encoder
    from cossl_edge.episodes import evaluate_episodes

    name = f"{s.method} int8"
    encoders = {name: Encoder(runs[0] / "encoder.int8.onnx"),
                "random-init int8": Encoder(runs[1] / "encoder.int8.onnx")}
    data = load_labelled(labelled_dir, encoders[name].contract)
    vectors = {name: (enc.embed_prepared(data.images), enc.centering)
               for name, enc in encoders.items()}
    raw = data.images.reshape(len(data.images), -1)
    vectors["raw pixels"] = (raw, raw.mean(axis=0))
    results: dict = {}
    with console.status("few-shot episodes"):
        for encoder_name, (z, centre) in vectors.items():
            for task in TASKS:
                sel = data.tasks == task
                results.setdefault(encoder_name, {})[task] = evaluate_episodes(
                    z[sel], data.labels[sel], shots=s.shots, episodes=s.episodes,
                    kind="proto", seed=seed, centering=centre)
    results["_classifiers"] = fit_classifiers(encoders[name], vectors[name][0], data,
                                              runs[0].parent / "classifiers", seed)
    return results


def fit_classifiers(encoder, z: np.ndarray, data: Labelled, out: Path, seed: int,
                    shots: int = 5) -> dict[str, float]:
    """Per task: a 5-shot prototype classifier file, and its accuracy on the other images."""
    from cossl_edge.fewshot import FewShotClassifier

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scores = {}
    for task in TASKS:
        idx = np.flatnonzero(data.tasks == task)
        support = np.concatenate([rng.permutation(idx[data.labels[idx] == c])[:shots]
                                  for c in np.unique(data.labels[idx])])
        query = np.setdiff1d(idx, support)
        clf = FewShotClassifier.fit(z[support], list(data.labels[support]), kind="proto",
                                    centering=encoder.centering)
        clf.bind_model(encoder.sha256, encoder.path.name, encoder.contract.to_dict())
        clf.save(out / f"{task}.json")
        pred = np.asarray([p.label for p in clf.predict(z[query])])
        scores[task] = float((pred == data.labels[query]).mean())
    return scores


def summary_table(results: dict, s: DemoSettings) -> Table:
    table = Table(title="few-shot accuracy (3 classes, nearest prototype, mean ± 95% CI)")
    table.add_column("task")
    table.add_column("shots", justify="right")
    names = [n for n in results if not n.startswith("_")]
    for name in names:
        table.add_column(name, justify="right")
    for task, title in TASKS.items():
        for k in s.shots:
            cells = []
            for name in names:
                r = results[name][task]["shots"][str(k)]
                cells.append(f"{100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f}%")
            table.add_row(title, str(k), *cells, style="bold" if k == 5 else None)
    return table


def write_fewshot_json(run: Path, results: dict) -> Path:
    """The curves the report draws: one per encoder and task."""
    curves = {f"{name} · {TASKS[task]}": res for name, tasks in results.items()
              if not name.startswith("_") for task, res in tasks.items()}
    path = run / "fewshot.json"
    path.write_text(json.dumps({"encoders": curves}, indent=1))
    return path


def privacy_leaks(out: Path, data_root: Path, s: DemoSettings, seed: int) -> list[str]:
    """Artefacts (everything under OUT but the data) that hold a fake patient's name, id or
    patient folder name, or the data folder's path."""
    ph = phantoms()
    patients = [ph.fake_patient(i, seed) for i in range(s.ct_patients + s.radiographs)]
    patients += [ph.fake_patient(1000 + i, seed + 1)
                 for i in range(s.eval_ct_patients + s.eval_radiographs)]
    needles = {str(data_root.resolve()).encode()}
    for p in patients:
        needles |= {p.name.encode(), p.patient_id.encode(), p.folder.encode()}
    leaks = []
    for path in sorted(out.rglob("*")):
        if path.is_file() and data_root not in path.parents:
            blob = path.read_bytes()
            if any(n in blob for n in needles):
                leaks.append(str(path.relative_to(out)))
    return leaks


def run_demo(out: Path, s: DemoSettings, seed: int = 0, progress: bool = True,
             console: Console | None = None) -> dict:
    """The whole demo; returns the few-shot results and where the artefacts are."""
    from cossl_edge.report import write_report

    console = console or Console()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train, labelled = make_data(out / "data", s, seed, console)
    runs = train_encoders(out, train, labelled, s, seed, console, progress)
    export_both(runs, train, s, console, progress)
    console.rule("few-shot evaluation")
    results = evaluate(runs, labelled, s, seed, console)
    write_fewshot_json(runs[0], results)
    with console.status("writing the report"):
        report = write_report(runs[0], out / "report.html", data=labelled,
                              title=f"cossl-edge demo: {s.method} on DICOM phantoms")
    console.print(summary_table(results, s))
    gain = headline(results, s)
    console.print(f"{s.method} vs random-init encoder, {gain['shots']}-shot, mean of both "
                  f"tasks: [bold]{100 * gain['pretrained']:.1f}%[/] vs "
                  f"{100 * gain['random']:.1f}% ({100 * (gain['pretrained'] - gain['random']):+.1f}"
                  " points); raw pixels "
                  f"{100 * gain['raw']:.1f}%")
    scores = results["_classifiers"]
    console.print("5-shot classifier files in " + str(out / "classifiers") + ": " + ", ".join(
        f"{TASKS[t]} {100 * a:.1f}% on the other images" for t, a in scores.items()))
    leaks = privacy_leaks(out, out / "data", s, seed)
    console.print("privacy: no patient name, id or data path in any artefact" if not leaks
                  else f"[red]privacy: patient data found in {', '.join(leaks)}")
    console.print(f"report: {report}  ·  total {time.perf_counter() - t0:.0f} s")
    return {"results": results, "headline": gain, "leaks": leaks, "report": report,
            "runs": runs}


def headline(results: dict, s: DemoSettings) -> dict:
    k = 5 if 5 in s.shots else max(s.shots)

    def mean(name: str) -> float:
        return float(np.mean([results[name][t]["shots"][str(k)]["accuracy"] for t in TASKS]))

    return {"shots": k, "pretrained": mean(f"{s.method} int8"),
            "random": mean("random-init int8"),
            "raw": mean("raw pixels")}


def main(argv: list[str] | None = None) -> int:
    from cossl_edge.commands.pretrain import parse_duration

    parser = argparse.ArgumentParser(
        prog="python -m cossl_edge.demo",
        description="The whole mission on generated DICOM phantoms: data, CO-SSL "
                    "pretraining, int8 export, few-shot against a random-init encoder, report.")
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="folder for data, runs, classifiers and report.html "
                             "(default: demo-output)")
    parser.add_argument("--time-budget", default=None,
                        help="pretraining wall-clock budget, e.g. 4m or 90s (default 4m; "
                             "tiny: a few steps)")
    parser.add_argument("--tiny", action="store_true",
                        help="a small data set and a few steps: checks the path (CI), "
                             "proves nothing about accuracy")
    parser.add_argument("--method", default="co-simclr",
                        choices=["co-simclr", "co-byol", "simclr", "byol"],
                        help="pretraining method (default co-simclr: at this budget co-byol "
                             "learnt only the CT task, see docs/report.md)")
    parser.add_argument("--seed", type=int, default=0, help="data, initialisation and episodes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    s = replace(DemoSettings.tiny() if args.tiny else DemoSettings(), method=args.method)
    if args.time_budget:
        s = replace(s, time_budget=parse_duration(args.time_budget), max_steps=None)
    result = run_demo(args.out, s, args.seed, progress=not args.no_progress)
    return 1 if result["leaks"] else 0


if __name__ == "__main__":
    sys.exit(main())
