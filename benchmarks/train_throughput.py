"""Training throughput: images/s of a co-byol step, a byol step, and the limit.

``python benchmarks/train_throughput.py [--sizes 32 64] [--batch 128] [--width 0.5] [--bf16]``

``python benchmarks/train_throughput.py --profile [--sizes 32] [--batch 128] [--bf16]``: where
a step's time goes besides the model (``benchmarks/data_path_profile.py``, section "Where a
step's time goes").

``python benchmarks/train_throughput.py --loop [--sizes 32 64] [--seconds 40]``: the real
loop against the model alone, in one run (section "The real loop against the model alone"):
``training.loop.pretrain`` with the default recipe (co-simclr, ResNet-10 ×0.25, batch 128)
on the digits written as PNG files (``benchmarks/datasets.py``), fp32 and bf16, next to the
same method's full step (forward, backward, AdamW, EMA) on pre-made random tensors, timed
just before and just after the loop; the ratio is loop / model alone. The loop's pairs/s
are end to end: steps × batch between the first and the last epoch's end (views, collation,
the per-epoch diagnostics and checkpoints included; start-up and the first epoch not).

The *limit* is what any BYOL-family step must do: one forward+backward pass of the online
backbone over both views and one forward pass of the target backbone over both views,
nothing else (no heads, no loss, no optimiser, no EMA). A step of ``co-byol``/``byol`` adds
the heads, the losses, AdamW and the EMA update. Views are pre-made tensors (data loading is
measured apart, as two-view pairs/s of the augmentation pipeline in one process). The three
steps are timed interleaved in rounds and the ratios are taken within each round, so a
machine shared with other jobs still gives fair ratios. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import os

# before torch loads: no network call from albumentations, no OpenMP spin-waiting (cli.py)
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from doc_section import replace_section
from loop_throughput import (
    LOOP_END,
    LOOP_START,
    emulate_before,
    loop_section,
    loop_vs_alone,
    per_image_views,
)

from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.training.config import PretrainConfig  # noqa: E402
from cossl_edge.training.methods import build_method  # noqa: E402
from cossl_edge.training.optim import build_optimizer  # noqa: E402
from cossl_edge.training.views import TwoViews  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- train-throughput:start -->", "<!-- train-throughput:end -->"


def make_step(kind: str, size: int, width: float, batch: int, bf16: bool, device: str = "cpu"):
    method = "co-byol" if kind == "limit" else kind
    cfg = PretrainConfig(method=method, arch="resnet18", width=width,
                         contract=PreprocessContract(size=size))
    torch.manual_seed(0)
    m = build_method(cfg).to(device, memory_format=torch.channels_last)  # as the loop does
    m.train()
    opt = build_optimizer("adamw", m, 1e-3, 1e-4)
    a = torch.randn(batch, 1, size, size, device=device).contiguous(
        memory_format=torch.channels_last)
    b = torch.randn(batch, 1, size, size, device=device).contiguous(
        memory_format=torch.channels_last)
    amp = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)

    def step_method():
        with amp:
            loss, _ = m.loss(a, b)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        m.momentum_update(0.99)

    def step_limit():
        x = torch.cat([a, b]).contiguous(memory_format=torch.channels_last)
        with amp:
            y = m.backbone(x)
            with torch.no_grad():
                m.target_backbone(x)
        y.float().sum().backward()
        m.backbone.zero_grad(set_to_none=True)

    return step_limit if kind == "limit" else step_method


def views_per_second(size: int, n: int = 400) -> float:
    tv = TwoViews("camera", PreprocessContract(size=size), min_scale=0.2)
    img = np.random.default_rng(0).random((size, size, 1)).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(n):
        tv(img)
    return n / (time.perf_counter() - t0)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(size: int, width: float, batch: int, bf16: bool, rounds: int, steps: int,
            device: str = "cpu") -> dict:
    kinds = ("limit", "co-byol", "byol")
    fns = {k: make_step(k, size, width, batch, bf16, device) for k in kinds}
    for f in fns.values():  # warm-up
        for _ in range(3 if device != "cpu" else 1):
            f()
    _sync(device)
    per_round: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(rounds):
        order = kinds[r % 3:] + kinds[:r % 3]
        for k in order:
            t0 = time.perf_counter()
            for _ in range(steps):
                fns[k]()
            _sync(device)
            per_round[k].append(2 * batch * steps / (time.perf_counter() - t0))
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(per_round[a], per_round[b], strict=True))  # noqa: E731
    return {
        "size": size, "ips": {k: statistics.median(v) for k, v in per_round.items()},
        "co_vs_limit": ratio("co-byol", "limit"), "co_vs_byol": ratio("co-byol", "byol"),
        "byol_vs_limit": ratio("byol", "limit"), "views_per_s": views_per_second(size),
    }


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set(next((ln.split(":", 1)[1] for ln in text.splitlines()
                      if ln.startswith("flags")), "").split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    if {"avx512_bf16", "amx_bf16"} & flags:
        native = "AMX" if "amx_bf16" in flags else "AVX-512 BF16, no AMX"
        note = f" ({native}: bf16 in hardware)"
    else:
        note = " (no AVX-512 BF16, no AMX: bf16 is emulated)"
    return (", ".join(wanted) or "none of avx2/avx512f/avx512_bf16/amx_bf16") + note


def section(results: list[dict], args, device: str) -> str:
    rows = "\n".join(
        f"| {r['size']} px | {r['ips']['limit']:.0f} | {r['ips']['byol']:.0f} | "
        f"{r['ips']['co-byol']:.0f} | {r['co_vs_limit']:.2f} | {r['co_vs_byol']:.2f} | "
        f"{2 * r['views_per_s']:.0f} |" for r in results)
    ok = all(r["co_vs_limit"] >= 0.8 and r["co_vs_byol"] >= 0.8 for r in results)
    load = os.getloadavg()[0]
    return f"""{START}
## Training throughput (`benchmarks/train_throughput.py`)

ResNet-18 ×{args.width}, small-image stem, 1 channel, batch {args.batch} per view,
{'bf16 autocast' if args.bf16 else 'fp32'}, {device}, torch {torch.__version__},
{args.rounds} interleaved rounds × {args.steps} steps, medians (load average at the end:
{load:.1f}). Images/s counts both views. Command:
`python benchmarks/train_throughput.py --width {args.width} --batch {args.batch}{' --bf16' if args.bf16 else ''}`.

| input | limit img/s | byol img/s | co-byol img/s | co-byol / limit (≥ 0.8) | co-byol / byol (≥ 0.8) | augmentation img/s (1 process) |
|---|---|---|---|---|---|---|
{rows}

Targets met: **{'yes' if ok else 'no'}**. Data loading is not the bottleneck when the
augmentation column is well above the co-byol column (one worker process suffices).
{END}"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--loop", action="store_true", help="the real loop against the model "
                   "alone (default recipe, digits PNGs), fp32 and bf16")
    p.add_argument("--seconds", type=float, default=40.0,
                   help="--loop: about this long each run (whole epochs, at least 4)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"],
                   choices=["fp32", "bf16"])
    p.add_argument("--workers", type=int, default=0, help="--loop: DataLoader workers")
    p.add_argument("--work", type=Path, default=Path("build/train_throughput"))
    p.add_argument("--before", action="store_true", help="--loop: the data path as before "
                   "the batched views (Affine rotation, diagnostics every epoch); implies --no-write")
    p.add_argument("--preset", default="auto", choices=["auto", "camera", "medical", "local"],
                   help="--loop: the views (auto: camera for the digits; medical: the DICOM "
                   "default's MONAI intensity steps on the same images; local: "
                   "--findings local on 288 px synthetic scans, --sizes are the view sizes, "
                   "texture scrambling and CutPaste negatives); not auto implies --no-write")
    p.add_argument("--per-image", action="store_true", help="--loop: the views drawn image "
                   "by image (albumentations), not batch by batch on tensors; implies "
                   "--no-write")
    p.add_argument("--profile", action="store_true", help="where a step's time goes besides "
                   "the model, at the first of --sizes (prints a table; --json to keep it)")
    args = p.parse_args()
    if args.profile:
        from data_path_profile import profile

        args.size = args.sizes[0]
        profile(args)
        return
    device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if args.loop:
        if args.before:
            emulate_before()
        if args.per_image:
            per_image_views()
        if args.steps == 2:
            args.steps = 10
        results = loop_vs_alone(args.sizes, args.precisions, args.seconds, args.steps,
                                args.workers, args.work, args.preset)
        if args.json is not None:
            args.json.write_text(json.dumps({"device": device, "torch": torch.__version__,
                                             "flags": cpu_flags(), "results": results},
                                            indent=1))
        text = loop_section(results, args, device, cpu_flags())
        print(text)
        if not (args.no_write or args.before or args.per_image or args.preset != "auto"):
            replace_section(LOOP_START, LOOP_END, text)
        return
    if args.device != "cpu":
        device = f"{torch.cuda.get_device_name(0)} ({device})"
    results = []
    for s in args.sizes:
        r = measure(s, args.width, args.batch, args.bf16, args.rounds, args.steps, args.device)
        print(s, r, flush=True)
        results.append(r)
    if args.json is not None:
        args.json.write_text(json.dumps({"device": device, "torch": torch.__version__,
                                         "width": args.width, "batch": args.batch,
                                         "bf16": args.bf16, "results": results}, indent=1))
    text = section(results, args, device)
    print(text)
    if not args.no_write:
        replace_section(START, END, text)


if __name__ == "__main__":
    main()
