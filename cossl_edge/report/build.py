"""The report page: a run directory's sections gathered into one self-contained HTML
page (:func:`build_report`), written atomically (:func:`write_report`)."""

from __future__ import annotations

import html
from pathlib import Path

from cossl_edge import rundir
from cossl_edge.report.data import (
    ReportError,
    embed_for_report,
    read_metrics,
)
from cossl_edge.report.sections import (
    Section,
    curves_section,
    evaluation_section,
    export_section,
    fewshot_section,
    gallery_section,
    heatmap_section,
    map_section,
    monitor_section,
    summary_table,
)

HEATMAPS = "heatmaps"  # the default heatmap folder in a run directory


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
    evaluation = evaluation_section(run)
    if evaluation is not None:
        sections.insert(-1, evaluation)
    local = heatmap_section(Path(heatmaps) if heatmaps is not None else run / HEATMAPS,
                            required=heatmaps is not None)
    if local is not None:
        sections.append(local)
    return page(title or "cossl-edge run report", summary_table(run, records), sections)


def write_report(run_dir: str | Path, out: str | Path | None = None, **options) -> Path:
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    text = build_report(run_dir, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


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
