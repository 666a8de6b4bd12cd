"""``cossl-edge bench MODEL``: latency and throughput on this device, and the settings to use."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import typer

from cossl_edge.commands import edge_options as opt
from cossl_edge.commands.common import user_errors


def bench(
    model: Path = opt.MODEL,
    batch_sizes: str = typer.Option("1,8,32", "--batch-sizes", help="Comma-separated batch "
                                    "sizes to time."),
    threads: str | None = typer.Option(None, "--threads", help="Comma-separated thread counts "
                                       "(default: 1, 2, 4, … up to the CPU count)."),
    seconds: float = typer.Option(1.0, "--seconds", min=0.05, help="Timing budget per "
                                  "(threads, batch size) setting."),
    spin: bool = opt.SPIN,
    contract: Path | None = opt.CONTRACT,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures as JSON."),
) -> None:
    """Time MODEL on random inputs (no decoding) over batch sizes and thread counts; print
    the median latency and throughput of each, and the settings recommended here."""
    with user_errors():
        sizes = _int_list(batch_sizes, "--batch-sizes")
        counts = _int_list(threads, "--threads") if threads else _default_threads()
        rows = []
        for t in counts:
            encoder = opt.open_encoder(model, contract, t, spin)
            if t == counts[0]:
                opt.warn_int8_target(encoder)
            for b in sizes:
                rows.append({"threads": t, "batch_size": b, **time_batch(encoder, b, seconds)})
        result = {"model": model.name, "spin": spin, "rows": rows, **recommend(rows)}
        if json_out is not None:
            json_out.write_text(json.dumps(result, indent=1))
    _print(result)


def time_batch(encoder, batch_size: int, seconds: float) -> dict:
    """Median latency (ms) of one call at this batch size, and images per second."""
    x = np.random.default_rng(0).standard_normal((batch_size, *encoder.input_shape))
    x = x.astype(np.float32)
    encoder.run(x)  # warm-up: the first call allocates
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < seconds and len(times) < 1000):
        t0 = time.perf_counter()
        encoder.run(x)
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {"latency_ms": 1000 * median, "images_per_s": batch_size / median}


def recommend(rows: list[dict]) -> dict:
    """Lowest single-image latency, and highest throughput (fewest threads on near-ties)."""
    ones = [r for r in rows if r["batch_size"] == 1] or rows
    best_lat = min(ones, key=lambda r: (r["latency_ms"], r["threads"]))
    top = max(r["images_per_s"] for r in rows)
    best_thr = min((r for r in rows if r["images_per_s"] >= 0.95 * top),
                   key=lambda r: (r["threads"], -r["images_per_s"]))
    return {"for_latency": {k: best_lat[k] for k in ("threads", "batch_size")},
            "for_throughput": {k: best_thr[k] for k in ("threads", "batch_size")}}


def _int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"{name} {text!r}: expected positive integers, e.g. 1,8,32")
    return values


def _default_threads() -> list[int]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    counts, t = [], 1
    while t < (cpus or 1):
        counts.append(t)
        t *= 2
    return counts + [cpus or 1]


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} on this device")
    for col in ("threads", "batch", "latency (ms)", "images/s"):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        table.add_row(str(r["threads"]), str(r["batch_size"]), f"{r['latency_ms']:.2f}",
                      f"{r['images_per_s']:.1f}")
    console = Console()
    console.print(table)
    lat, thr = result["for_latency"], result["for_throughput"]
    spin = "" if result["spin"] else " --no-spin"
    console.print(f"one image at a time: --threads {lat['threads']}{spin}")
    console.print(f"archives (embed): --threads {thr['threads']} "
                  f"--batch-size {thr['batch_size']}{spin}")
    console.print("int8 or fp32: bench both files on the device and keep the faster; on ARM, "
                  "int8 is fast only with the dot-product instructions (ARMv8.2 and later, e.g. "
                  "Cortex-A55/A76, Jetson Orin): on a Cortex-A72 (Raspberry Pi 4) int8 can be "
                  "slower than fp32", highlight=False)


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench)
