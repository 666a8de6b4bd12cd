"""A run's visual report: one self-contained HTML page (figures embedded as base64 PNG).

Sections, each saying so when its data is missing:

0. a summary: backbone, input, steps, training time, precision, seed, version;
1. training curves (``metrics.jsonl``: the loss and CO-SSL's global and local terms,
   throughput, learning rate, EMA τ, effective rank);
2. the kNN monitor (``knn_monitor`` in ``metrics.jsonl``, from ``pretrain --monitor``);
3. an embedding map (2D PCA of the exported encoder's embeddings, coloured by label);
4. a nearest-neighbour gallery (cosine, after centring);
5. few-shot accuracy against shots (``fewshot*.json`` in the run directory, as written by
   ``cossl-edge fewshot eval --json`` — with its raw-pixel and before-adaptation floors —
   or the demo, else computed on the labelled images); and, when the run holds
   ``evaluation*.json`` (``cossl-edge evaluate --json``), its probe, kNN and robustness;
6. the export (``export-report.json``): sizes, parity with torch, int8 agreement and
   verdict, latency, the network before adaptation when there is one;
7. only when there are some: heatmaps of a few-shot classifier, the most and the least
   abnormal-looking images, with the colour scale (the folder that
   ``cossl-edge fewshot predict ... --heatmaps`` wrote, ``RUN_DIR/heatmaps/`` by default).

Images for the map and the gallery come from a labelled folder when one is given, else from
the run's ``calibration.npy`` (unlabelled). The page holds no path, patient name or id.

The page is built in :mod:`~cossl_edge.report.build`; what it reads is in
:mod:`~cossl_edge.report.data`, its sections in :mod:`~cossl_edge.report.sections`, their
figures (matplotlib, imported only when drawn) in :mod:`~cossl_edge.report.figures`.
"""

from cossl_edge.report.build import build_report, page, write_report
from cossl_edge.report.data import (
    Embedded,
    ReportError,
    embed_for_report,
    fewshot_curves,
    find_model,
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
    pca_2d,
    summary_table,
)

__all__ = ["Embedded", "ReportError", "Section", "build_report", "curves_section",
           "embed_for_report", "evaluation_section", "export_section", "fewshot_curves",
           "fewshot_section",
           "find_model", "gallery_section", "heatmap_section", "map_section", "monitor_section",
           "page", "pca_2d", "read_metrics", "summary_table", "write_report"]
