"""The ``local-findings`` section of docs/benchmarks.md and its plot, from the results of
``benchmarks/local_findings.py`` (one record per run and per floor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def mean_sd(values: list[float]) -> str:
    v = 100 * np.asarray(values, np.float64)
    return f"{v.mean():.1f}" + (f" ± {v.std(ddof=1):.1f}" if len(v) > 1 else "")


def write_docs(results: dict) -> None:
    """The ``local-findings`` section of docs/benchmarks.md and its plot."""
    from doc_section import replace_section

    start, end = "<!-- local-findings:start -->", "<!-- local-findings:end -->"
    groups: dict[tuple[str, str], list[dict]] = {}
    for rec in results.get("runs", {}).values():
        groups.setdefault((rec["variant"], rec["budget"]), []).append(rec)
    lines = [start, "## Small local findings (`benchmarks/local_findings.py`)", "",
             "288-px 12-bit DICOM scans (`clinical_examples/finding_scans.py`): 3,000 "
             "unlabeled for pretraining, 400 labelled and never seen in pretraining (200 "
             "normal, 200 defective: a crack, a blob or a faint patch, ≤ 2% of the area). "
             "Each run is the CLI: `cossl-edge pretrain` with the options shown, "
             "`cossl-edge export --local-map`, the **int8** model embeds. Defective vs "
             "normal, 2-way episodes (400, 15 queries, seed = run seed): nearest prototype "
             "after CL2N on the embedding (*global*), and the local classifier "
             "(`fewshot --classifier local`, *local*, with `--local-scoring auto`: hybrid "
             "for the GeM/max-pooled `--findings local` models, memory for mean-pooled "
             "ones; its heatmap's maximum within half a cell + 4 px of the finding's box "
             "counts as a hit, over the correctly called defective queries of 40 "
             "episodes); the four grades, 4-way 5-shot. "
             "Mean ± standard deviation over seeds.", "",
             "| recipe | budget | seeds | steps | global 1-shot | global 5-shot | AUC | "
             "local 5-shot | heatmap on the finding | grades 4-way |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (name, budget), recs in sorted(groups.items()):
        opts = recs[0]["options"] or "(none: the default recipe)"
        hit = [r["heatmap_hit_rate"] for r in recs if "heatmap_hit_rate" in r]
        local = [r["local_5shot"] for r in recs if "local_5shot" in r]
        lines.append(
            f"| {name} `{opts}` | {budget} | {len(recs)} | "
            f"{int(np.mean([r['steps'] for r in recs]))} | "
            f"{mean_sd([r['binary_1shot'] for r in recs])} | "
            f"**{mean_sd([r['binary_5shot'] for r in recs])}** | "
            f"{np.mean([r['binary_5shot_auc'] for r in recs]):.3f} | "
            f"{mean_sd(local) if local else '–'} | {mean_sd(hit) + '%' if hit else '–'} | "
            f"{mean_sd([r['grades_5shot'] for r in recs])} |")
    lines += ["", "| floor (raw pixels, same protocol) | global 5-shot | grades 4-way |",
              "|---|---|---|"]
    fl: dict[str, list[dict]] = {}
    for key, rec in results.get("floors", {}).items():
        fl.setdefault(key.split("/")[0], []).append(rec)
    for name, recs in sorted(fl.items()):
        lines.append(f"| {name} | {mean_sd([r['binary_5shot'] for r in recs])} | "
                     f"{mean_sd([r['grades_5shot'] for r in recs])} |")
    lines += ["", "![local findings](img/local-findings.png)", "", end]
    replace_section(start, end, "\n".join(lines) + "\n")
    plot(groups, fl)


def plot(groups: dict, fl: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{n}\n{b}" for n, b in sorted(groups)]
    glob = [100 * np.mean([r["binary_5shot"] for r in groups[k]]) for k in sorted(groups)]
    loc = [100 * np.mean([r.get("local_5shot", np.nan) for r in groups[k]])
           for k in sorted(groups)]
    floor = max(100 * np.mean([r["binary_5shot"] for r in recs]) for recs in fl.values())
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.2))
    ax.bar(x - 0.2, glob, 0.4, label="global (CL2N prototypes)")
    ax.bar(x + 0.2, loc, 0.4, label="local classifier (fewshot --classifier local)")
    ax.axhline(floor, color="k", ls="--", lw=1, label="raw pixels (best size)")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(40, max(70, np.nanmax(glob + loc) + 5))
    ax.set_ylabel("defective vs normal, 5-shot %")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "local-findings.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
