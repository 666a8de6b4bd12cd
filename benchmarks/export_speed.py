"""Export speed: ORT int8 vs ORT fp32 vs torch eager fp32, ResNet-18 (width 1.0), batch 1.

``python benchmarks/export_speed.py [--rounds 7] [--calls 5] [--sizes 64 224]`` exports a
randomly initialised ResNet-18 encoder (3 channels; small stem at 64 px, standard stem at
224 px) with the project's exporter and int8 quantizer, then times the three engines at
batch 1 with one thread and with all threads. The CPU is shared, so the engines are timed
interleaved: each round times every engine (in a rotated order) for ``--calls`` calls, a
ratio is taken within each round, and the figures are medians over rounds. The results are
printed and written to the export section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from doc_section import replace_section

from cossl_edge.export import onnx_export, quantize
from cossl_edge.export.latency import ort_call, torch_call
from cossl_edge.training.backbones import ResNetEncoder

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- export-speed:start -->", "<!-- export-speed:end -->"
ENGINES = ("torch-fp32", "ort-fp32", "ort-int8")


def build_files(size: int, work: Path, target: str) -> tuple[torch.nn.Module, Path, Path]:
    torch.manual_seed(0)
    stem = "small" if size <= 64 else "standard"
    encoder = ResNetEncoder("resnet18", 1.0, 3, stem).eval()
    fp32, int8 = work / f"r18-{size}.onnx", work / f"r18-{size}.int8.onnx"
    onnx_export.export_onnx(encoder, 3, size, fp32)
    calib = np.random.default_rng(0).standard_normal((32, 3, size, size)).astype(np.float32)
    quantize.quantize_int8(fp32, int8, calib, target, work)
    return encoder, fp32, int8


def time_calls(call, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def interleaved(encoder, fp32: Path, int8: Path, size: int, threads: int, rounds: int,
                calls: int) -> dict:
    torch.set_num_threads(threads)
    x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    fns = {"torch-fp32": torch_call(encoder, x), "ort-fp32": ort_call(fp32, x, threads),
           "ort-int8": ort_call(int8, x, threads)}
    for fn in fns.values():
        fn(), fn()  # warm-up
    per_round = {e: [] for e in ENGINES}
    for r in range(rounds):
        order = ENGINES[r % 3:] + ENGINES[:r % 3]
        for engine in order:
            per_round[engine].append(time_calls(fns[engine], calls))
    ratio = {
        "fp32/int8": [f / i for f, i in zip(per_round["ort-fp32"], per_round["ort-int8"],
                                            strict=True)],
        "torch/int8": [t / i for t, i in zip(per_round["torch-fp32"], per_round["ort-int8"],
                                             strict=True)],
    }
    return {"ms": {e: statistics.median(v) for e, v in per_round.items()},
            "ratio": {k: statistics.median(v) for k, v in ratio.items()},
            "ratio_range": {k: (min(v), max(v)) for k, v in ratio.items()}}


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        START, "## Export: ONNX fp32 and int8 speed (`benchmarks/export_speed.py`)", "",
        f"ResNet-18 (width 1.0, 3 channels, random init), batch 1, {meta['cpu']}, "
        f"{meta['cores']} cores, onnxruntime {ort.__version__}, torch {torch.__version__}, "
        f"int8 target `{meta['target']}` (static QDQ, per-channel). Measured {meta['date']} "
        f"with `{meta['command']}`.",
        "", "Load average "
        f"{meta['load'][0]:.1f} at start, {meta['load'][1]:.1f} at end. Engines were timed "
        f"interleaved, {meta['rounds']} rounds × {meta['calls']} calls, ratios taken within "
        "each round, median over rounds (range in brackets).", "",
        "| input | threads | torch fp32 ms | ORT fp32 ms | ORT int8 ms | int8 vs ORT fp32 "
        "(target ≥2.5×) | int8 vs torch (target ≥4×) | int8 size / fp32 (target ≤0.3) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ms, ratio, rng = r["ms"], r["ratio"], r["ratio_range"]
        lines.append(
            f"| {r['size']} px | {r['threads']} | {ms['torch-fp32']:.1f} | {ms['ort-fp32']:.1f} "
            f"| {ms['ort-int8']:.1f} | {ratio['fp32/int8']:.2f}× "
            f"[{rng['fp32/int8'][0]:.2f}–{rng['fp32/int8'][1]:.2f}] "
            f"| {ratio['torch/int8']:.1f}× [{rng['torch/int8'][0]:.1f}–"
            f"{rng['torch/int8'][1]:.1f}] | {r['size_ratio']:.3f} |")
    lines += ["", meta.get("notes", "").strip(), END]
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--target", default="auto", choices=quantize.TARGETS)
    ap.add_argument("--notes", type=Path, help="markdown file appended under the table")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    target = quantize.resolve_target(args.target)
    load0 = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            encoder, fp32, int8 = build_files(size, Path(tmp), target)
            size_ratio = int8.stat().st_size / fp32.stat().st_size
            for threads in sorted({1, os.cpu_count() or 1}):
                r = interleaved(encoder, fp32, int8, size, threads, args.rounds, args.calls)
                r |= {"size": size, "threads": threads, "size_ratio": size_ratio}
                print(f"{size}px {threads}t", {k: round(v, 2) for k, v in r["ms"].items()},
                      {k: round(v, 2) for k, v in r["ratio"].items()},
                      f"size {size_ratio:.3f}", flush=True)
                results.append(r)
    meta = {"cpu": cpu_name(), "cores": os.cpu_count(), "target": target,
            "date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "calls": args.calls,
            "load": (load0, os.getloadavg()[0]),
            "command": "python benchmarks/export_speed.py "
                       f"--rounds {args.rounds} --calls {args.calls}",
            "notes": args.notes.read_text() if args.notes else ""}
    text = markdown(results, meta)
    print(text)
    if not args.no_write:
        replace_section(START, END, text)


if __name__ == "__main__":
    main()
