"""``cossl-edge fewshot fit|predict|eval``: few-shot classification on an ONNX encoder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer

from cossl_edge.commands import edge_options as opt
from cossl_edge.commands.common import choices, plain, user_errors
from cossl_edge.fewshot import KINDS
from cossl_edge.local_fewshot import SCORINGS
from cossl_edge.progress import progress_bar

app = typer.Typer(help="Few-shot classification: fit on a few labelled images, predict, or "
                  "evaluate with N-way K-shot episodes.", no_args_is_help=True)

Classifier = choices("Classifier", ("auto", *KINDS))
Scoring = choices("Scoring", ("auto", *SCORINGS))
KIND = typer.Option(Classifier("auto"), "--classifier", help="auto: chooses from the "
                    "support set itself, leaving one image out, between proto and anomaly "
                    "(when the model has an anomaly map and the task is normal against one "
                    "finding), and says which; proto: CL2N nearest prototype (SimpleShot); "
                    "logreg: L2 logistic regression (numpy); knn: cosine kNN; anomaly: one "
                    "threshold on the model's anomaly map (its departure from the unlabeled "
                    "training images), with heatmaps; local: every local vector scored "
                    "(--local-scoring), with heatmaps, for a model exported with --local-map.")
NORMAL = typer.Option(None, "--normal-class", help="anomaly, auto and local: the class "
                      "without a finding (by default the one class named normal, "
                      "no_finding, negative, functional, good or ok).")
SCORING = typer.Option(Scoring("auto"), "--local-scoring", help="local: prototype (each "
                       "local vector against the class prototypes of the pooled "
                       "embeddings), memory (nearest normal support vector, PatchCore-style), "
                       "hybrid (the sum of both, each standardised on the normal support), or "
                       "auto: hybrid for a GeM- or max-pooled model (pretrain --findings "
                       "local), memory for a mean-pooled one.")


def _reads(encoder, classifier: str) -> list[str]:
    """The model outputs a classifier kind needs (auto: the embedding, and the anomaly map
    when the model has one)."""
    from cossl_edge.fewshot import READS

    if classifier == "auto":
        return ["embedding"] + (["anomaly_map"] if encoder.has_anomaly_map else [])
    if classifier == "local":
        encoder.require_local_map()
    if classifier == "anomaly":
        encoder.require_anomaly_map()
    return [READS[classifier]]


def _features_labelled(encoder, folder: Path, labels_csv: Path | None, batch_size: int,
                       classifier: str, normal_class: str | None, sampling=None,
                       raw: bool = False):
    """(features, labels, raw pixels or None) of a labelled folder: the embeddings, the
    local or anomaly maps the classifier reads, or for auto a dict of the readings;
    unreadable files are skipped and reported."""
    import numpy as np

    from cossl_edge.evaluation.features import downsampled_pixels
    from cossl_edge.fewshot_base import normal_class_of
    from cossl_edge.sources import labelled_samples

    names = _reads(encoder, classifier)
    samples, labels, _ = labelled_samples(folder, labels_csv, sampling)
    if classifier in ("local", "anomaly"):
        normal_class_of(sorted(set(labels)), normal_class)  # its error before the long part
    label_of = dict(zip(samples, labels, strict=True))
    parts: dict[str, list] = {n: [] for n in names}
    pixels, kept, skipped = [], [], []
    with progress_bar("embedding", len(samples)) as advance:
        for refs, prepared, bad in encoder.iter_prepared(samples, batch_size):
            if refs:
                out = encoder.run_readings(encoder.contract.normalize(prepared), names)
                for n in names:
                    parts[n].append(out[n])
                if raw:
                    pixels.append(downsampled_pixels(prepared))
            kept += refs
            skipped += bad
            advance(len(refs) + len(bad))
    opt.report_skipped(*opt.count_skipped(skipped))
    if not kept:
        raise ValueError(f"{folder}: no readable labelled images; check the folder")
    readings = {n: np.concatenate(v) for n, v in parts.items()}
    x = readings if classifier == "auto" else readings[names[0]]
    return x, [label_of[s] for s in kept], (np.concatenate(pixels) if raw else None)


@app.command()
def fit(
    model: Path = opt.MODEL,
    support_dir: Path = typer.Argument(..., help="Labelled images: one subfolder per class "
                                       "(or any layout with --labels)."),
    out: Path = typer.Option(..., "--out", help="Classifier JSON file to write."),
    classifier: Classifier = KIND,
    labels: Path | None = opt.LABELS,
    abstain: float = typer.Option(0.0, "--abstain", min=0.0, max=1.0, help="Default abstain "
                                  "threshold: predictions below this probability are "
                                  "'unknown' (predict --abstain overrides it)."),
    c: float = typer.Option(1.0, "--C", min=1e-6, help="logreg: inverse L2 strength "
                            "(scikit-learn's C); local: of its calibration."),
    k: int = typer.Option(5, "--k", min=1, help="knn: neighbours that vote."),
    normal_class: str | None = NORMAL,
    local_scoring: Scoring = SCORING,
    batch_size: int = opt.BATCH,
    threads: int = opt.THREADS,
    spin: bool = opt.SPIN,
    contract: Path | None = opt.CONTRACT,
    dicom_stride: int = opt.DICOM_STRIDE,
    video_every: int = opt.VIDEO_EVERY,
    video_fps: float | None = opt.VIDEO_FPS,
) -> None:
    """Fit a few-shot classifier on SUPPORT_DIR: on the embeddings, the anomaly maps or the
    local maps, as the classifier reads them (auto: chooses and says which)."""
    from cossl_edge.fewshot import FewShotClassifier

    classifier, local_scoring = plain(classifier), plain(local_scoring)
    with user_errors():
        sampling = opt.sampling(dicom_stride, video_every, video_fps)
        encoder = opt.open_encoder(model, contract, threads, spin)
        local_scoring = _scoring(encoder, local_scoring)
        x, y, _ = _features_labelled(encoder, support_dir, labels, batch_size, classifier,
                                     normal_class, sampling)
        kind, note = classifier, ""
        if classifier == "auto":
            kind, x, note = _choose(encoder, x, y, normal_class)
        clf = FewShotClassifier.fit(x, y, kind=kind, centering=_centering(encoder,
                                    kind, local_scoring), C=c, k=k,
                                    abstain_threshold=abstain, normal_class=normal_class,
                                    scoring=local_scoring, pool=encoder.pooling)
        if note:
            clf.settings["chosen_by"] = note
        clf.bind_model(encoder.sha256, model, encoder.contract.to_dict())
        clf.save(out)
    if note:
        typer.echo(f"auto: {kind} (on the support, each image left out: " + "; ".join(
            f"{k} balanced accuracy {v['accuracy']:.2f}, AUC {v['auc']:.2f}"
            for k, v in note.items()) + ")")
    elif classifier == "auto":
        typer.echo("auto: proto (the anomaly reading needs an anomaly map and two classes, "
                   "one of them normal)")
    typer.echo(f"{kind} classifier on {len(y)} images, {len(clf.classes)} classes "
               f"({', '.join(clf.classes)}) → {out}")


def _choose(encoder, readings: dict, labels: list[str], normal_class: str | None):
    """--classifier auto at fit: (kind, its features, how each reading separated the
    support)."""
    from cossl_edge.anomaly_fewshot import choose_reading
    from cossl_edge.fewshot import READS

    kind, scores = choose_reading(readings, labels, encoder.centering, normal_class)
    return kind, readings[READS[kind]], scores


@app.command()
def predict(
    classifier_file: Path = typer.Argument(..., help="Classifier JSON from fewshot fit."),
    data_dir: Path = typer.Argument(..., help="Folder or file of images to classify."),
    out: Path = typer.Option(..., "--out", help="CSV to write: id, label, probability, "
                             "top_k. The ids are salted hashes of the files (no paths): "
                             "--id-map links them back."),
    model: Path | None = typer.Option(None, "--model", help="Encoder ONNX file (default: the "
                                      "one recorded at fit); it must be that same model."),
    abstain: float | None = typer.Option(None, "--abstain", min=0.0, max=1.0, help="Abstain "
                                         "threshold (default: the classifier's)."),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Classes listed per image."),
    id_map: Path | None = typer.Option(None, "--id-map", help="Also write a CSV id,path "
                                       "that links each id of OUT back to its file. It "
                                       "holds raw paths: keep it local, never share it."),
    heatmaps: Path | None = typer.Option(None, "--heatmaps", help="local: also write one PNG "
                                         "per image into this folder, ID.png (the ids of "
                                         "the CSV): the image in grey, red where a finding "
                                         "is likely; and heatmaps.csv."),
    dicom_out: Path | None = typer.Option(None, "--dicom-out", help="local, anomaly, DICOM "
                                          "inputs: also write into this folder, per series, "
                                          "the Parametric Map of P(finding) and the BINARY "
                                          "Segmentation of the images called a finding, on "
                                          "the sources' geometry and referencing them, as "
                                          "cossl-edge serve sends them (needs the node "
                                          "extra); and overlays.csv."),
    send: str | None = typer.Option(None, "--send", help="With --dicom-out: the objects "
                                    "written, pmap, seg or both (default pmap,seg; the names "
                                    "of serve's --send)."),
    batch_size: int = opt.BATCH,
    threads: int = opt.THREADS,
    spin: bool = opt.SPIN,
    dicom_stride: int = opt.DICOM_STRIDE,
    video_every: int = opt.VIDEO_EVERY,
    video_fps: float | None = opt.VIDEO_FPS,
) -> None:
    """Classify the images of DATA_DIR; 'unknown' below the abstain threshold."""
    from cossl_edge.embeddings import write_id_map
    from cossl_edge.encoder import open_with_contract
    from cossl_edge.fewshot import FewShotClassifier
    from cossl_edge.sources import discover

    with user_errors():
        sampling = opt.sampling(dicom_stride, video_every, video_fps)
        kinds = _dicom_kinds(dicom_out, send)
        clf = FewShotClassifier.load(classifier_file)
        for option, given in (("--heatmaps", heatmaps), ("--dicom-out", dicom_out)):
            if given is not None and clf.kind not in ("local", "anomaly"):
                raise ValueError(f"{classifier_file}: {option} needs an anomaly or local "
                                 f"classifier, this one is {clf.kind!r}; fit one with "
                                 "--classifier anomaly or --classifier local")
        if model is None and not clf.model_path:
            raise ValueError(f"{classifier_file}: records no model; pass --model MODEL.onnx")
        model_path = model or Path(clf.model_path)
        encoder = open_with_contract(model_path, clf.contract, threads, spin)
        clf.check_model(encoder.sha256, model_path, classifier_file)
        found = discover(data_dir, sampling)
        dicom = None
        if dicom_out is not None:
            dicom = _overlay_writer(dicom_out, kinds, found.samples, data_dir, clf, encoder,
                                    classifier_file, abstain)
        with progress_bar("classifying", len(found.samples)) as advance:
            if clf.kind in ("local", "anomaly"):
                samples, preds, skipped = _predict_local(encoder, clf, found.samples, top_k,
                                                         abstain, heatmaps, batch_size, advance,
                                                         dicom)
            else:
                emb = encoder.embed_samples(found.samples, batch_size, on_batch=advance)
                samples, skipped = emb.samples, emb.skipped
                preds = clf.predict(emb.vectors, top_k=top_k, abstain_threshold=abstain)
        _write_predictions(out, [s.sample_id() for s in samples], preds)
        if id_map is not None:
            root = data_dir if data_dir.is_dir() else data_dir.parent
            write_id_map(id_map, samples, None, root)
        rows = dicom.close() if dicom is not None else []
    opt.report_skipped(*opt.count_skipped(found.skipped + skipped))
    unknown = sum(p.label == "unknown" for p in preds)
    also = f", heatmaps → {heatmaps}" if heatmaps is not None else ""
    typer.echo(f"{len(preds)} predictions ({unknown} unknown) → {out}{also}")
    if dicom is not None:
        _report_dicom(dicom, rows, dicom_out)
    if id_map is not None:
        typer.echo(f"id → file: {id_map} (it holds raw paths: keep it local)")
    else:
        typer.echo("the ids are salted hashes of the files; --id-map PATH also writes a "
                   "CSV id,path that links them back (keep it local)")
    opt.warn_default_salt()


def _predict_local(encoder, clf, samples, top_k: int, abstain: float | None,
                   heatmaps: Path | None, batch_size: int, advance, dicom=None):
    """Batch by batch: local (or anomaly) maps → predictions, heatmap PNGs when asked, and
    the images called a finding to ``dicom`` (an OverlayWriter) when given."""
    from cossl_edge.heatmaps import HeatmapWriter

    run = encoder.run_anomaly if clf.kind == "anomaly" else encoder.run_local
    _reads(encoder, clf.kind)
    kept, preds, skipped = [], [], []
    writer = HeatmapWriter(heatmaps, clf) if heatmaps is not None else None
    for refs, prepared, bad in encoder.iter_prepared(samples, batch_size):
        if refs:
            proba, heat = clf.predict_local(run(encoder.contract.normalize(prepared)))
            batch = clf.decide(proba, top_k, abstain)
            if writer is not None:
                writer.write([r.sample_id() for r in refs], prepared, heat, proba,
                             [p.label for p in batch])
            if dicom is not None:
                dicom.write(refs, heat, proba, batch)
            kept += refs
            preds += batch
        skipped += bad
        advance(len(refs) + len(bad))
    if writer is not None:
        writer.close()
    return kept, preds, skipped


def _dicom_kinds(dicom_out: Path | None, send: str | None) -> tuple[str, ...]:
    """--send with --dicom-out → the overlay kinds to write, checked before any work."""
    if dicom_out is None:
        if send is not None:
            raise ValueError("--send names what --dicom-out writes; add --dicom-out DIR")
        return ()
    from importlib.util import find_spec

    if find_spec("highdicom") is None:
        raise ValueError("--dicom-out writes with highdicom, which is not installed: "
                         "pip install 'cossl-edge[node]'")
    known = ("pmap", "seg")
    names = [t.strip().lower() for t in (send or "pmap,seg").split(",") if t.strip()]
    if not names or any(n not in known for n in names):
        raise ValueError(f"--send {send!r}: a comma-separated list of pmap, seg "
                         "(e.g. pmap,seg)")
    return tuple(k for k in known if k in names)


def _overlay_writer(folder: Path, kinds: tuple[str, ...], samples, data_dir: Path, clf,
                    encoder, classifier_file: Path, abstain: float | None):
    """The OverlayWriter of --dicom-out, with the identity the node gives its objects; an
    error when no input is DICOM (the objects lie on a DICOM source's geometry)."""
    import hashlib

    from cossl_edge import model_metadata as mm
    from cossl_edge.node.classify import classifier_identity
    from cossl_edge.node.overlay_writer import OverlayWriter

    if not any(s.kind == "dicom" for s in samples):
        raise ValueError(f"{data_dir}: --dicom-out needs DICOM inputs (a Parametric Map and "
                         "a Segmentation lie on a DICOM image's geometry and reference it); "
                         "these images are not DICOM: use --heatmaps for pictures")
    identity = classifier_identity(
        clf, encoder.sha256, encoder.metadata.get(mm.KEY_VERSION) or "unknown",
        hashlib.sha256(classifier_file.read_bytes()).hexdigest(),
        clf.abstain_threshold if abstain is None else abstain,
        clf.params.get("normal_class"))
    return OverlayWriter(folder, clf, identity, encoder.contract.resize, kinds)


def _report_dicom(dicom, rows: list, folder: Path) -> None:
    """What --dicom-out wrote, what it left out and why (no patient data)."""
    count = {k: sum(r[1] == k for r in rows) for k in ("pmap", "seg")}
    frames = len({i for r in rows for i in r[3].split(";")})
    typer.echo(f"DICOM: {count['pmap']} Parametric Map(s), {count['seg']} Segmentation(s) "
               f"of {frames} image(s) called a finding → {folder} (index: overlays.csv)")
    for (kind, why), n in sorted(dicom.left_out.items()):
        name = {"pmap": "Parametric Map", "seg": "Segmentation"}[kind]
        typer.echo(f"  no {name} for {n} image(s): {why}")
    if dicom.not_dicom:
        typer.echo(f"  {dicom.not_dicom} image(s) called a finding are not DICOM: no DICOM "
                   "objects for them (--heatmaps draws pictures)")


def _write_predictions(out: Path, ids: list[str], preds) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "probability", "top_k"])
        for i, p in zip(ids, preds, strict=True):
            top = ";".join(f"{c}:{q:.4f}" for c, q in p.top_k)
            w.writerow([i, p.label, f"{p.probability:.4f}", top])


@app.command(name="eval")
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
    from cossl_edge.episodes import evaluate_episodes
    from cossl_edge.evaluation.features import FLOOR_SIDE

    classifier, local_scoring = plain(classifier), plain(local_scoring)
    with user_errors():
        shot_list = _parse_shots(shots)
        sampling = opt.sampling(dicom_stride, video_every, video_fps)
        encoder = opt.open_encoder(model, contract, threads, spin)
        local_scoring = _scoring(encoder, local_scoring)
        x, y, raw = _features_labelled(encoder, labeled_dir, labels, batch_size, classifier,
                                       normal_class, sampling, raw=True)
        extra = {"normal_class": normal_class, "scoring": local_scoring,
                 "pool": encoder.pooling} if classifier == "local" else \
            {"normal_class": normal_class} if classifier in ("anomaly", "auto") else {}
        res = evaluate_episodes(x, y, shot_list, episodes, ways, classifier, queries, seed,
                                _centering(encoder, classifier, local_scoring), **extra)
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
    from cossl_edge.episodes import evaluate_episodes

    before = opt.open_encoder(path, None, threads, spin)
    x, y_before, _ = _features_labelled(before, folder, labels_csv, batch_size, "proto",
                                        None, sampling)
    if y_before != y:
        raise ValueError(f"{path}: it read other images of {folder} than MODEL did (its "
                         "contract differs); pass --no-init-floor")
    floor = evaluate_episodes(x, y, shots, episodes, ways, "proto", queries, seed,
                              before.centering)
    return {"model": path.name, "classifier": "proto", "shots": floor["shots"]}


def _scoring(encoder, scoring: str) -> str:
    """--local-scoring auto: hybrid for a GeM- or max-pooled model (pretrain --findings
    local), memory for a mean-pooled one."""
    if scoring == "auto":
        return "memory" if encoder.pooling == "mean" else "hybrid"
    return scoring


def _centering(encoder, classifier: str, scoring: str = "memory"):
    """The model's centring vector is its mean embedding: what the prototype scoring
    compares with, and the mean local vector too when the model pools by the mean;
    otherwise (GeM) the memory scoring centres on its support."""
    if classifier == "local" and scoring == "memory" and encoder.pooling != "mean":
        return None
    return encoder.centering


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


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="fewshot")
