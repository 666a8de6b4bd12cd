"""Training throughput: images/s of a co-byol step, a byol step, and the limit.

``python benchmarks/train_throughput.py [--sizes 32 64] [--batch 128] [--width 0.5] [--bf16]``

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
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from doc_section import replace_section

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
    tv = TwoViews("camera", PreprocessContract(size=size), 0.2)
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


def model_alone(config: PretrainConfig, bf16: bool, steps: int, batch: int = 128) -> float:
    """Pairs/s of the method's whole step on random tensors: the loop's limit."""
    torch.manual_seed(0)
    m = build_method(config).to(memory_format=torch.channels_last)
    m.train()
    opt = build_optimizer(config.optimizer, m, config.lr, config.weight_decay)
    s = config.contract.size
    views = [torch.randn(batch, config.contract.channels, s, s).contiguous(
        memory_format=torch.channels_last) for _ in range(2)]
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def step():
        with amp:
            loss, _ = m(*views)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        m.momentum_update(0.99)

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def real_loop(config: PretrainConfig, data: Path, out: Path) -> dict:
    """Run ``pretrain`` and read its epoch records: end-to-end pairs/s after the first
    epoch, and the median of the loop's own per-epoch figure (which stops its clock before
    the epoch's diagnostics and checkpoint)."""
    import shutil

    from rich.console import Console

    from cossl_edge import rundir
    from cossl_edge.training import loop
    from cossl_edge.training.loop import pretrain

    loaders: list[list[tuple[str, float]]] = []  # per epoch: ("call" | "ret" | "end", time)
    real_epoch_loader = loop.epoch_loader

    def timed_epoch_loader(*a, **kw):
        inner = real_epoch_loader(*a, **kw)
        events: list[tuple[str, float]] = []
        loaders.append(events)

        def gen():
            it = iter(inner)
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    events.append(("end", t))
                    return
                events.append(("call", t))
                events.append(("ret", time.perf_counter()))
                yield item
        return gen()

    shutil.rmtree(out, ignore_errors=True)
    loop.epoch_loader = timed_epoch_loader
    try:
        pretrain(config, data, out, progress=False, console=Console(stderr=True, quiet=True))
    finally:
        loop.epoch_loader = real_epoch_loader
    # the model's share of the wall time, epochs 2..N: a step runs from a batch's arrival
    # (ret) to the request of the next (call, or the epoch's end); the rest is waiting for
    # data, and the epoch-end work (diagnostics, checkpoint, a new loader)
    full = [e for e in loaders if e and e[-1][0] == "end"]
    span = full[-1][-1][1] - full[0][-1][1]
    step_s = data_s = 0.0
    for events in full[1:]:
        for (k0, t0), (k1, t1) in zip(events, events[1:], strict=False):
            if k0 == "ret":
                step_s += t1 - t0
            elif k0 == "call" and k1 == "ret":
                data_s += t1 - t0
    n_steps = sum(k == "ret" for e in full[1:] for k, _ in e)
    recs = [json.loads(line) for line in (out / rundir.METRICS).read_text().splitlines()]
    ends = [r for r in recs if "images_per_s" in r]
    if len(ends) < 3:
        raise SystemExit(f"{out}: {len(ends)} epochs; give more --seconds")
    first, last = ends[0], ends[-1]
    batch = config.batch_size
    return {"pairs_per_s": (last["step"] - first["step"]) * batch
            / (last["elapsed_s"] - first["elapsed_s"]),
            "in_epoch_pairs_per_s": statistics.median(r["images_per_s"] for r in ends[1:]),
            "steps": last["step"], "epochs": len(ends),
            "model_share": step_s / span, "data_wait_ms_per_step": 1e3 * data_s / n_steps,
            "epoch_end_ms_per_step": 1e3 * (span - step_s - data_s) / n_steps,
            "step_ms": 1e3 * step_s / n_steps}


def emulate_before() -> None:
    """The data path as it was before issue 16's changes, for a before/after in one tree:
    the rotation by albumentations' Affine (one transform object per view, called on the
    image: its cost, the same pixels), OpenCV's default thread pool and the effective-rank
    diagnostics after every epoch."""
    import albumentations as A

    from cossl_edge.training import loop, views

    loop.DIAGNOSE_SECONDS, loop.DIAGNOSE_SHARE = 0.0, float("inf")  # every epoch
    views._one_cv2_thread = lambda: None  # OpenCV's default thread pool

    def rotation(degrees: float, reflect: bool = False):
        if degrees <= 0:
            return lambda img, rng: img
        affine = A.Affine(rotate=(-degrees, degrees), border_mode=4 if reflect else 0, fill=0,
                          p=1.0)
        return lambda img, rng: affine(image=img)["image"]

    views._rotation = rotation


def loop_vs_alone(sizes: list[int], precisions: list[str], seconds: float, steps: int,
                  workers: int, work: Path) -> list[dict]:
    from datasets import write_split

    from cossl_edge.training import precision

    data = write_split("digits", work / "datasets").unlabeled
    results = []
    for size in sizes:
        base = PretrainConfig(contract=PreprocessContract(size=size), workers=workers)
        m = build_method(base).to(memory_format=torch.channels_last)
        v = [torch.randn(base.batch_size, 1, size, size).contiguous(
            memory_format=torch.channels_last) for _ in range(2)]
        auto = precision.resolve(None, m, lambda x: build_optimizer("adamw", x, 1e-3, 1e-4),
                                 v, torch.device("cpu"))
        print(size, "px: auto chooses", auto.describe(), flush=True)
        for prec in precisions:
            bf16 = prec == "bf16"
            cfg = PretrainConfig(contract=PreprocessContract(size=size), bf16=bf16,
                                 workers=workers)
            before = model_alone(cfg, bf16, steps)
            # about --seconds of training, and at least 4 epochs (3 measured)
            epoch_s = len(list(data.glob("*.png"))) // cfg.batch_size * cfg.batch_size / before
            cfg.epochs = max(4, math.ceil(seconds / epoch_s) + 1)
            loop = real_loop(cfg, data, work / f"loop-{size}-{prec}")
            after = model_alone(cfg, bf16, steps)
            alone = (before + after) / 2
            r = {"size": size, "precision": prec, "alone_pairs_per_s": alone,
                 "alone_before_after": [before, after], **loop,
                 "ratio": loop["pairs_per_s"] / alone,
                 "auto": auto.to_dict() | {"bf16": auto.bf16}}
            print(json.dumps(r), flush=True)
            results.append(r)
    return results


LOOP_START, LOOP_END = "<!-- train-loop:start -->", "<!-- train-loop:end -->"


def loop_section(results: list[dict], args, device: str, flags: str) -> str:
    rows = "\n".join(
        f"| {r['size']} px | {r['precision']} | {r['alone_pairs_per_s']:.0f} "
        f"({r['alone_before_after'][0]:.0f}, {r['alone_before_after'][1]:.0f}) | "
        f"{r['pairs_per_s']:.0f} | {r['ratio']:.2f} | **{r['model_share']:.2f}** | "
        f"{r['step_ms']:.0f} | {r['data_wait_ms_per_step']:.0f} | "
        f"{r['epoch_end_ms_per_step']:.0f} | {r['steps']} |" for r in results)
    autos = "; ".join(sorted({
        f"{r['size']} px: {'bf16' if r['auto']['bf16'] else 'fp32'} "
        f"(a step of {r['auto']['batch']}: {1e3 * r['auto']['step_s']['fp32']:.0f} ms fp32, "
        f"{1e3 * r['auto']['step_s']['bf16']:.0f} ms bf16; probe {r['auto']['probe_s']:.1f} s)"
        for r in results}))
    load = os.getloadavg()[0]
    return f"""{LOOP_START}
## The real loop against the model alone (`benchmarks/train_throughput.py --loop`)

The default recipe (co-simclr, ResNet-10 ×0.25, batch 128, `--workers {args.workers}`) on the
1,258 unlabeled digits as PNG files, {device}, torch {torch.__version__}; CPU flags:
{flags}. *Model alone*: the method's whole step (forward, backward, AdamW, EMA) on random
tensors, {args.steps} steps just before and just after the loop (mean; both in brackets).
*Real loop*: `pretrain` for about {args.seconds:.0f} s (whole epochs, at least 4), pairs/s
from the end of the first epoch to the end of the last (views, collation, diagnostics,
checkpoints included). *Model's share*: within that same span of the same run, the fraction
of the wall time the loop spent in its steps (from a batch's arrival to the request of the
next: transfer, forward, backward, AdamW, EMA); the rest is waiting for the views (*data
wait*) and the work between epochs (*epoch end*: diagnostics, checkpoints, a new loader).
It is the ratio loop / model alone measured in one run, under one load — the two-column
ratio beside it compares runs a minute apart and moves with the load of a shared machine.
Load average at the end: {load:.1f}. Command:
`python benchmarks/train_throughput.py --loop --sizes {' '.join(map(str, args.sizes))} --seconds {args.seconds:.0f} --workers {args.workers}`.

| input | precision | model alone pairs/s (before, after) | real loop pairs/s | loop / alone | model's share (target ≥ 0.85) | step ms | data wait ms/step | epoch end ms/step | steps |
|---|---|---|---|---|---|---|---|---|---|
{{rows}}

`--bf16 auto` timed on this machine at the start of the benchmark: {{autos}}.
{LOOP_END}""".replace("{rows}", rows).replace("{autos}", autos)


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set(next((ln.split(":", 1)[1] for ln in text.splitlines()
                      if ln.startswith("flags")), "").split())
    wanted = sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2",))
    return ", ".join(wanted) + (" (no AVX-512 BF16, no AMX: bf16 is emulated)"
                                if not {"avx512_bf16", "amx_bf16"} & flags else "")


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
                   "issue 16 (Affine rotation, diagnostics every epoch); implies --no-write")
    args = p.parse_args()
    device = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if args.loop:
        if args.before:
            emulate_before()
        if args.steps == 2:
            args.steps = 10
        results = loop_vs_alone(args.sizes, args.precisions, args.seconds, args.steps,
                                args.workers, args.work)
        if args.json is not None:
            args.json.write_text(json.dumps({"device": device, "torch": torch.__version__,
                                             "flags": cpu_flags(), "results": results},
                                            indent=1))
        text = loop_section(results, args, device, cpu_flags())
        print(text)
        if not (args.no_write or args.before):
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
