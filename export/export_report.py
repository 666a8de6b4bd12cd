"""The export report: what ``export-report.json`` holds and the table the CLI prints."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.table import Table

REPORT_FILE = "export-report.json"
MIN_COSINE = 0.99


def recommend_int8(report: dict) -> tuple[bool, list[str]]:
    """Whether int8 is worth shipping, and the warnings that say why not."""
    warnings: list[str] = []
    agree = report.get("int8_agreement") or {}
    cos = agree.get("cosine_mean", float("nan"))
    if not cos >= MIN_COSINE:
        warnings.append(f"int8 mean cosine to fp32 is {cos:.4f} (< {MIN_COSINE}): int8 changes "
                        "the embedding too much; ship encoder.onnx")
    speed = speedup(report.get("latency") or [], "ort-int8", "ort-fp32")
    if speed is not None and speed <= 1.0:
        warnings.append(f"int8 is not faster than fp32 on this CPU (×{speed:.2f} at batch 1, "
                        "best thread count); ship encoder.onnx or export with another --target")
    return not warnings, warnings


def speedup(rows: list[dict], fast: str, slow: str, batch: int = 1) -> float | None:
    """slow/fast ratio of each engine's best latency at ``batch`` (over thread counts): on a
    shared CPU one thread setting can be disturbed, the best one shows what the engine does."""
    best: dict[str, float] = {}
    for r in rows:
        if r["batch"] == batch:
            best[r["engine"]] = min(r["ms"], best.get(r["engine"], float("inf")))
    if fast not in best or slow not in best:
        return None
    return best[slow] / best[fast]


def write_report(report: dict, out_dir: Path) -> Path:
    path = out_dir / REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True, allow_nan=False,
                              default=_json_default))
    tmp.replace(path)
    return path


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def report_tables(report: dict) -> list[Table]:
    """Summary table and, when measured, the latency table."""
    summary = Table(title="cossl-edge export", show_header=False)
    summary.add_column("item", style="bold")
    summary.add_column("value")
    for name, info in report["files"].items():
        label = "before adaptation (ImageNet)" if name == "init" else name
        summary.add_row(f"{label} size", f"{info['bytes'] / 1e6:.2f} MB ({info['file']})")
    init = report.get("init_model")
    if init and init not in {f["file"] for f in report["files"].values()}:
        summary.add_row("before adaptation", init)
    summary.add_row("parity (max |ORT - torch|)", f"{report['parity_max_abs_diff']:.2e}")
    agree = report.get("int8_agreement")
    if agree:
        summary.add_row("int8 cosine mean / min",
                        f"{agree['cosine_mean']:.4f} / {agree['cosine_min']:.4f}")
        knn = agree["knn_top1_agreement"]
        summary.add_row("int8 kNN top-1 agreement", "n/a" if knn is None else f"{knn:.3f}")
        summary.add_row("int8 target", report["int8"]["target"])
        summary.add_row("int8 recommended", "yes" if report["int8_recommended"] else "no")
    decision = report.get("int8_decision")
    if decision:
        summary.add_row("3D int8", decision["line"].removeprefix("3D int8: "))
    summary.add_row("calibration images", f"{report['calibration_images']} "
                    f"({report.get('calibration_skipped', 0)} unreadable, left out)")
    tables = [summary]
    if report.get("latency"):
        tables.append(_latency_table(report["latency"]))
    return tables


def _latency_table(rows: list[dict]) -> Table:
    table = Table(title="latency (ms, median)")
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    table.add_column("batch")
    table.add_column("threads")
    for e in engines:
        table.add_column(e, justify="right")
    settings = list(dict.fromkeys((r["batch"], r["threads"]) for r in rows))
    for batch, threads in settings:
        cells = {r["engine"]: r["ms"] for r in rows if (r["batch"], r["threads"]) == (batch,
                                                                                      threads)}
        table.add_row(str(batch), str(threads),
                      *[f"{cells[e]:.2f}" if e in cells else "-" for e in engines])
    return table


def finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value
