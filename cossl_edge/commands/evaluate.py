"""``cossl-edge evaluate``: linear probe, kNN, few-shot, robustness and redundancy of an
encoder (a run directory with torch, or an exported ONNX model) on a labelled folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from cossl_edge.commands import edge_options as opt
from cossl_edge.commands.common import user_errors
from cossl_edge.progress import progress_bar, self_closing_bar


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise ValueError(f"{option} {text!r}: expected comma-separated numbers, e.g. 0,0.1,0.2")
    return values


def open_extractor(path: Path, threads: int, batch_size: int, contract: Path | None = None):
    """An ONNX file → OnnxFeatures; a folder → the run directory's torch encoder."""
    if path.is_dir():
        try:
            from cossl_edge.training.run_features import RunFeatures
        except ImportError as e:
            raise ValueError(f"{path}: evaluating a run directory needs torch (the "
                             "cossl-edge[train] extra); or export it and evaluate the .onnx "
                             "file (cossl-edge export --local-map)") from e
        if threads:
            import torch

            torch.set_num_threads(threads)
        return RunFeatures.from_run_dir(path, batch_size=batch_size)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; pass a run directory or an .onnx model")
    from cossl_edge.evaluation.features import OnnxFeatures

    return OnnxFeatures(path, threads=threads, batch_size=batch_size, contract=contract)


SAMPLING_OPTIONS = ("dicom_stride", "video_every", "video_fps")


def data_sampling(model: Path, given: dict):
    """How densely to sample the labelled folder (a SamplingOptions): as the encoder was
    pretrained. A run directory records its sampling in config.json; an ONNX model does not,
    so there the options alone decide (``given``: the sampling options set on the command
    line, by name; they also override a run's record)."""
    from cossl_edge.sources import SamplingOptions

    recorded = SamplingOptions()
    if model.is_dir():
        from cossl_edge.training.run_config import load_run_config  # torch: a run directory

        recorded = load_run_config(model)[0].sampling()
    return SamplingOptions(**{**recorded.to_dict(), **given})


def load_labelled(folder: Path, contract, labels_csv: Path | None, sampling=None
                  ) -> tuple[np.ndarray, list[str]]:
    """Prepared images and their labels; unreadable files are skipped and reported.
    ``sampling`` (a SamplingOptions) thins DICOM series and videos; default: every sample."""
    from cossl_edge.sources import labelled_samples, load_many

    samples, labels, _ = labelled_samples(folder, labels_csv, sampling)
    arrays, kept_labels, skipped = [], [], []
    with progress_bar("decoding", len(samples)) as advance:
        for i in range(0, len(samples), 64):
            arr, kept, bad = load_many(samples[i:i + 64], contract)
            arrays.append(arr)
            kept_labels += [labels[i + k] for k in kept]
            skipped += bad
            advance(len(samples[i:i + 64]))
    opt.report_skipped(*opt.count_skipped(skipped))
    return np.concatenate(arrays), kept_labels


def _print_summary(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from cossl_edge.evaluation.protocol import drop_at

    table = Table(title=f"{res['images']} images, {len(res['classes'])} classes, "
                  f"embedding {res['embedding_dim']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("linear probe", f"{res['linear_probe']['accuracy']:.3f}")
    table.add_row("weighted kNN", f"{res['knn']['accuracy']:.3f}")
    for k, r in res["fewshot"]["shots"].items():
        table.add_row(f"{k}-shot (CL2N)", f"{r['accuracy']:.3f} ± {r['ci95']:.3f}")
    for kind, level in (("noise", 0.2), ("masking", 0.5)):
        d = drop_at(res["robustness"][kind], level)
        table.add_row(f"probe drop, {kind} {level}", "n/a" if d is None else f"{d:+.3f}")
    pgd = res["robustness"]["pgd"]
    for eps, e255, acc, ci in zip(pgd["levels"], pgd["levels_255"], pgd.get("accuracy", []),
                                  pgd.get("ci95", []), strict=False):
        if eps > 0:
            table.add_row(f"{pgd['shots']}-shot, PGD ε={e255:g}/255",
                          f"{acc:.3f} ± {ci:.3f}")
    if not pgd["available"]:
        table.add_row("PGD", "n/a")
    red = res["redundancy"]
    table.add_row("redundancy", f"{red['mean']:.3f}" if red["available"] else "n/a")
    Console().print(table)
    for what in ("masking", "pgd", "redundancy"):
        part = red if what == "redundancy" else res["robustness"][what]
        if not part.get("available"):
            typer.secho(f"{what} unavailable: {part['reason']}", fg=typer.colors.YELLOW, err=True)


def register(app: typer.Typer) -> None:
    @app.command(no_args_is_help=True)
    def evaluate(
        ctx: typer.Context,
        model: Path = typer.Argument(..., metavar="RUN_DIR_OR_MODEL", help="A pretraining "
                                     "run directory (needs torch) or an exported .onnx model "
                                     "(export with --local-map for masking and redundancy)."),
        labeled_dir: Path = typer.Argument(..., help="Labelled images: one subfolder per "
                                           "class (or any layout with --labels)."),
        json_out: Path | None = typer.Option(None, "--json", help="Write every result as "
                                             "JSON to this file."),
        plots: Path | None = typer.Option(None, "--plots", help="Folder for PNG plots: "
                                          "robustness curves and few-shot accuracy."),
        labels: Path | None = opt.LABELS,
        seed: int = typer.Option(0, "--seed", help="Seed of the train/test split, episodes, "
                                 "noise and masks."),
        test_fraction: float = typer.Option(0.5, "--test-fraction", min=0.05, max=0.95,
                                            help="Share of each class held out to score the "
                                            "linear probe, kNN and robustness curves."),
        shots: str = typer.Option("1,5,10", "--shots", help="Few-shot support sizes K."),
        episodes: int = typer.Option(200, "--episodes", min=1, help="Episodes per K."),
        queries: int = typer.Option(15, "--queries", min=1, help="Query images per class "
                                    "and episode."),
        noise: str = typer.Option("0,0.05,0.1,0.2,0.3,0.5", "--noise", help="Gaussian noise "
                                  "σ levels, on images scaled to [0, 1]."),
        masking: str = typer.Option("0,0.25,0.5,0.75,0.9", "--masking", help="Fractions of "
                                    "feature-map positions zeroed before pooling."),
        pgd_eps: str = typer.Option("0,1,2,4", "--pgd-eps", help="L∞ PGD radii ε in units "
                                    "of 1/255 of the [0, 1] image (0 alone: no attack). "
                                    "Needs a run directory (gradients)."),
        pgd_steps: int = typer.Option(5, "--pgd-steps", min=1, help="PGD steps (step size "
                                      "2.5·ε/steps)."),
        pgd_episodes: int = typer.Option(10, "--pgd-episodes", min=1, help="Episodes whose "
                                         "queries are attacked (the first of the clean "
                                         "few-shot episodes)."),
        pgd_shots: int = typer.Option(5, "--pgd-shots", min=1, help="Support size K of "
                                      "the attacked few-shot classifier."),
        pgd_random_start: bool = typer.Option(False, "--pgd-random-start", help="Start PGD "
                                              "at a uniform random point of the ε-ball."),
        batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per encoder "
                                       "call (onnxruntime or torch)."),
        threads: int = typer.Option(0, "--threads", min=0, help="Intra-op threads for "
                                    "onnxruntime or torch (0: their default)."),
        contract: Path | None = opt.CONTRACT,
        dicom_stride: int = opt.DICOM_STRIDE,
        video_every: int = opt.VIDEO_EVERY,
        video_fps: float | None = opt.VIDEO_FPS,
    ) -> None:
        """Evaluate an encoder: linear probe, weighted kNN, 1/5/10-shot episodes, accuracy
        under input noise, internal masking and a small L∞ PGD attack (run directories),
        and local redundancy. DICOM series and videos are sampled as a run directory was
        pretrained (its config.json) unless --dicom-stride/--video-every/--video-fps say
        otherwise; pass them for an ONNX model to see the folder as its training did."""
        values = {"dicom_stride": dicom_stride, "video_every": video_every,
                  "video_fps": video_fps}
        given = {name: values[name] for name in SAMPLING_OPTIONS
                 if ctx.get_parameter_source(name).name != "DEFAULT"}
        from cossl_edge.evaluation.plots import plot_evaluation
        from cossl_edge.evaluation.protocol import EvaluationSettings
        from cossl_edge.evaluation.protocol import evaluate as run

        with user_errors():
            settings = EvaluationSettings(
                seed=seed, test_fraction=test_fraction,
                shots=tuple(int(k) for k in _floats(shots, "--shots")), episodes=episodes,
                queries=queries, noise_levels=_floats(noise, "--noise"),
                mask_levels=_floats(masking, "--masking"),
                pgd_eps=tuple(e / 255 for e in _floats(pgd_eps, "--pgd-eps")),
                pgd_steps=pgd_steps, pgd_episodes=pgd_episodes, pgd_shots=pgd_shots,
                pgd_random_start=pgd_random_start)
            extractor = open_extractor(model, threads, batch_size, contract)
            sampling = data_sampling(model, given)
            images, y = load_labelled(labeled_dir, extractor.contract, labels, sampling)
            res = run(extractor, images, y, settings, progress=self_closing_bar)
            if json_out is not None:
                json_out.parent.mkdir(parents=True, exist_ok=True)
                json_out.write_text(json.dumps(res, indent=1))
            written = plot_evaluation(res, plots) if plots is not None else []
        _print_summary(res)
        for path in written:
            typer.echo(f"plot → {path}")
        if json_out is not None:
            typer.echo(f"results → {json_out}")
