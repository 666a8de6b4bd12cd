"""The sections of the run report (``cossl_edge.report``): each a title, figures and notes,
or the reason it has none."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cossl_edge import rundir
from cossl_edge.report.data import Embedded, ReportError, fewshot_curves, read_json

EXPORT_REPORT = "export-report.json"
GALLERY_QUERIES = 6
GALLERY_NEIGHBOURS = 5
HEATMAP_COUNT = 8


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


def curves_section(records: list[dict]) -> Section:
    return _records_section(records, "loss", Section("training-curves", "Training curves"),
                            "No training record with a loss in metrics.jsonl (the run has not "
                            "finished an epoch).", "training_curves")


def monitor_section(records: list[dict]) -> Section:
    return _records_section(records, "knn_monitor", Section("knn-monitor", "kNN monitor"),
                            "No kNN monitor in metrics.jsonl: pretrain with --monitor "
                            "LABELED_DIR to follow a kNN accuracy each epoch.", "knn_monitor")


def _records_section(records: list[dict], key: str, s: Section, missing: str,
                     figure: str) -> Section:
    """A figure of ``metrics.jsonl`` (``figures.<figure>``), or why there is none: no
    record holds ``key``."""
    from cossl_edge.report import figures as fig

    if not any(r.get(key) is not None for r in records):
        s.missing = missing
        return s
    s.figures.append(getattr(fig, figure)(records))
    return s


def pca_2d(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def map_section(emb: Embedded | None) -> Section:
    from cossl_edge.report import figures as fig

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
    from cossl_edge.report import figures as fig

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


def fewshot_section(run: Path, emb: Embedded | None) -> Section:
    from cossl_edge.report import figures as fig

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


def evaluation_section(run: Path) -> Section | None:
    """``cossl-edge evaluate --json RUN_DIR/evaluation.json`` results, when the run holds
    some (``evaluation*.json``): probe, kNN, few-shot and robustness, one row per file."""
    rows = []
    for path in sorted(run.glob("evaluation*.json")):
        res = read_json(path)
        if not isinstance(res, dict) or "linear_probe" not in res:
            continue
        shots = res.get("fewshot", {}).get("shots", {})
        noise = res.get("robustness", {}).get("noise", {})
        cells = [path.stem, f"{100 * res['linear_probe']['accuracy']:.1f}%",
                 f"{100 * res['knn']['accuracy']:.1f}%",
                 ", ".join(f"{k}-shot {100 * v['accuracy']:.1f}%" for k, v in shots.items()),
                 ", ".join(f"σ {lv}: {100 * a:.1f}%" for lv, a in zip(
                     noise.get("levels", []), noise.get("probe", []), strict=False))
                 if noise.get("available") else "–"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return None
    s = Section("evaluation", "Evaluation (cossl-edge evaluate)")
    head = "".join(f"<th>{h}</th>" for h in ("file", "linear probe", "kNN", "few-shot",
                                               "probe under noise"))
    s.html = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    return s


def export_section(run: Path) -> Section:
    from cossl_edge.report import figures as fig

    s = Section("export", "fp32 against int8: size, latency, agreement")
    report = read_json(run / EXPORT_REPORT)
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
    if report.get("parity_max_abs_diff") is not None:
        rows.append(("fp32 file against torch, max |difference|",
                     f"{report['parity_max_abs_diff']:.2e}"))
    if "int8" in report:
        rows.append(("int8 target", str(report["int8"].get("target", "?"))))
    if "int8_recommended" in report:
        rows.append(("int8 verdict", "recommended" if report["int8_recommended"] else
                     "not recommended: " + "; ".join(report.get("warnings", []))))
    if report.get("init_model"):
        rows.append(("network before adaptation", str(report["init_model"])))
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
    from cossl_edge.report import figures as fig
    from cossl_edge.runtime.heatmaps import read_index

    rows = read_index(folder)
    if not rows:
        if required:
            raise ReportError(f"{folder}: no heatmaps.csv with its PNGs; write them with "
                              "cossl-edge fewshot predict CLF.json IMAGES --out preds.csv "
                              f"--heatmaps {folder}")
        return None
    from PIL import Image

    total = len(rows)
    ranked = sorted(rows, key=lambda r: -r["p_finding"])
    top = ranked[:HEATMAP_COUNT]
    low = [r for r in ranked[::-1][:HEATMAP_COUNT // 2] if r not in top]
    s = Section("heatmaps", "Few-shot classifier: heatmaps")
    for shown in (top, low):
        if shown:
            images = [np.asarray(Image.open(folder / f"{r['id']}.png").convert("RGB"))
                      for r in shown]
            titles = [f"{r['label']} · P(finding) {r['p_finding']:.2f}" for r in shown]
            s.figures.append(fig.heatmap_gallery(images, titles))
    s.figures.append(fig.heatmap_scale())
    s.html = (f"<p>First row(s): the {len(top)} of {total} images with the highest "
              f"P(finding); then the {len(low)} with the lowest, the most normal-looking. "
              "Red where a position alone would be called a finding (scale above).</p>")
    return s


def summary_table(run: Path, records: list[dict] | None = None) -> str:
    """The run at a glance: what trained, how long, in which precision, from which seed."""
    config = read_json(run / rundir.CONFIG) or {}
    contract = config.get("contract") or {}
    last = max((r for r in records or [] if r.get("step") is not None),
               key=lambda r: r["step"], default={})
    elapsed = last.get("elapsed_s")
    bf16 = config.get("bf16_resolved")
    items = [("method", config.get("method")), ("backbone", config.get("arch")),
             ("initialisation", config.get("init") if config.get("arch") ==
              "efficientnet-lite0" else None),
             ("width", config.get("width") if config.get("arch") != "efficientnet-lite0"
              else None),
             ("input", f"{contract.get('size')} px, {contract.get('channels')} ch"
              if contract else None),
             ("feature map", config.get("feature_grid")),
             ("training images", config.get("num_images")),
             ("steps", last.get("step")),
             ("training time", f"{elapsed / 60:.1f} min" if elapsed is not None else None),
             ("precision", None if bf16 is None else "bf16 autocast" if bf16 else "fp32"),
             ("seed", config.get("seed")),
             ("cossl-edge", config.get("cossl_edge_version"))]
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in items if v is not None)
    return f"<table class='summary'>{rows}</table>" if rows else ""
