"""The real loop against the model alone (``benchmarks/train_throughput.py --loop``).

``training.loop.pretrain`` with the default recipe on the digits as PNG files, its epochs
timed from inside (a wrapped ``epoch_loader``: when each batch was asked for and arrived),
next to the method's whole step on pre-made random tensors just before and just after; and
the section of docs/benchmarks.md that reports it. ``emulate_before`` puts back the data path
as it was before the views were batched, for a before/after in one tree.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from cossl_edge.contract import PreprocessContract
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.methods import build_method
from cossl_edge.training.optim import build_optimizer


def training_step(method, config: PretrainConfig, views: list[torch.Tensor], bf16: bool
                  ) -> tuple[Callable[[], None], torch.optim.Optimizer]:
    """The method's whole step on one batch of ``views`` as a function (forward, under bf16
    autocast when asked; backward; the optimizer's step; the EMA update), and its optimizer
    (the loop's own choice for ``config``)."""
    opt = build_optimizer(config.optimizer, method, config.lr, config.weight_decay)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with amp:
            loss, _ = method(*views)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        method.momentum_update(0.99)

    return step, opt


def model_alone(config: PretrainConfig, bf16: bool, steps: int, batch: int = 128) -> float:
    """Pairs/s of the method's whole step on random tensors: the loop's limit."""
    torch.manual_seed(0)
    m = build_method(config).to(memory_format=torch.channels_last)
    m.train()
    s = config.view_size or config.contract.size
    views = [torch.randn(batch, config.contract.channels, s, s).contiguous(
        memory_format=torch.channels_last) for _ in range(3 if config.cutpaste else 2)]
    step, _ = training_step(m, config, views, bf16)
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
    """The data path as it was before the views were batched, for a before/after in one tree:
    the rotation by albumentations' Affine (one transform object per view, called on the
    image: its cost, the same pixels), OpenCV's default thread pool, the effective-rank
    diagnostics after every epoch and the views drawn image by image."""
    import albumentations as A

    from cossl_edge.training import monitoring, views

    monitoring.DIAGNOSE_SECONDS, monitoring.DIAGNOSE_SHARE = 0.0, float("inf")  # every epoch
    views._one_cv2_thread = lambda: None  # OpenCV's default thread pool

    def rotation(degrees: float, reflect: bool = False):
        if degrees <= 0:
            return lambda img, rng: img
        affine = A.Affine(rotate=(-degrees, degrees), border_mode=4 if reflect else 0, fill=0,
                          p=1.0)
        return lambda img, rng: affine(image=img)["image"]

    views._rotation = rotation
    per_image_views()


def per_image_views() -> None:
    """The views drawn image by image with albumentations (the data path before the batched
    views of ``training/batch_views/``)."""
    from cossl_edge.training import views

    views.BATCHED = False


def loop_vs_alone(sizes: list[int], precisions: list[str], seconds: float, steps: int,
                  workers: int, work: Path, preset: str = "auto") -> list[dict]:
    from datasets import write_split

    from cossl_edge.training import precision

    if preset == "local":  # --findings local: 288 px scans prepared at 256, 80 px patches
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from clinical_examples.finding_scans import write_dataset

        data = work / "finding-scans" / "unlabeled"
        if not data.is_dir():
            write_dataset(data.parent, unlabeled=LOCAL_SCANS, labeled=0, seed=0)
    else:
        data = write_split("digits", work / "datasets").unlabeled
    files = [f for f in data.iterdir() if f.suffix in (".png", ".dcm")]
    results = []
    for size in sizes:
        def config(size: int = size, **kw) -> PretrainConfig:
            if preset == "local":
                return PretrainConfig(contract=PreprocessContract(size=LOCAL_SIZE),
                                      findings="local", view_size=size, workers=workers,
                                      **kw).with_findings_recipe(keep={"view_size"})
            return PretrainConfig(contract=PreprocessContract(size=size), workers=workers,
                                  preset=preset, **kw)

        base = config()
        m = build_method(base).to(memory_format=torch.channels_last)
        v = [torch.randn(base.batch_size, 1, size, size).contiguous(
            memory_format=torch.channels_last) for _ in range(3 if base.cutpaste else 2)]
        auto = precision.resolve(None, m, lambda x: build_optimizer("adamw", x, 1e-3, 1e-4),
                                 v, torch.device("cpu"))
        print(size, "px: auto chooses", auto.describe(), flush=True)
        for prec in precisions:
            bf16 = prec == "bf16"
            cfg = config(bf16=bf16)
            before = model_alone(cfg, bf16, steps)
            # about --seconds of training, and at least 4 epochs (3 measured)
            epoch_s = len(files) // cfg.batch_size * cfg.batch_size / before
            cfg.epochs = max(4, math.ceil(seconds / epoch_s) + 1)
            loop = real_loop(cfg, data, work / f"loop-{size}-{prec}")
            after = model_alone(cfg, bf16, steps)
            alone = (before + after) / 2
            r = {"size": size, "precision": prec, "preset": preset, "alone_pairs_per_s": alone,
                 "alone_before_after": [before, after], **loop,
                 "ratio": loop["pairs_per_s"] / alone,
                 "auto": auto.to_dict() | {"bf16": auto.bf16}}
            print(json.dumps(r), flush=True)
            results.append(r)
    return results


LOCAL_SCANS, LOCAL_SIZE = 768, 256  # --preset local: unlabeled scans, the prepared side

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
