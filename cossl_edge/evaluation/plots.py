"""PNG plots of evaluation results (matplotlib with the Agg backend: no display needed).

A series is ``name → (x values, y values, 95% CI half-widths or None)``; the CLI plots one
encoder's curves, the comparison benchmark several encoders' means over seeds.
"""

from __future__ import annotations

from pathlib import Path

Series = dict[str, tuple[list[float], list[float], list[float] | None]]


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ValueError("--plots needs matplotlib: pip install 'cossl-edge[report]'") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(series: Series, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    for name, (x, y, ci) in series.items():
        line = ax.plot(x, y, marker="o", ms=3, label=name)[0]
        if ci is not None:
            lo = [a - b for a, b in zip(y, ci, strict=True)]
            hi = [a + b for a, b in zip(y, ci, strict=True)]
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, plt, path)


def plot_bars(values: dict[str, tuple[float, float | None]], ylabel: str, title: str,
              path: Path) -> Path:
    """One bar per name: (value, 95% CI half-width or None)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    names = list(values)
    heights = [values[n][0] for n in names]
    errors = [values[n][1] or 0.0 for n in names]
    ax.bar(range(len(names)), heights, yerr=errors, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_evaluation(result: dict, out_dir: Path) -> list[Path]:
    """The plots of one ``evaluate`` result: robustness curves (noise, masking, PGD) and
    few-shot accuracy."""
    out_dir = Path(out_dir)
    written = []
    labels = {"noise": ("Gaussian noise σ (image in [0, 1])", "robustness-noise.png"),
              "masking": ("fraction of feature-map positions zeroed", "robustness-masking.png")}
    for kind, (xlabel, name) in labels.items():
        curve = result["robustness"][kind]
        if not curve.get("available"):
            continue
        series = {f"{clf}": (curve["levels"], curve[clf], None) for clf in ("probe", "knn")}
        written.append(plot_curves(series, xlabel, "accuracy", f"robustness: {kind}",
                                   out_dir / name))
    pgd = result["robustness"].get("pgd", {})
    if pgd.get("available") and len(pgd["levels"]) > 1:
        series = {f"{pgd['shots']}-shot CL2N": (pgd["levels_255"], pgd["accuracy"], pgd["ci95"])}
        written.append(plot_curves(series, "L∞ PGD ε (×1/255, image in [0, 1])", "accuracy",
                                   "robustness: PGD on the embedding",
                                   out_dir / "robustness-pgd.png"))
    shots = result["fewshot"]["shots"]
    if shots:
        bars = {f"{k}-shot": (r["accuracy"], r["ci95"]) for k, r in shots.items()}
        written.append(plot_bars(bars, "accuracy", f"{result['fewshot'].get('ways', '?')}-way "
                                 "few-shot, CL2N prototypes", out_dir / "fewshot.png"))
    return written
