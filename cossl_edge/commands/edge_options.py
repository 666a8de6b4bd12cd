"""Options and helpers shared by the edge commands (embed, fewshot, bench)."""

from __future__ import annotations

from pathlib import Path

import typer

from cossl_edge.commands.common import warn

MODEL = typer.Argument(..., help="Encoder ONNX file written by cossl-edge export.")
CONTRACT = typer.Option(None, "--contract", help="PreprocessContract JSON file, for a model "
                        "exported without the contract metadata (overrides the model's own).")
THREADS = typer.Option(0, "--threads", min=0, help="onnxruntime intra-op threads. Default "
                       "0: onnxruntime's choice, every core — a batch job over a folder runs "
                       "fastest so; give fewer to leave cores to other work (`cossl-edge "
                       "bench` shows the best count on this device; serve defaults to 1).")
SPIN = typer.Option(True, "--spin/--no-spin", help="Let idle worker threads spin-wait; "
                    "--no-spin saves power on battery devices at some latency cost.")
BATCH = typer.Option(16, "--batch-size", min=1, help="Images per onnxruntime call "
                     "(`cossl-edge bench` finds the best for a device).")
LABELS = typer.Option(None, "--labels", help="CSV of path,label (paths relative to the "
                      "folder) instead of class subfolders.")
# Sampling of DICOM series and videos: pass the values the model was pretrained with to see
# a folder as training did (no min= here: SamplingOptions gives the one-line error).
DICOM_STRIDE = typer.Option(1, "--dicom-stride", help="Use every k-th slice of DICOM volumes "
                            "and multi-frame objects (as pretrain --dicom-stride).")
VIDEO_EVERY = typer.Option(1, "--video-every", help="Use every k-th frame of video files "
                           "(as pretrain --video-every).")
VIDEO_FPS = typer.Option(None, "--video-fps", help="Or sample videos at about this many "
                         "frames per second (as pretrain --video-fps).")


def sampling(dicom_stride: int, video_every: int, video_fps: float | None):
    """The three sampling options as one SamplingOptions (its errors are user errors)."""
    from cossl_edge.sources import SamplingOptions  # decoders load only when a command runs

    return SamplingOptions(dicom_stride=dicom_stride, video_every=video_every,
                           video_fps=video_fps)


def open_encoder(model: Path, contract: Path | None, threads: int, spin: bool):
    from cossl_edge.runtime.encoder import Encoder  # onnxruntime loads only when a command runs

    return Encoder(model, contract=contract, threads=threads, spinning=spin)


def warn_int8_target(encoder) -> None:
    """One warning when an int8 model was tuned (export --target) for another kind of CPU."""
    from cossl_edge.cpu_kind import target_warning
    from cossl_edge.runtime import metadata as mm

    line = target_warning(encoder.path.name, encoder.metadata.get(mm.KEY_INT8_TARGET))
    if line:
        typer.secho(f"warning: {line}", fg=typer.colors.YELLOW, err=True)


def report_skipped(skipped: dict[str, int], tokens: list[str]) -> None:
    """One warning per reason, with a few file tokens (never raw paths)."""
    ranked = sorted(skipped.items(), key=lambda kv: -kv[1])
    for reason, count in ranked[:10]:
        typer.secho(f"warning: skipped {count} file(s): {reason}", fg=typer.colors.YELLOW,
                    err=True)
    if len(ranked) > 10:
        rest = sum(c for _, c in ranked[10:])
        typer.secho(f"warning: skipped {rest} more file(s) for {len(ranked) - 10} other "
                    "reasons", fg=typer.colors.YELLOW, err=True)
    if tokens:
        typer.secho(f"  e.g. {', '.join(tokens)}", fg=typer.colors.YELLOW, err=True)


def count_skipped(items) -> tuple[dict[str, int], list[str]]:
    """Skipped samples → (reason → count, first few file tokens)."""
    from cossl_edge.privacy import file_token

    counts: dict[str, int] = {}
    for s in items:
        counts[s.reason] = counts.get(s.reason, 0) + 1
    return counts, [file_token(s.path) for s in items[:5]]


def warn_default_salt() -> None:
    """One warning when the ids are salted with the public default salt: anyone can then
    recompute the id of a file whose path (or DICOM UID) they can guess."""
    import os

    from cossl_edge.privacy import DEFAULT_SALT_ENV

    if not os.environ.get(DEFAULT_SALT_ENV):
        warn(f"the ids are salted with the public default salt, so anyone who can guess a "
             f"file's path can recompute its id; set {DEFAULT_SALT_ENV} to a secret of your "
             "site (the same for every run whose ids you compare) before sharing them")
