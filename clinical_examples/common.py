"""What the three examples share: pretrain + export an encoder, run a CLI command, print.

Pretraining and export run in this process (torch is loaded once); the edge steps run as
the ``cossl-edge`` commands a user would type, so each example shows them as written.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from cossl_edge.training.method_list import DEFAULT_METHOD

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see clinical_examples/demo.py
console = Console()


def cossl_edge(*args: object) -> str:
    """Run ``cossl-edge ARGS`` (as ``python -m cossl_edge``), echo it, return its stdout."""
    argv = [str(a) for a in args]
    console.print(f"[dim]$ cossl-edge {shlex.join(argv)}")
    done = subprocess.run([sys.executable, "-m", "cossl_edge", *argv], capture_output=True,
                          text=True)
    if done.returncode != 0:
        console.print(done.stderr.strip())
        raise SystemExit(f"cossl-edge {argv[0]} failed (exit {done.returncode})")
    return done.stdout


def pretrain_and_export(data: Path, run: Path, *, size: int, time_budget: float,
                        max_steps: int | None, target: str = "auto", channels: int = 1,
                        window: str = "header", preset: str = "auto",
                        calibration_count: int = 256, method: str = DEFAULT_METHOD) -> Path:
    """A small CO-SSL encoder for ``data``, exported; returns the int8 ONNX file.
    co-simclr: at a few minutes of CPU, co-byol learnt the findings of only one of the
    phantom tasks (docs/report.md)."""
    import shutil

    from cossl_edge.contract import PreprocessContract
    from cossl_edge.export import export_run
    from cossl_edge.training.config import PretrainConfig
    from cossl_edge.training.loop import pretrain

    shutil.rmtree(run, ignore_errors=True)
    config = PretrainConfig(method=method, arch="resnet10", width=0.25, batch_size=64,
                            time_budget=time_budget, preset=preset, checkpoint_every=1000,
                            contract=PreprocessContract(channels=channels, size=size,
                                                        window=window))
    console.rule(f"pretraining {method} on {data.name}")
    summary = pretrain(config, data, run, max_steps=max_steps, console=console)
    console.print(f"{summary['steps']} steps in {summary['elapsed_s']:.0f} s")
    console.rule(f"int8 export (--target {target})")
    with console.status("exporting and quantizing"):
        report = export_run(run, calibration=data, target=target,
                            calibration_count=calibration_count, measure_latency=False)
    agree = report["int8_agreement"]
    console.print(f"encoder.int8.onnx: {report['files']['int8']['bytes'] / 1e6:.2f} MB, "
                  f"target {report['int8']['target']}, cosine to fp32 "
                  f"{agree['cosine_mean']:.4f}")
    return run / "encoder.int8.onnx"


def example_parser(doc: str, out: str, outputs: str, tiny: str) -> argparse.ArgumentParser:
    """The options every example has: --out, --tiny, --time-budget."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(out),
                        help=f"output folder ({outputs})")
    parser.add_argument("--tiny", action="store_true", help=f"{tiny} (CI)")
    parser.add_argument("--time-budget", default=None, help="pretraining budget (default 3m)")
    return parser


def budget(tiny: bool, given: str | None, default: str) -> tuple[float, int | None]:
    """(time budget in s, max steps): tiny mode trains a few steps only."""
    from cossl_edge.commands.pretrain import parse_duration

    if tiny and given is None:
        return 60.0, 3
    return parse_duration(given or default), None


def split_labels(labels_csv: Path, shots: int, seed: int = 0) -> tuple[Path, Path]:
    """support.csv (``shots`` rows per class, a stratified pick) and query.csv (the rest)
    next to labels_csv, rows in the file's order."""
    import csv

    import numpy as np

    from cossl_edge.evaluation.splits import stratified_split

    with labels_csv.open(newline="") as f:
        rows = [r for r in csv.reader(f)][1:]
    query_idx, support_idx = stratified_split(np.asarray([r[1] for r in rows]), seed=seed,
                                              test_count=lambda n: min(shots, n))
    paths = []
    for name, part in (("support.csv", support_idx), ("query.csv", query_idx)):
        path = labels_csv.with_name(name)
        with path.open("w", newline="") as f:
            csv.writer(f).writerows([["path", "label"], *(rows[i] for i in part)])
        paths.append(path)
    return paths[0], paths[1]


def truth_by_id(root: Path, labels_csv: Path) -> dict[str, str]:
    """Salted sample id → label, to score the predictions CSV (which holds ids only)."""
    from cossl_edge.sources import labelled_samples

    samples, labels, _ = labelled_samples(root, labels_csv)
    return {s.sample_id(): lab for s, lab in zip(samples, labels, strict=True)}


def read_predictions(path: Path) -> dict[str, tuple[str, str]]:
    """id → (label or 'unknown', the best class whatever the threshold)."""
    import csv

    with path.open(newline="") as f:
        return {r["id"]: (r["label"], r["top_k"].split(";")[0].split(":")[0])
                for r in csv.DictReader(f)}


def phantoms():
    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from clinical_examples import phantoms as module

    return module
