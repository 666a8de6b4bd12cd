"""`cossl-edge pretrain`: CO-SSL pretraining on a folder of images, DICOM or video."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import typer

from cossl_edge.commands.common import choices, plain, user_errors
from cossl_edge.commands.method_options import method_fields, with_method_options
from cossl_edge.commands.relaunch import launch_torchrun, resume_command
from cossl_edge.contract import DICOM_WINDOWS, RESIZE_MODES
from cossl_edge.runtime.pooling import POOLS
from cossl_edge.sources.image_decode import IMAGE_SUFFIXES
from cossl_edge.training.config import ARCHS, FINDINGS
from cossl_edge.training.view_settings import PRESETS

# The closed sets of values, from the code that checks them (training.config and
# view_settings are torch-free, and the method options read them at start anyway). The
# stems, optimizers and initial weights are checked in torch modules (backbones, optim,
# efficientnet): their lists are written here, and tests/test_cli_choices.py compares them.
STEMS = ("auto", "small", "strided", "standard")
OPTIMIZERS = ("adamw", "lars")
INITS = ("imagenet", "random")
Arch = choices("Arch", ARCHS)
Init = choices("Init", INITS)
Pool = choices("Pool", POOLS)
Findings = choices("Findings", FINDINGS)
Optimizer = choices("Optimizer", OPTIMIZERS)
Preset = choices("Preset", ("auto", *PRESETS))
Stem = choices("Stem", STEMS)
Window = choices("Window", DICOM_WINDOWS)
Resize = choices("Resize", RESIZE_MODES)
Channels = choices("Channels", ("1", "3"))


def image_formats() -> str:
    """The image suffixes the reader takes, for the help: PNG/JPEG/BMP/…"""
    names = {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WebP"}
    first = ["PNG", "JPEG", "TIFF"]
    found = {names.get(s, s[1:].upper()) for s in IMAGE_SUFFIXES}
    return "/".join([n for n in first if n in found] + sorted(found - set(first)))


def parse_auto(option: str, text: str, high: float, what: str) -> float | None:
    """'auto' → None (the recipe's rule), else a number in [0, high]; `what` names it in
    the error ("a probability between 0 and 1")."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= high:
        raise ValueError(f"{option} {text!r}: give {what}, or auto")
    return value


def parse_duration(text: str) -> float:
    """'10m', '90s', '1h30m', '600' → seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"cannot read the duration {text!r}; write e.g. 10m, 90s or 1h30m")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def _positive(value: float) -> float:
    if value <= 0:
        raise typer.BadParameter(f"must be positive, got {value}")
    return value


def register(app: typer.Typer) -> None:
    def pretrain(
        ctx: typer.Context,
        data_dir: Path = typer.Argument(..., help=f"Folder of unlabeled images "
                                        f"({image_formats()}, searched recursively), DICOM "
                                        "files, or video files."),
        out: Path = typer.Option(Path("runs/pretrain"), "--out", "-o",
                                 help="Run directory: config, metrics, checkpoints, encoder."),
        arch: Arch = typer.Option(Arch("auto"), help="Backbone: auto (efficientnet-lite0 "
                                  "from ImageNet weights when the images hold detail, i.e. "
                                  "do not shrink to 16 px without losing 1% of their "
                                  "variance, and the weights are installed — at 224 px for "
                                  "images of 200 px or more, 112 below; resnet10 from "
                                  "scratch otherwise), resnet10 (more steps per CPU "
                                  "minute), resnet18 or efficientnet-lite0."),
        init: Init = typer.Option(Init("imagenet"), help="efficientnet-lite0: imagenet (the "
                                  "ImageNet weights; the blocks up to stride 16 stay frozen) "
                                  "or random."),
        width: float = typer.Option(0.25, help="Width multiplier of the ResNet (1.0 = 64..512 "
                                    "channels). Smaller trains faster on a CPU."),
        pool: Pool = typer.Option(Pool("mean"), help="Global pooling of the last feature map "
                                  "into the embedding in training: mean, gem (generalised "
                                  "mean, p = 3: follows the strongest positions, for small "
                                  "local findings) or max."),
        embed_pool: Pool | None = typer.Option(None, help="Pooling of the exported "
                                               "embedding (mean, gem, max) (default: as "
                                               "--pool)."),
        findings: Findings = typer.Option(Findings("global"), help="What decides the labels "
                                          "you will classify: global (the whole image: the "
                                          "default recipe) or local (a small finding — a "
                                          "crack, a nodule, a fracture line — on a textured "
                                          "background: native-resolution patch views up to "
                                          "256 px images, texture scrambling, no blur, GeM "
                                          "pooling; docs/recipe.md). Options you give "
                                          "explicitly win."),
        image_size: str = typer.Option("auto", help="Side of the square input in pixels, or "
                                       "auto: 32, 64 or 128, nearest to the images' median "
                                       "short side (larger images → 128)."),
        channels: Channels = typer.Option(Channels("1"), help="Input channels: 1 (grayscale) "
                                          "or 3 (RGB)."),
        epochs: int | None = typer.Option(None, help="Number of passes over the data. "
                                          "Give this or --time-budget."),
        time_budget: str | None = typer.Option(None, help="Train for a wall-clock budget "
                                               "instead, e.g. 10m, 90s, 1h. The LR and EMA "
                                               "schedules follow the elapsed time."),
        batch_size: int = typer.Option(128, help="Images per step (per process)."),
        lr: float = typer.Option(2e-3, help="Peak learning rate after warmup."),
        backbone_lr: float = typer.Option(1.0, "--backbone-lr", callback=_positive,
                                          help="An ImageNet start: the learning rate of "
                                          "its trained blocks as a multiple of --lr (the "
                                          "heads keep --lr)."),
        recalibrate_bn: bool = typer.Option(True, "--recalibrate-bn/--keep-bn-stats",
                                            help="Once training ends, estimate the trained "
                                            "BatchNorm statistics again on clean training "
                                            "images (the augmented views' skew them)."),
        optimizer: Optimizer = typer.Option(Optimizer("adamw"), help="adamw or lars."),
        min_scale: float = typer.Option(0.2, help="Minimum area fraction of random crops."),
        scramble_texture: float = typer.Option(0.0, min=0.0, max=1.0, help="Probability of "
                                               "replacing a view's large-scale shading and "
                                               "fine grain by random ones, keeping its edges, "
                                               "lines and small blobs (camera views)."),
        jitter: float = typer.Option(0.4, min=0.0, max=1.0, help="Brightness and contrast "
                                     "jitter of the camera views (BYOL's 0.4); lower keeps "
                                     "faint findings from being washed out."),
        view_size: int | None = typer.Option(None, help="Side of the training views in "
                                             "pixels, smaller than --image-size: both views "
                                             "of a pair are cut from one native-resolution "
                                             "patch, and the encoder sees the whole image at "
                                             "inference (default: the image size)."),
        hflip: str = typer.Option("auto", help="Probability of a horizontal flip in each view, "
                                  "or auto: 0 for one-channel images (scans have a canonical "
                                  "left and right; digits and characters are not "
                                  "mirror-symmetric), 0.5 for colour."),
        solarize: float = typer.Option(0.2, help="Probability of solarizing the second view "
                                       "(camera views only)."),
        blur: float = typer.Option(1.0, min=0.0, max=1.0, help="Probability of a Gaussian "
                                   "blur of the first view; the second view is blurred a "
                                   "tenth as often (camera views; the medical views' "
                                   "smoothing, 0.5 and 0.1, is scaled by it)."),
        rotate: str = typer.Option("auto", help="Rotate each view by a random angle within "
                                   "±ROTATE degrees (0: none), or auto: 15 for one-channel "
                                   "images (a patient lies askew, a hand slants), 0 for "
                                   "colour."),
        preset: Preset = typer.Option(Preset("auto"), help="View pipeline: camera, medical, "
                                      "or auto (medical for DICOM, camera otherwise)."),
        stem: Stem = typer.Option(Stem("auto"), help="small (3×3 stride 1, no max-pool), "
                                  "strided (3×3 stride 2, no max-pool), standard (7×7 stride "
                                  "2, max-pool), or auto: small ≤ 48 px, strided ≤ 96 px, "
                                  "standard above."),
        window: Window = typer.Option(Window("header"), help="DICOM intensity window: header "
                                      "(the file's WindowCenter/Width, percentiles when "
                                      "absent), auto (0.5–99.5th percentiles), or a CT "
                                      "preset: lung, mediastinum, brain, bone, abdomen."),
        resize: Resize = typer.Option(Resize("resize"), help="How images become square: "
                                      "resize (stretch), pad (keep aspect, pad), "
                                      "center-crop."),
        dicom_stride: int = typer.Option(1, help="Use every k-th slice of DICOM volumes and "
                                         "multi-frame objects."),
        video_every: int = typer.Option(1, help="Use every k-th frame of video files."),
        video_fps: float | None = typer.Option(None, help="Or sample videos at about this "
                                               "many frames per second."),
        bf16: bool | None = typer.Option(None, "--bf16/--no-bf16", show_default="auto",
                                         help="bf16 autocast, or fp32. Default (neither "
                                         "flag): auto — a few steps of each are timed at "
                                         "the start, on this model, batch and device (a few "
                                         "seconds, inside --time-budget), and the faster "
                                         "trains; the choice is printed and kept in "
                                         "config.json. bf16 is faster on CPUs with AVX-512 "
                                         "BF16 or AMX and on most GPUs, slower on CPUs "
                                         "without. Give one to repeat a run bit for bit."),
        accumulate: int = typer.Option(1, help="Gradient accumulation steps."),
        workers: int = typer.Option(0, help="Data-loading worker processes. The views are "
                                    "drawn batch by batch on tensors in the training "
                                    "process, which keeps up with the model on its own "
                                    "(docs/benchmarks.md); a worker takes a core from the "
                                    "step."),
        seed: int = typer.Option(0, help="Random seed (data order, views, initialisation). "
                                 "With --epochs, the same seed repeats a run bit for bit on "
                                 "the same machine and thread count; --time-budget ties the "
                                 "number of steps to the machine's speed."),
        resume: bool = typer.Option(False, help="Continue the run in --out from its last "
                                    "checkpoint (same settings)."),
        device: str = typer.Option("auto", help="auto (CUDA if available), cpu, cuda or "
                                   "cuda:N (the N-th GPU)."),
        monitor: Path | None = typer.Option(None, help="Labelled folder (one subfolder per "
                                            "class) for an online kNN accuracy each epoch."),
        max_steps: int | None = typer.Option(None, help="Stop after this many steps "
                                             "(smoke tests)."),
        quiet: bool = typer.Option(False, help="No progress bar."),
        nproc: int = typer.Option(1, "--nproc", min=1, help="Train with N processes on this "
                                  "machine (PyTorch DDP through torchrun: gloo on CPU, NCCL on "
                                  "GPUs, one GPU each). --batch-size is per process; the LR "
                                  "is scaled (linear for lars, sqrt for adamw)."),
        volumes: bool = typer.Option(False, "--volumes", help="Train a 3D encoder on "
                                     "volumes: each DICOM series (and NIfTI file) is one "
                                     "volume, resampled to --spacing, views are "
                                     "--volume-size³ cubes (docs/method.md, Volumes)."),
        spacing: float = typer.Option(2.0, callback=_positive, help="--volumes: isotropic "
                                      "voxel spacing in mm the volumes are resampled to."),
        volume_size: int = typer.Option(64, min=8, help="--volumes: side of the cubic "
                                        "training views in voxels."),
        sync_bn: bool = typer.Option(False, "--sync-bn", help="With several GPU processes: "
                                     "BatchNorm statistics over the whole batch of all "
                                     "processes (SyncBatchNorm; GPUs only)."),
        **method_settings,
    ) -> None:
        """Pretrain an encoder with CO-SSL on unlabeled images and write a run directory.

        The method (--method) and its own settings come from the method list
        (cossl_edge.training.method_list); each setting says which methods it applies to."""
        if nproc > 1 and "WORLD_SIZE" not in os.environ:
            launch_torchrun(nproc, ctx)
        with user_errors():
            # the values the parser cannot check, before torch loads and any file is read
            auto_size = image_size.strip().lower() == "auto"
            if volumes and monitor is not None:
                raise ValueError("--monitor reads labelled images; not available with "
                                 "--volumes yet")
            if not auto_size and not image_size.strip().isdigit():
                raise ValueError(f"--image-size {image_size!r}: give a number of pixels or auto")
            auto_size = auto_size and not volumes  # a volume run's size is --volume-size
            hflip_p = parse_auto("--hflip", hflip, 1.0, "a probability between 0 and 1")
            rotate_deg = parse_auto("--rotate", rotate, 180.0,
                                    "an angle between 0 and 180 degrees")
            budget = parse_duration(time_budget) if time_budget else None

            from cossl_edge.contract import PreprocessContract
            from cossl_edge.training.config import PretrainConfig
            from cossl_edge.training.loop import pretrain as run

            method = method_settings.pop("method").value
            config = PretrainConfig(
                method=method, arch=plain(arch), init=plain(init), width=width,
                stem=plain(stem), pool=plain(pool), embed_pool=plain(embed_pool),
                optimizer=plain(optimizer), lr=lr, backbone_lr=backbone_lr,
                recalibrate_bn=recalibrate_bn,
                batch_size=batch_size,
                accumulate=accumulate, epochs=epochs, time_budget=budget, bf16=bf16,
                seed=seed, findings=plain(findings), preset=plain(preset),
                min_scale=min_scale, view_size=view_size,
                texture=scramble_texture, jitter=jitter,
                workers=workers, hflip=hflip_p, rotate=rotate_deg,
                solarize=solarize, blur=blur,
                volumes=volumes, spacing=spacing,
                contract=PreprocessContract(channels=int(plain(channels)),
                                            size=volume_size if volumes else 64 if auto_size
                                            else int(image_size),
                                            resize=plain(resize), window=plain(window)),
                dicom_stride=dicom_stride, video_every=video_every, video_fps=video_fps,
                device=device, monitor=str(monitor) if monitor else None,
                **method_fields(method, method_settings, explicit_fields(ctx)),
            )
            config = config.with_findings_recipe(keep=explicit_fields(ctx))
            if volumes and config.arch == "auto":
                config.arch = "resnet10"  # the 3D ResNet (training/backbones3d.py)
            if epochs is None and time_budget is None and max_steps is None and not resume:
                config.time_budget = 600.0
            summary = run(config, data_dir, out, resume=resume, progress=not quiet,
                          max_steps=max_steps, sync_bn=sync_bn, auto_size=auto_size)
            if int(os.environ.get("RANK", "0")) != 0:
                return  # one summary, from rank 0
            print_summary(summary, out, resume_command(ctx))

    app.command(no_args_is_help=True)(with_method_options(pretrain))


def summary_lines(summary: dict, out: Path, resume_cmd: str) -> list[str]:
    """What a run did and what to run next: steps, wall time, the precision and model that
    auto chose (config.json), where the encoder and the run directory are."""
    from cossl_edge import rundir

    try:
        facts = json.loads((out / rundir.CONFIG).read_text())
    except (OSError, ValueError):
        facts = {}
    size = (facts.get("contract") or {}).get("size")
    chosen = [facts["arch"] + (f" at {size} px" if size else "")] if "arch" in facts else []
    if facts.get("bf16_resolved") is not None:
        chosen.append("bf16" if facts["bf16_resolved"] else "fp32")
    epochs = summary["epochs"]
    span = f" ({epochs} epoch{'s' * (epochs != 1)})" if epochs else ""
    skipped = f" ({summary['skipped']} files skipped)" if summary.get("skipped") else ""
    done = "stopped" if summary.get("stopped") else "pretrained"
    lines = [f"{done}: {summary['steps']} steps{span} in {_wall(summary['elapsed_s'])} on "
             f"{summary['images']} images{skipped}" + (f"; {', '.join(chosen)}" if chosen
                                                         else "")]
    encoder = out / rundir.ENCODER
    if encoder.is_file() and not summary.get("stopped"):
        lines.append(f"encoder: {encoder}")
    lines.append(f"run directory: {out} (config.json, metrics.jsonl, checkpoints/)")
    if summary.get("stopped"):
        lines.append(f"next: continue it with  {resume_cmd}")
    else:
        what = ("(a 3D ONNX encoder; int8 where it measures faster)" if facts.get("dim") == 3
                else "(the ONNX and int8 files the edge commands run)")
        lines.append(f"next: cossl-edge export {shlex.quote(str(out))}   {what}")
    return lines


def print_summary(summary: dict, out: Path, resume_cmd: str) -> None:
    for line in summary_lines(summary, out, resume_cmd):
        typer.echo(line)


def _wall(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else \
        f"{minutes} min {sec:02d} s"


# CLI option → configuration field, where the names differ
FIELD_OF_OPTION = {"scramble_texture": "texture"}


def explicit_fields(ctx: typer.Context) -> set[str]:
    """Configuration fields whose option was given on the command line (not defaulted)."""
    return {FIELD_OF_OPTION.get(name, name) for name in ctx.params
            if getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}
