"""``python -m clinical_examples.demo`` (what ``make demo`` runs, from the repository root):
the whole mission on phantoms.

1. write the default DICOM data set (``clinical_examples/phantoms.py``: CT slices and CR/DX
   radiographs of fake patients, three finding classes) into ``OUT/data``;
2. pretrain (``co-simclr`` by default, ``--method`` to change) on the unlabelled part for a
   small time budget;
3. export it to int8 ONNX, and export a random-init encoder (same seed, no training) the
   same way, so that the comparison isolates what pretraining bought;
4. few-shot episodes on the labelled part with both int8 encoders (and raw pixels), and a
   fitted classifier file per task;
5. a summary table, a privacy check of every artefact, and ``OUT/report.html``.

The steps are in ``clinical_examples/demo_steps.py``. Needs the ``[train,export]`` extras;
torch is imported inside the functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from clinical_examples.demo_steps import (  # noqa: F401  (the demo's names, in one place)
    TASKS,
    DemoSettings,
    Labelled,
    evaluate,
    export_both,
    fit_classifiers,
    load_labelled,
    make_data,
    phantoms,
    pretrain_config,
    train_encoders,
)
from cossl_edge.training.method_list import DEFAULT_METHOD, method_names

# On a CPU shared with other jobs, OpenMP threads that spin while waiting for each other
# made a training step 15-20× slower here (11 s vs 0.6 s); passive waiting costs nothing
# on an idle machine. It must be set before torch loads (torch loads inside the steps).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
        prog="python -m clinical_examples.demo",
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
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=method_names(),
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
