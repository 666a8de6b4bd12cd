"""``cossl-edge demo``: a first result from a ``pip install``, without a checkout or data.

Writes chest-radiograph phantoms (:mod:`cossl_edge.phantoms.pixels`: no finding, a nodule or
an effusion; anatomy, exposure and noise vary from image to image) as PNG files, then runs
the commands a user runs on their own data, printing each one first: ``pretrain`` on the
unlabeled images, ``export`` (fp32 and int8), ``fewshot eval`` of the int8 model on labelled
images it never saw (beside the raw-pixel floor), ``fewshot fit`` on five images per class.
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
import time
from pathlib import Path

import typer

SUPPORT_PER_CLASS = 5


def phantom_folders(out: Path) -> dict[str, Path]:
    """Where :func:`write_phantoms` puts each part of the data."""
    return {name: out / name for name in ("unlabeled", "labeled", "support")}


def write_phantoms(out: Path, unlabeled: int, labelled_per_class: int, seed: int = 0,
                   progress=None) -> dict[str, Path]:
    """``unlabeled/`` (flat), ``labeled/<finding>/`` and ``support/<finding>/`` (the first
    :data:`SUPPORT_PER_CLASS` labelled images of each class) of 8-bit PNG radiographs."""
    import numpy as np
    from PIL import Image

    from cossl_edge.phantoms.pixels import FINDINGS, radiograph

    rng = np.random.default_rng(seed)
    folders = phantom_folders(out)
    jobs = [("unlabeled", FINDINGS[i % len(FINDINGS)], i) for i in range(unlabeled)]
    jobs += [("labeled", f, j) for j in range(labelled_per_class) for f in FINDINGS]
    for kind, finding, i in jobs:
        pixels = np.round(255 * radiograph(rng, finding)).astype(np.uint8)
        targets = [folders["unlabeled"]] if kind == "unlabeled" else \
            [folders["labeled"] / finding] + \
            ([folders["support"] / finding] if i < SUPPORT_PER_CLASS else [])
        for folder in targets:
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"{kind[0]}{i:04d}-{finding[:2]}.png")
        if progress is not None:
            progress(1)
    return folders


def _run(args: list[str], log) -> None:
    """Print the command as a user would type it, run it, stop the demo if it fails."""
    typer.secho("\n$ cossl-edge " + shlex.join(args), fg=typer.colors.CYAN, bold=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cossl_edge", *args])
    if done.returncode != 0:
        typer.secho(f"the demo stopped: `cossl-edge {args[0]}` failed (exit "
                    f"{done.returncode}); its message is above", fg=typer.colors.RED, err=True)
        raise typer.Exit(done.returncode)
    log.append((" ".join(args[:2] if args[0] == "fewshot" else args[:1]),
                time.perf_counter() - t0))


def demo(
    out: Path = typer.Option(Path("cossl-demo"), "--out", help="Folder for the generated "
                             "images, the run and the models (reused when it exists)."),
    minutes: float = typer.Option(3.0, "--minutes", min=0.1, help="Pretraining time: CO-SSL "
                                  "on the unlabeled images for this many minutes."),
    unlabeled: int = typer.Option(900, "--unlabeled", min=30, help="Unlabeled radiographs "
                                  "to pretrain on."),
    labelled: int = typer.Option(40, "--labelled", min=SUPPORT_PER_CLASS + 2,
                                 help="Labelled radiographs per class for the evaluation."),
    tiny: bool = typer.Option(False, "--tiny", help="A 30-second check that every step "
                              "runs (a few training steps; the accuracy means nothing)."),
) -> None:
    """Pretrain, export and evaluate on generated chest radiographs, printing each command.

    Needs the package's train and export extras (torch, onnx); about five minutes on two
    CPU cores with the defaults. Nothing is downloaded: the images are drawn here."""
    from cossl_edge.progress import progress_bar

    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        typer.secho(f"the demo trains and exports a model and needs {', '.join(missing)}: "
                    "pip install 'cossl-edge[train,export]' (on a machine without an NVIDIA "
                    "GPU, take torch from https://download.pytorch.org/whl/cpu first)",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    if tiny:
        unlabeled, labelled = 60, SUPPORT_PER_CLASS + 3
    data, run = out / "data", out / "run"
    if not (data / "done").is_file():
        total = unlabeled + 3 * labelled
        typer.echo(f"writing {total} chest-radiograph phantoms (no finding, nodule, effusion) "
                   f"into {data}")
        with progress_bar("phantoms", total) as advance:
            write_phantoms(data, unlabeled, labelled, progress=advance)
        (data / "done").write_text("ok\n")
    folders = phantom_folders(data)
    log: list[tuple[str, float]] = []
    train = ["--max-steps", "3", "--batch-size", "16"] if tiny else \
        ["--time-budget", f"{round(minutes * 60)}s"]
    if not (run / "encoder.pt").is_file():
        _run(["pretrain", str(folders["unlabeled"]), "--out", str(run), *train], log)
    model = run / "encoder.int8.onnx"
    if not model.is_file():
        _run(["export", str(run), "--no-latency"] +
             (["--calibration-count", "16"] if tiny else []), log)
    episodes = ["--shots", "1,5", "--episodes", "20" if tiny else "200"]
    _run(["fewshot", "eval", str(model), str(folders["labeled"]), *episodes,
          "--json", str(out / "eval.json")], log)
    _run(["fewshot", "fit", str(model), str(folders["support"]), "--out",
          str(out / "classifier.json")], log)
    typer.secho("\nWhat happened", bold=True)
    typer.echo("  " + ", ".join(f"{name} {s:.0f} s" for name, s in log))
    typer.echo(f"  the accuracy above is the int8 model's on {3 * labelled} labelled images "
               "it never saw, beside raw pixels on the same episodes")
    typer.echo("Next, on your own images (a folder of PNG/JPEG/TIFF, DICOM or video files):")
    typer.echo("  cossl-edge pretrain MY_IMAGES --out my-run --time-budget 10m")
    typer.echo("  cossl-edge export my-run")
    typer.echo("  cossl-edge fewshot fit my-run/encoder.int8.onnx MY_SUPPORT --out clf.json")
    typer.echo("  cossl-edge fewshot predict clf.json NEW_IMAGES --out predictions.csv")


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)
