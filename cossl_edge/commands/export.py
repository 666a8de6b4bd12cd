"""``cossl-edge export``: a run's encoder as verified fp32 and int8 ONNX files + a report."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
from rich.console import Console

from cossl_edge.commands.common import choices, plain, user_errors
from cossl_edge.progress import ProgressBars

# export/quantize.py checks the target; it loads onnxruntime's quantizer (and onnx), which
# the CLI does not load at start, so the list is written here (tests/test_cli_choices.py
# compares it).
TARGETS = ("auto", "x86-vnni", "x86", "arm")
Target = choices("Target", TARGETS)
TARGET_HELP = ("CPU the int8 file is tuned for: x86-vnni (U8 activations, S8 weights), x86 "
               "without VNNI (U8/S8 with reduce_range), arm (S8/S8), or auto (read this CPU).")


def export(
    run_dir: Path = typer.Argument(..., help="Run directory written by cossl-edge pretrain "
                                   "(holds config.json and encoder.pt)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for encoder.onnx, "
                                    "encoder.int8.onnx and export-report.json "
                                    "(default: the run directory)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write the static int8 "
                              "(QDQ, per-channel) encoder.int8.onnx."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Folder of unlabeled "
                                            "images for calibration and checks (default: the "
                                            "training data folder recorded in config.json)."),
    calibration_count: int = typer.Option(256, "--calibration-count", min=1, help="How many "
                                          "calibration images to draw (a fixed random pick)."),
    target: Target = typer.Option(Target("auto"), "--target", help=TARGET_HELP),
    opset: int = typer.Option(17, "--opset", help="ONNX opset of the exported files."),
    local_map: bool = typer.Option(False, "--local-map", help="Add a second output, "
                                   "local_map: the feature map before pooling (N×D×h×w)."),
    latency: bool = typer.Option(True, "--latency/--no-latency", help="Time torch, ORT fp32 "
                                 "and ORT int8 at batch 1 and 32, one and all threads."),
) -> None:
    """Export a run's encoder to ONNX (verified against torch) and int8; print the report."""
    from cossl_edge.export import export_run
    from cossl_edge.export.export_report import report_tables

    console = Console(stderr=True)
    with user_errors(), ProgressBars(console) as progress:
        report = export_run(run_dir, out, int8=int8, calibration=calibration,
                            calibration_count=calibration_count, target=plain(target), opset=opset,
                            local_map=local_map, measure_latency=latency, progress=progress)
    stdout = Console()
    for table in report_tables(report):
        stdout.print(table)
    if "int8_decision" in report:  # 3D runs: int8 shipped or fp32 kept, and why
        typer.echo(report["int8_decision"]["line"], err=True)
    for warning in report.get("warnings", []):
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    folder = out if out is not None else run_dir
    files = [f["file"] for f in report["files"].values()]
    # plain echo, not Rich: a path or a command must not be wrapped or restyled
    typer.echo(f"wrote {', '.join(files)} and {report['report_file']} to {folder}")
    shipped = report["files"].get("int8") or report["files"].get("fp32")
    model = folder / (shipped["file"] if shipped else files[0])
    if "volume_contract" in report:
        typer.echo(f"{model}: a 3D encoder (input N×1×S×S×S); per-series embedding and "
                   "few-shot at the edge are not built yet (issue 30)")
        return
    typer.echo(f"next: cossl-edge fewshot eval {shlex.quote(str(model))} LABELED_DIR   "
               "(LABELED_DIR: labelled images, one subfolder per class; fewshot fit then "
               "builds a classifier)")


def register(app: typer.Typer) -> None:
    app.command(name="export")(export)
