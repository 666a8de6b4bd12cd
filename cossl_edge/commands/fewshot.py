"""``cossl-edge fewshot fit|predict|eval``: few-shot classification on an ONNX encoder.

``fit`` reads a labelled folder through the model and fits a head
(:mod:`cossl_edge.fewshot`); ``predict`` runs the runtime's one inference path
(:class:`~cossl_edge.runtime.predictor.Predictor`); ``eval`` is in
:mod:`cossl_edge.commands.fewshot_eval`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import typer

from cossl_edge.commands import edge_options as opt
from cossl_edge.commands.common import plain, user_errors
from cossl_edge.commands.fewshot_dicom import dicom_kinds, overlay_writer, report_dicom
from cossl_edge.commands.fewshot_eval import evaluate
from cossl_edge.commands.fewshot_options import KIND, NORMAL, SCORING, Classifier, Scoring
from cossl_edge.commands.fewshot_read import features_labelled, model_centering
from cossl_edge.fewshot.anomaly import SEPARATION_MARGIN
from cossl_edge.progress import progress_bar
from cossl_edge.runtime.heatmaps import HeatmapWriter

app = typer.Typer(help="Few-shot classification: fit on a few labelled images, predict, or "
                  "evaluate with N-way K-shot episodes.", no_args_is_help=True)
app.command(name="eval")(evaluate)


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
    from cossl_edge.fewshot.policy import local_scoring as local_scoring_of

    classifier, local_scoring = plain(classifier), plain(local_scoring)
    with user_errors():
        sampling = opt.sampling(dicom_stride, video_every, video_fps)
        encoder = opt.open_encoder(model, contract, threads, spin)
        local_scoring = local_scoring_of(encoder.pooling, local_scoring)
        x, y, _ = features_labelled(encoder, support_dir, labels, batch_size, classifier,
                                     normal_class, sampling)
        kind, note = classifier, ""
        if classifier == "auto":
            kind, x, note = _choose(encoder, x, y, normal_class)
        clf = FewShotClassifier.fit(x, y, kind=kind, centering=model_centering(encoder,
                                    kind, local_scoring), C=c, k=k,
                                    abstain_threshold=abstain, normal_class=normal_class,
                                    scoring=local_scoring, pool=encoder.pooling)
        if note:
            clf.settings["chosen_by"] = note
        clf.bind_model(encoder.sha256, model, encoder.contract.to_dict())
        clf.save(out)
    if note:
        typer.echo(f"auto: {kind} (on the support, each image left out: " + "; ".join(
            f"{k} separation {v['separation']:.2f} d′, balanced accuracy "
            f"{v['accuracy']:.2f}, AUC {v['auc']:.2f}" for k, v in note.items())
            + f"; prototypes need a lead of more than {SEPARATION_MARGIN:g} d′)")
    elif classifier == "auto":
        typer.echo("auto: proto (the anomaly reading needs an anomaly map and two classes, "
                   "one of them normal)")
    typer.echo(f"{kind} classifier on {len(y)} images, {len(clf.classes)} classes "
               f"({', '.join(clf.classes)}) → {out}")


def _choose(encoder, readings: dict, labels: list[str], normal_class: str | None):
    """--classifier auto at fit: (kind, its features, how each reading separated the
    support)."""
    from cossl_edge.fewshot import READS
    from cossl_edge.fewshot.anomaly import choose_reading

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
    from cossl_edge.fewshot.binding import open_predictor
    from cossl_edge.runtime.embeddings import write_id_map
    from cossl_edge.sources import discover

    def maps_only(clf) -> None:
        for option, given in (("--heatmaps", heatmaps), ("--dicom-out", dicom_out)):
            if given is not None and not clf.has_heatmaps:
                raise ValueError(f"{classifier_file}: {option} needs an anomaly or local "
                                 f"classifier, this one is {clf.kind!r}; fit one with "
                                 "--classifier anomaly or --classifier local")

    with user_errors():
        sampling = opt.sampling(dicom_stride, video_every, video_fps)
        kinds = dicom_kinds(dicom_out, send)
        clf, predictor = open_predictor(classifier_file, model, threads, spin, maps_only)
        found = discover(data_dir, sampling)
        dicom = None
        if dicom_out is not None:
            dicom = overlay_writer(dicom_out, kinds, found.samples, data_dir, clf,
                                   predictor.encoder, classifier_file, abstain)
        writer = HeatmapWriter(heatmaps, clf) if heatmaps is not None else None

        def each_batch(batch) -> None:  # the map heads: pictures and DICOM objects
            called = clf.decide(batch.proba, top_k, abstain)
            if writer is not None:
                writer.write([r.sample_id() for r in batch.samples], batch.prepared,
                             batch.heatmaps, batch.proba, [p.label for p in called])
            if dicom is not None:
                dicom.write(batch.samples, batch.heatmaps, batch.proba, called)

        with progress_bar("classifying", len(found.samples)) as advance:
            result = predictor.predict_samples(found.samples, batch_size, advance, each_batch)
        if writer is not None:
            writer.close()
        preds = clf.decide(result.proba, top_k, abstain)
        samples = result.samples
        _write_predictions(out, [s.sample_id() for s in samples], preds)
        if id_map is not None:
            root = data_dir if data_dir.is_dir() else data_dir.parent
            write_id_map(id_map, samples, None, root)
        rows = dicom.close() if dicom is not None else []
    opt.report_skipped(*opt.count_skipped(found.skipped + result.skipped))
    unknown = sum(p.label == "unknown" for p in preds)
    also = f", heatmaps → {heatmaps}" if heatmaps is not None else ""
    typer.echo(f"{len(preds)} predictions ({unknown} unknown) → {out}{also}")
    if dicom is not None:
        report_dicom(dicom, rows, dicom_out)
    if id_map is not None:
        typer.echo(f"id → file: {id_map} (it holds raw paths: keep it local)")
    else:
        typer.echo("the ids are salted hashes of the files; --id-map PATH also writes a "
                   "CSV id,path that links them back (keep it local)")
    opt.warn_default_salt()


def _write_predictions(out: Path, ids: list[str], preds) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "probability", "top_k"])
        for i, p in zip(ids, preds, strict=True):
            top = ";".join(f"{c}:{q:.4f}" for c, q in p.top_k)
            w.writerow([i, p.label, f"{p.probability:.4f}", top])


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="fewshot")
