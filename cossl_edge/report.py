"""A run's visual report: one self-contained HTML page (figures embedded as base64 PNG).

Sections, each saying so when its data is missing:

1. training curves (``metrics.jsonl``: loss, learning rate, EMA τ, effective rank);
2. the kNN monitor (``knn_monitor`` in ``metrics.jsonl``, from ``pretrain --monitor``);
3. an embedding map (2D PCA of the exported encoder's embeddings, coloured by label);
4. a nearest-neighbour gallery (cosine, after centring);
5. few-shot accuracy against shots (``fewshot*.json`` in the run directory, as written by
   ``cossl-edge fewshot eval --json`` or the demo, else computed on the labelled images);
6. fp32 against int8: size, latency and agreement (``export-report.json``);
7. only when there are some: a few heatmaps of a local few-shot classifier (the folder that
   ``cossl-edge fewshot predict ... --heatmaps`` wrote, ``RUN_DIR/heatmaps/`` by default).

Images for the map and the gallery come from a labelled folder when one is given, else from
the run's ``calibration.npy`` (unlabelled). The page holds no path, patient name or id.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cossl_edge import rundir

EXPORT_REPORT = "export-report.json"
GALLERY_QUERIES = 6
GALLERY_NEIGHBOURS = 5
MAP_POINTS = 600
SHOTS = (1, 5, 10)
HEATMAPS = "heatmaps"  # the default heatmap folder in a run directory
HEATMAP_COUNT = 8


class ReportError(ValueError):
    """A run directory or input the report cannot use (the message names the fix)."""


@dataclass
class Section:
    key: str
    title: str
    figures: list[bytes] = field(default_factory=list)
    html: str = ""  # tables, notes
    missing: str = ""  # why there is no figure

    def render(self) -> str:
        body = "".join(f'<img alt="{self.title}" src="data:image/png;base64,'
                       f'{base64.b64encode(png).decode()}">' for png in self.figures)
        body += self.html
        if self.missing:
            body += f'<p class="missing">{html.escape(self.missing)}</p>'
        return (f'<section id="{self.key}"><h2>{html.escape(self.title)}</h2>'
                f"{body}</section>")


@dataclass
class Embedded:
    """Images (prepared, N×S×S×C in [0, 1]), their embeddings, labels (or None)."""

    images: np.ndarray
    vectors: np.ndarray
    labels: list[str] | None
    source: str  # a description without paths


def build_report(run_dir: str | Path, data: str | Path | None = None,
                 labels_csv: str | Path | None = None, model: str | Path | None = None,
                 title: str | None = None, heatmaps: str | Path | None = None) -> str:
    """The report page of a run directory, as an HTML string."""
    run = Path(run_dir)
    if not (run / rundir.CONFIG).is_file() and not (run / rundir.METRICS).is_file():
        raise ReportError(f"{run}: not a run directory (no config.json or metrics.jsonl); "
                          "pass the folder that cossl-edge pretrain wrote")
    records = read_metrics(run / rundir.METRICS)
    embedded = embed_for_report(run, data, labels_csv, model)
    sections = [curves_section(records), monitor_section(records),
                map_section(embedded), gallery_section(embedded),
                fewshot_section(run, embedded), export_section(run)]
    local = heatmap_section(Path(heatmaps) if heatmaps is not None else run / HEATMAPS,
                            required=heatmaps is not None)
    if local is not None:
        sections.append(local)
    return page(title or "cossl-edge run report", summary_table(run), sections)


def write_report(run_dir: str | Path, out: str | Path | None = None, **options) -> Path:
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    text = build_report(run_dir, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


# -- reading --------------------------------------------------------------------------------
def read_metrics(path: Path) -> list[dict]:
    """The records of ``metrics.jsonl``; a line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def find_model(run: Path, model: str | Path | None) -> Path | None:
    if model is not None:
        if not Path(model).is_file():
            raise ReportError(f"{model}: model file not found; pass an ONNX file from "
                              "cossl-edge export or leave --model out")
        return Path(model)
    for name in ("encoder.onnx", "encoder.int8.onnx"):
        if (run / name).is_file():
            return run / name
    return None


def embed_for_report(run: Path, data: str | Path | None, labels_csv: str | Path | None,
                     model: str | Path | None) -> Embedded | None:
    """Embeddings for the map, the gallery and the few-shot curve (None without a model)."""
    path = find_model(run, model)
    if path is None:
        if data is not None:
            raise ReportError(f"{run}: no encoder.onnx to embed --data with; run "
                              "cossl-edge export on the run first, or pass --model")
        return None
    from cossl_edge.encoder import Encoder

    encoder = Encoder(path)
    if data is not None:
        return _embed_labelled(encoder, Path(data), labels_csv)
    calib = run / rundir.CALIBRATION
    if not calib.is_file():
        return None
    images = np.load(calib, allow_pickle=False).astype(np.float32)
    return Embedded(images, encoder.embed_prepared(images), None,
                    f"{len(images)} unlabelled training images (calibration.npy)")


def _embed_labelled(encoder, data: Path, labels_csv: str | Path | None) -> Embedded:
    from cossl_edge.sources import labelled_samples, load_many

    samples, labels, _ = labelled_samples(data, labels_csv)
    if len(samples) > MAP_POINTS:  # a fixed pick keeps the page small and quick
        pick = np.sort(np.random.default_rng(0).choice(len(samples), MAP_POINTS, False))
        samples, labels = [samples[i] for i in pick], [labels[i] for i in pick]
    images, kept, _ = load_many(samples, encoder.contract)
    if len(images) == 0:
        raise ReportError(f"{data}: no readable labelled images; check --data")
    return Embedded(images, encoder.embed_prepared(images), [labels[i] for i in kept],
                    f"{len(images)} labelled images")


# -- sections -------------------------------------------------------------------------------
def curves_section(records: list[dict]) -> Section:
    from cossl_edge import report_figures as fig

    s = Section("training-curves", "Training curves")
    if not any(r.get("loss") is not None for r in records):
        s.missing = "No training record with a loss in metrics.jsonl (the run has not " \
                    "finished an epoch)."
        return s
    s.figures.append(fig.training_curves(records))
    return s


def monitor_section(records: list[dict]) -> Section:
    from cossl_edge import report_figures as fig

    s = Section("knn-monitor", "kNN monitor")
    if not any(r.get("knn_monitor") is not None for r in records):
        s.missing = "No kNN monitor in metrics.jsonl: pretrain with --monitor LABELED_DIR " \
                    "to follow a kNN accuracy each epoch."
        return s
    s.figures.append(fig.knn_monitor(records))
    return s


def pca_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def map_section(emb: Embedded | None) -> Section:
    from cossl_edge import report_figures as fig

    s = Section("embedding-map", "Embedding map (PCA)")
    if emb is None or len(emb.vectors) < 3:
        s.missing = "No embeddings: export the run (cossl-edge export) so the report can " \
                    "embed images; pass --data LABELED_DIR to colour the map by label."
        return s
    s.figures.append(fig.embedding_map(pca_2d(_centred(emb.vectors)), emb.labels))
    s.html = f"<p>{html.escape(emb.source)}.</p>"
    return s


def _centred(x: np.ndarray) -> np.ndarray:
    from cossl_edge.fewshot import cl2n

    return cl2n(x, x.mean(axis=0))


def gallery_section(emb: Embedded | None) -> Section:
    from cossl_edge import report_figures as fig

    s = Section("neighbours", "Nearest-neighbour gallery")
    if emb is None or len(emb.vectors) < GALLERY_NEIGHBOURS + 2:
        s.missing = "Not enough embedded images for a gallery (export the run first)."
        return s
    z = _centred(emb.vectors)
    queries = np.random.default_rng(1).choice(len(z), min(GALLERY_QUERIES, len(z)), False)
    sims = z[queries] @ z.T
    sims[np.arange(len(queries)), queries] = -np.inf  # a query is not its own neighbour
    near = np.argsort(-sims, axis=1)[:, :GALLERY_NEIGHBOURS]
    s.figures.append(fig.neighbour_gallery(emb.images, list(queries), near, emb.labels,
                                           np.take_along_axis(sims, near, 1)))
    s.html = "<p>Each row: a query, then its nearest neighbours by cosine similarity.</p>"
    return s


def fewshot_curves(run: Path, emb: Embedded | None) -> dict[str, dict[int, tuple[float, float]]]:
    """encoder name → {shots: (accuracy, ci95)} from fewshot*.json, else computed."""
    curves: dict[str, dict[int, tuple[float, float]]] = {}
    for path in sorted(run.glob("fewshot*.json")):
        data = _read_json(path) or {}
        results = data.get("encoders", {"": data}) if "shots" not in data else {"": data}
        for name, res in results.items():
            points = _points(res)
            if points:
                curves[name or path.stem] = points
    if curves or emb is None or emb.labels is None:
        return curves
    from cossl_edge.episodes import EpisodeError, evaluate_episodes

    for k in SHOTS:
        try:
            res = evaluate_episodes(emb.vectors, emb.labels, shots=(k,), episodes=100)
        except EpisodeError:
            break
        curves.setdefault("this encoder", {}).update(_points(res))
    return curves


def _points(result: object) -> dict[int, tuple[float, float]]:
    if not isinstance(result, dict) or not isinstance(result.get("shots"), dict):
        return {}
    return {int(k): (float(v["accuracy"]), float(v.get("ci95", 0.0)))
            for k, v in result["shots"].items() if isinstance(v, dict) and "accuracy" in v}


def fewshot_section(run: Path, emb: Embedded | None) -> Section:
    from cossl_edge import report_figures as fig

    s = Section("fewshot", "Few-shot accuracy against shots")
    curves = fewshot_curves(run, emb)
    if not curves:
        s.missing = "No few-shot results: run cossl-edge fewshot eval ... --json " \
                    "RUN_DIR/fewshot.json, or pass --data LABELED_DIR to the report."
        return s
    s.figures.append(fig.fewshot_curves(curves))
    rows = "".join(f"<tr><td>{html.escape(name)}</td>" + "".join(
        f"<td>{k}-shot {100 * a:.1f} ± {100 * c:.1f}%</td>" for k, (a, c) in sorted(p.items()))
        + "</tr>" for name, p in curves.items())
    s.html = f"<table>{rows}</table>"
    return s


def export_section(run: Path) -> Section:
    from cossl_edge import report_figures as fig

    s = Section("export", "fp32 against int8: size, latency, agreement")
    report = _read_json(run / EXPORT_REPORT)
    if report is None:
        s.missing = "No export-report.json: run cossl-edge export on this run."
        return s
    rows = [(f"{name} file", f"{info['bytes'] / 1e6:.2f} MB")
            for name, info in report.get("files", {}).items()]
    agree = report.get("int8_agreement") or {}
    for key, label in (("cosine_mean", "int8 cosine to fp32, mean"),
                       ("cosine_min", "int8 cosine to fp32, min"),
                       ("knn_top1_agreement", "int8 kNN top-1 agreement")):
        if agree.get(key) is not None:
            rows.append((label, f"{agree[key]:.4f}"))
    if "int8" in report:
        rows.append(("int8 target", str(report["int8"].get("target", "?"))))
    s.html = "<table>" + "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>"
                                 for a, b in rows) + "</table>"
    if report.get("latency"):
        s.figures.append(fig.latency_bars(report["latency"]))
    else:
        s.missing = "Latency was not measured (exported with --no-latency)."
    return s


def heatmap_section(folder: Path, required: bool = False) -> Section | None:
    """The heatmaps with the highest P(finding), or None when ``folder`` holds none (an error
    when the folder was asked for)."""
    from cossl_edge import report_figures as fig
    from cossl_edge.heatmaps import read_index

    rows = read_index(folder)
    if not rows:
        if required:
            raise ReportError(f"{folder}: no heatmaps.csv with its PNGs; write them with "
                              "cossl-edge fewshot predict CLF.json IMAGES --out preds.csv "
                              f"--heatmaps {folder}")
        return None
    from PIL import Image

    total = len(rows)
    rows = sorted(rows, key=lambda r: -r["p_finding"])[:HEATMAP_COUNT]
    images = [np.asarray(Image.open(folder / f"{r['id']}.png").convert("RGB")) for r in rows]
    titles = [f"{r['label']} · P(finding) {r['p_finding']:.2f}" for r in rows]
    s = Section("heatmaps", "Local few-shot classifier: heatmaps")
    s.figures.append(fig.heatmap_gallery(images, titles))
    s.html = (f"<p>The {len(rows)} of {total} images with the highest "
              "P(finding); red where a position alone would be called a finding.</p>")
    return s


def summary_table(run: Path) -> str:
    config = _read_json(run / rundir.CONFIG) or {}
    contract = config.get("contract") or {}
    items = [("method", config.get("method")), ("backbone", config.get("arch")),
             ("width", config.get("width")), ("input", f"{contract.get('size')} px, "
                                              f"{contract.get('channels')} ch"
                                              if contract else None),
             ("feature map", config.get("feature_grid")), ("training images",
                                                           config.get("num_images"))]
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in items if v is not None)
    return f"<table class='summary'>{rows}</table>" if rows else ""


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
img{max-width:100%;display:block;margin:.5em 0}table{border-collapse:collapse}
td,th{padding:.2em .8em;border-bottom:1px solid #eee;text-align:left}
.missing{color:#a60;font-style:italic}"""


def page(title: str, summary: str, sections: list[Section]) -> str:
    nav = " · ".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(s.render() for s in sections)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{summary}<nav>{nav}</nav>{body}</body></html>")
