"""The report's figures: matplotlib (Agg) drawings returned as PNG bytes.

matplotlib is imported inside each function, so the base package imports without it; the
``report`` command names the package to install when it is missing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def training_curves(records: list[dict]) -> bytes:
    """Against the optimisation step: the loss and CO-SSL's two terms (global, the base
    method's; local, every local vector predicting the other view's embedding; unweighted,
    so each can be seen to fall), throughput, learning rate, EMA τ and effective rank."""
    plt = _pyplot()
    panels = [(("loss", "loss_global", "loss_local"), "loss and its terms"),
              (("images_per_s",), "throughput (images/s)"), (("lr",), "learning rate"),
              (("tau",), "EMA τ"), (("effective_rank",), "effective rank")]
    fig, axes = plt.subplots(1, len(panels), figsize=(17, 3))
    for ax, (keys, title) in zip(axes, panels, strict=True):
        for key in keys:
            pts = [(r.get("step", 0), r[key]) for r in records if r.get(key) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                label = {"loss": "total (weighted)", "loss_global": "global term",
                         "loss_local": "local term"}.get(key)
                ax.plot(xs, ys, marker="o", markersize=3, label=label)
        if len(keys) > 1 and ax.lines:
            ax.legend(fontsize=7)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _png(fig)


def knn_monitor(records: list[dict]) -> bytes:
    plt = _pyplot()
    pts = [(r.get("epoch", 0), 100 * r["knn_monitor"]) for r in records
           if r.get("knn_monitor") is not None]
    fig, ax = plt.subplots(figsize=(5, 3))
    xs, ys = zip(*pts, strict=True)
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel("epoch (0 = initialisation)")
    ax.set_ylabel("kNN accuracy (%)")
    ax.grid(alpha=0.3)
    return _png(fig)


def embedding_map(points: np.ndarray, labels: Sequence[str] | None) -> bytes:
    """2D PCA of the embeddings, coloured by label when labels are known."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.7)
    else:
        labels = np.asarray(labels)
        for name in sorted(set(labels.tolist())):
            sel = labels == name
            ax.scatter(points[sel, 0], points[sel, 1], s=8, alpha=0.7, label=name)
        ax.legend(markerscale=2, fontsize=8)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    return _png(fig)


def neighbour_gallery(images: np.ndarray, queries: Sequence[int],
                      neighbours: np.ndarray, labels: Sequence[str] | None,
                      similarities: np.ndarray) -> bytes:
    """One row per query: the query image, then its nearest neighbours (cosine)."""
    plt = _pyplot()
    rows, cols = len(queries), neighbours.shape[1] + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows), squeeze=False)
    for r, q in enumerate(queries):
        shown = [q, *neighbours[r]]
        for c, idx in enumerate(shown):
            ax = axes[r, c]
            img = images[idx]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            title = "query" if c == 0 else f"{similarities[r, c - 1]:.2f}"
            if labels is not None:
                title += f"\n{labels[idx]}"
            ax.set_title(title, fontsize=7)
    return _png(fig)


def fewshot_curves(curves: dict[str, dict[int, tuple[float, float]]]) -> bytes:
    """Accuracy ± 95% CI against the number of shots, one line per encoder."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for name, points in curves.items():
        shots = sorted(points)
        acc = np.asarray([100 * points[k][0] for k in shots])
        ci = np.asarray([100 * points[k][1] for k in shots])
        ax.errorbar(shots, acc, yerr=ci, marker="o", capsize=3, label=name)
    ax.set_xticks(sorted({k for p in curves.values() for k in p}))
    ax.set_xlabel("shots per class")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))  # off the curves
    return _png(fig)


def latency_bars(rows: list[dict]) -> bytes:
    """Median latency per engine at each batch size (the most threads measured)."""
    plt = _pyplot()
    best: dict[tuple[str, int], dict] = {}
    for r in rows:
        key = (r["engine"], r["batch"])
        if key not in best or r["threads"] > best[key]["threads"]:
            best[key] = r
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(4.5 * len(batches), 3), squeeze=False)
    for ax, batch in zip(axes[0], batches, strict=True):
        ms = [best[(e, batch)]["ms"] if (e, batch) in best else 0.0 for e in engines]
        ax.bar(engines, ms, color=["#888", "#4c72b0", "#dd8452"][: len(engines)])
        ax.set_title(f"batch {batch}")
        ax.set_ylabel("ms (median)")
    return _png(fig)


def heatmap_gallery(images: Sequence[np.ndarray], titles: Sequence[str]) -> bytes:
    """The local classifier's heatmap pictures (RGB arrays) in rows of four, with titles."""
    plt = _pyplot()
    cols = min(4, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, title in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
    return _png(fig)


def heatmap_scale() -> bytes:
    """The heatmaps' colour scale: a position's P(finding) from 0 (the grey image) to 1
    (red at the overlay's opacity), as :func:`cossl_edge.runtime.heatmaps.overlay` draws it."""
    from cossl_edge.runtime.heatmaps import overlay

    plt = _pyplot()
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :].repeat(12, axis=0)
    rgb = overlay(np.full((12, 256), 0.5, np.float32), ramp)
    fig, ax = plt.subplots(figsize=(5, 0.7))
    ax.imshow(rgb, extent=(0, 1, 0, 0.05), aspect="auto")
    ax.set_yticks([])
    ax.set_xlabel("P(finding) at a position, over a mid-grey pixel")
    return _png(fig)
