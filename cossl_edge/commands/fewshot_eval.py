"""``cossl-edge fewshot eval``: N-way K-shot episodes on a labelled folder, beside the
raw-pixel floor and the network before adaptation."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cossl_edge.commands import edge_options as opt
from cossl_edge.commands.common import plain, user_errors
from cossl_edge.commands.fewshot_options import KIND, NORMAL, SCORING, Classifier, Scoring
from cossl_edge.commands.fewshot_read import features_labelled, model_centering


def evaluate(
    model: Path = opt.MODEL,
    labeled_dir: Path = typer.Argument(..., help="Labelled images: one subfolder per class "
                                       "(or any layout with --labels)."),
    shots: str = typer.Option("1,5,10", "--shots", help="Comma-separated support sizes K."),
    episodes: int = typer.Option(200, "--episodes", min=1, help="Episodes per K."),
    ways: int | None = typer.Option(None, "--ways", min=2, help="Classes per episode "
                                    "(default: all classes)."),
    queries: int = typer.Option(15, "--queries", min=1, help="Query images per class and "
                                "episode (fewer when a class has fewer left)."),
    classifier: Classifier = KIND,
    normal_class: str | None = NORMAL,
    local_scoring: Scoring = SCORING,
    seed: int = typer.Option(0, "--seed", help="Seed of the episode draws."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the results as JSON."),
    init_model: Path | None = typer.Option(
        None, "--init-model", help="The network before pretraining adapted it, scored on the "
        "same episodes as a floor (nearest prototype on its embedding). Default: "
        "encoder.init.onnx beside MODEL, which export writes for runs started from ImageNet "
        "weights; --no-init-floor skips it."),
    init_floor: bool = typer.Option(True, "--init-floor/--no-init-floor", help="Score the "
                                    "network before adaptation when there is one."),
    labels: Path | None = opt.LABELS,
    batch_size: int = opt.BATCH,
    threads: int = opt.THREADS,
    spin: bool = opt.SPIN,
    contract: Path | None = opt.CONTRACT,
    dicom_stride: int = opt.DICOM_STRIDE,
    video_every: int = opt.VIDEO_EVERY,
    video_fps: float | None = opt.VIDEO_FPS,
) -> None:
    """N-way K-shot episodes on LABELED_DIR: accuracy ± 95% CI, balanced accuracy,
    per-class recall, and AUC for two-way tasks; beside them, on the same episodes, raw
    pixels and (for a run started from ImageNet weights) the network before adaptation."""
    from cossl_edge.evaluation.episodes import evaluate_episodes
    from cossl_edge.evaluation.features import FLOOR_SIDE
    from cossl_edge.fewshot.policy import local_scoring as local_scoring_of

    classifier, local_scoring = plain(classifier), plain(local_scoring)
    with user_errors():
        shot_list = _parse_shots(shots)
        sampling = opt.sampling(dicom_stride, video_every, video_fps)
        encoder = opt.open_encoder(model, contract, threads, spin)
        local_scoring = local_scoring_of(encoder.pooling, local_scoring)
        x, y, raw = features_labelled(encoder, labeled_dir, labels, batch_size, classifier,
                                       normal_class, sampling, raw=True)
        extra = {"normal_class": normal_class, "scoring": local_scoring,
                 "pool": encoder.pooling} if classifier == "local" else \
            {"normal_class": normal_class} if classifier in ("anomaly", "auto") else {}
        res = evaluate_episodes(x, y, shot_list, episodes, ways, classifier, queries, seed,
                                model_centering(encoder, classifier, local_scoring), **extra)
        floor = evaluate_episodes(raw, y, shot_list, episodes, ways, "proto", queries, seed)
        res["raw_pixel_floor"] = {"pixels": f"{FLOOR_SIDE}x{FLOOR_SIDE}",
                                  "classifier": "proto", "shots": floor["shots"]}
        before = _init_model_path(model, init_model) if init_floor else None
        if before is not None:
            res["init_floor"] = _init_floor(before, labeled_dir, labels, batch_size, threads,
                                            spin, sampling, y, shot_list, episodes, ways,
                                            queries, seed)
        res["model_sha256"] = encoder.sha256
        if json_out is not None:
            json_out.write_text(json.dumps(res, indent=1))
    _print_results(res)


def _init_model_path(model: Path, given: Path | None) -> Path | None:
    """``--init-model``, else ``encoder.init.onnx`` beside MODEL when export wrote one."""
    from cossl_edge.rundir import INIT_MODEL as INIT_FILE

    if given is not None:
        if not given.is_file():
            raise ValueError(f"--init-model {given}: no such file; pass the "
                             f"{INIT_FILE} that export wrote, or leave the option out")
        return given
    sibling = model.parent / INIT_FILE
    return sibling if sibling.is_file() and sibling.resolve() != model.resolve() else None


def _init_floor(path: Path, folder: Path, labels_csv, batch_size: int, threads: int,
                spin: bool, sampling, y: list[str], shots: list[int], episodes: int,
                ways: int | None, queries: int, seed: int) -> dict:
    """The network before adaptation on the same episodes (prototypes on its embedding)."""
    from cossl_edge.evaluation.episodes import evaluate_episodes

    before = opt.open_encoder(path, None, threads, spin)
    x, y_before, _ = features_labelled(before, folder, labels_csv, batch_size, "proto",
                                        None, sampling)
    if y_before != y:
        raise ValueError(f"{path}: it read other images of {folder} than MODEL did (its "
                         "contract differs); pass --no-init-floor")
    floor = evaluate_episodes(x, y, shots, episodes, ways, "proto", queries, seed,
                              before.centering)
    return {"model": path.name, "classifier": "proto", "shots": floor["shots"]}


def _parse_shots(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"--shots {text!r}: expected positive integers, e.g. 1,5,10")
    return values


def _print_results(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from cossl_edge.evaluation.features import FLOOR_SIDE

    table = Table(title=f"{res['ways']}-way, {res['episodes']} episodes, {res['classifier']}")
    floor = res.get("raw_pixel_floor", {}).get("shots", {})
    before = res.get("init_floor", {}).get("shots", {})
    for col in ("shots", "accuracy", "balanced acc.", "AUC", "per-class recall",
                "raw pixels") + (("before adaptation",) if before else ()):
        table.add_column(col)
    for k, r in res["shots"].items():
        auc = f"{r['auc']:.3f} ± {r['auc_ci95']:.3f}" if "auc" in r else "–"
        recall = ", ".join(f"{c}: {v:.2f}" for c, v in r["per_class_recall"].items())
        raw = f"{floor[k]['accuracy']:.3f} ± {floor[k]['ci95']:.3f}" if k in floor else "–"
        row = [k, f"{r['accuracy']:.3f} ± {r['ci95']:.3f}", f"{r['balanced_accuracy']:.3f}",
               auc, recall, raw]
        if before:
            b = before.get(k)
            row.append(f"{b['accuracy']:.3f} ± {b['ci95']:.3f}" if b else "–")
        table.add_row(*row)
    console = Console()
    console.print(table)
    for k, r in res["shots"].items():
        if "chosen" in r:
            console.print(f"{k}-shot, auto chose: " + ", ".join(
                f"{kind} in {n} episodes" for kind, n in sorted(r["chosen"].items())))
    if floor:
        console.print(f"raw pixels: the same episodes on the prepared images at "
                      f"{FLOOR_SIDE}×{FLOOR_SIDE} px (nearest prototype); a model that does "
                      "not beat them has not learned the task")
    if before:
        console.print(f"before adaptation: the same episodes on "
                      f"{res['init_floor']['model']} (the ImageNet network the run started "
                      "from, nearest prototype): what pretraining added on top of it")
