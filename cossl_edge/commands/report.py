"""``cossl-edge report``: a run's self-contained HTML report (figures embedded)."""

from __future__ import annotations

from pathlib import Path

import typer

from cossl_edge.commands.common import fail, renamed, user_errors


def report(
    run_dir: Path = typer.Argument(..., help="Run directory written by cossl-edge pretrain "
                                   "(metrics.jsonl; export-report.json and encoder.onnx once "
                                   "exported; fewshot*.json when evaluated)."),
    out: Path | None = typer.Option(None, "--out", help="HTML file to write "
                                    "(default: RUN_DIR/report.html)."),
    data: Path | None = typer.Option(None, "--data", help="Labelled images (one subfolder per "
                                     "class, or --labels) for the embedding map, the gallery "
                                     "and, without fewshot*.json, the few-shot curve. Default: "
                                     "the run's unlabelled calibration images."),
    labels: Path | None = typer.Option(None, "--labels", help="CSV path,label for --data "
                                       "(paths relative to --data)."),
    model: Path | None = typer.Option(None, "--model", help="ONNX encoder to embed with "
                                      "(default: RUN_DIR/encoder.onnx, else encoder.int8.onnx)."),
    title: str | None = typer.Option(None, "--title", help="Page title."),
    heatmaps_from: Path | None = typer.Option(None, "--heatmaps-from", help="Folder to read "
                                              "a local few-shot classifier's heatmaps from "
                                              "(the one fewshot predict --heatmaps wrote), to "
                                              "show a few of (default: RUN_DIR/heatmaps when "
                                              "there is one)."),
    heatmaps: Path | None = typer.Option(None, "--heatmaps", hidden=True,
                                         help="Deprecated name of --heatmaps-from."),
) -> None:
    """Write one HTML page with the run's curves, embedding map, neighbours, few-shot
    accuracy and fp32/int8 figures; sections without data say what would fill them."""
    from cossl_edge.report import write_report

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        fail("the report draws with matplotlib, which is not installed: "
             "pip install 'cossl-edge[report]'")
    heatmaps_from = renamed(heatmaps_from, heatmaps, None, "--heatmaps", "--heatmaps-from")
    with user_errors():
        path = write_report(run_dir, out, data=data, labels_csv=labels, model=model,
                            title=title, heatmaps=heatmaps_from)
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command(name="report", no_args_is_help=True)(report)
