"""Tables and plots of ``compare_methods.py``: mean ± 95% CI over seeds (Student t), the
CO − base differences per seed, written between the ``compare`` markers of
``docs/benchmarks.md`` (the rest of the file is left as it is)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from scipy import stats

from cossl_edge.evaluation.plots import plot_bars, plot_curves

START, END = "<!-- compare:start -->", "<!-- compare:end -->"
PAIRS = (("co-byol", "byol"), ("co-simclr", "simclr"))
# metric key, column title, scale (100: accuracy points), decimals
COLUMNS = (("fewshot5", "5-shot CL2N %", 100, 1), ("probe", "linear probe %", 100, 1),
           ("knn", "kNN %", 100, 1), ("redundancy", "redundancy", 1, 3),
           ("drop_mask50", "drop @ 50% mask (pts)", 100, 1),
           ("drop_noise02", "drop @ σ=0.2 (pts)", 100, 1), ("effective_rank", "eff. rank", 1, 1))


def mean_ci(values: list[float]) -> tuple[float, float | None]:
    v = np.asarray([x for x in values if x is not None], float)
    if len(v) == 0:
        return float("nan"), None
    if len(v) < 2:
        return float(v.mean()), None
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def _value(rec: dict, key: str):
    return rec["effective_rank"] if key == "effective_rank" else rec["metrics"][key]


def _cell(values: list, scale: float, digits: int) -> str:
    if all(v is None for v in values):
        return "n/a"
    m, ci = mean_ci([None if v is None else v * scale for v in values])
    return f"{m:+.{digits}f}"[(m >= 0):] + (f" ± {ci:.{digits}f}" if ci is not None else "")


def _by(records: list[dict], dataset: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        if r["dataset"] == dataset:
            out.setdefault(r["encoder"], []).append(r)
    return out


def results_table(groups: dict[str, list[dict]]) -> list[str]:
    head = ["encoder", "seeds"] + [c[1] for c in COLUMNS] + ["steps", "img/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, recs in groups.items():
        cells = [name, str(len(recs))]
        cells += [_cell([_value(r, k) for r in recs], s, d) for k, _, s, d in COLUMNS]
        steps = [r["cost"].get("steps") for r in recs]
        ips = [r["cost"].get("images_per_s") for r in recs]
        cells += ["–" if steps[0] is None else f"{np.mean(steps):.0f}",
                  "–" if ips[0] is None else f"{np.mean(ips):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def pairs_table(groups: dict[str, list[dict]]) -> list[str]:
    """Per-seed differences CO − base; the 5-shot target is met when the mean is ≥ +1 pt."""
    keys = COLUMNS[:2] + COLUMNS[3:6]
    head = ["CO − base"] + [f"Δ {c[1]}" for c in keys] + ["5-shot target (≥ +1 pt)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for co, base in PAIRS:
        if co not in groups or base not in groups:
            continue
        a = {r["seed"]: r for r in groups[co]}
        b = {r["seed"]: r for r in groups[base]}
        seeds = sorted(set(a) & set(b))
        cells = [f"{co} − {base}"]
        for key, _, scale, digits in keys:
            diffs = [None if _value(a[s], key) is None or _value(b[s], key) is None
                     else _value(a[s], key) - _value(b[s], key) for s in seeds]
            cells.append(_cell(diffs, scale, digits))
        m, _ = mean_ci([_value(a[s], "fewshot5") - _value(b[s], "fewshot5") for s in seeds])
        cells.append("met" if m * 100 >= 1.0 else "**not met**")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _curve_series(groups: dict[str, list[dict]], kind: str) -> dict:
    series = {}
    for name, recs in groups.items():
        curves = [r["result"]["robustness"][kind] for r in recs]
        if not curves[0].get("available"):
            continue
        levels = curves[0]["levels"]
        stats_ = [mean_ci([c["probe"][i] for c in curves]) for i in range(len(levels))]
        ci = [s[1] for s in stats_]
        series[name] = (levels, [s[0] for s in stats_],
                        None if any(c is None for c in ci) else ci)
    return series


def plots(groups: dict[str, list[dict]], dataset: str, folder: Path) -> list[Path]:
    bars = {n: mean_ci([r["metrics"]["fewshot5"] for r in recs]) for n, recs in groups.items()}
    if all(ci is None for _, ci in bars.values()):  # one seed: show the episodes' CI
        bars = {n: (recs[0]["metrics"]["fewshot5"], recs[0]["metrics"]["fewshot5_ci"])
                for n, recs in groups.items()}
    out = [plot_bars(bars, "5-shot accuracy", f"{dataset}: 10-way 5-shot, CL2N prototypes",
                     folder / f"compare-{dataset}-fewshot.png")]
    for kind, xlabel in (("noise", "Gaussian noise σ"),
                         ("masking", "fraction of feature-map positions zeroed")):
        out.append(plot_curves(_curve_series(groups, kind), xlabel, "linear-probe accuracy",
                               f"{dataset}: robustness to {kind}",
                               folder / f"compare-{dataset}-{kind}.png"))
    return out


def section(records: list[dict], args, command: str, machine: dict, docs: Path) -> str:
    lines = [START, "## CO-SSL against its base methods (`benchmarks/compare_methods.py`)", ""]
    if args.smoke:
        lines += ["> **SMOKE RUN — these are not results.** The benchmark ran end to end in "
                  f"a tiny mode (budget {args.budget_s:.0f} s per run, {args.seeds} seed(s)) "
                  "to prove that it works; the numbers below say nothing about the method. "
                  "The real comparison is `python benchmarks/compare_methods.py` (10 min per "
                  "run, 3 seeds, digits and mnist5k).", ""]
    if args.overrides:
        lines += ["Overrides of the default recipe (`--set`): "
                  + ", ".join(f"`{k}={v}`" for k, v in args.overrides.items()), ""]
    rec0 = next((r for r in records if r["cost"]), records[0])
    recipe = ", ".join(f"{k} {v}" for k, v in rec0["cost"].get("recipe", {}).items())
    lines += [f"Command: `{command}` · {machine['date']} · "
              + ", ".join(f"{k} {v}" for k, v in machine.items() if k != "date"), "",
              f"Each method pretrains for the same wall-clock budget ({args.budget_s:.0f} s) "
              f"at {args.size} px, 1 channel, with the project's default recipe ({recipe}). "
              "Pretraining uses the unlabeled split; every encoder, the floors included, is "
              "evaluated on the held-out labelled split with `cossl_edge.evaluation` "
              "(`docs/evaluation.md`): 10-way 5-shot CL2N prototypes "
              f"({args.episodes} episodes), linear probe and weighted kNN on a 50/50 split, "
              "accuracy drops of the linear probe at 50% internal masking and at noise σ = 0.2, "
              "local redundancy; eff. rank of the clean embeddings (RankMe); steps and img/s of "
              "pretraining within the budget. Mean ± 95% CI over seeds (Student t; no CI with "
              "one seed).", ""]
    folder = docs.parent / "img"
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        groups = _by(records, dataset)
        first = groups[next(iter(groups))][0]
        lines += [f"### {dataset} ({first['n_labeled']} labelled images for evaluation, "
                  f"{first['n_pretrain']} unlabeled for pretraining)", ""]
        lines += results_table(groups) + [""] + pairs_table(groups) + [""]
        for path in plots(groups, dataset, folder):
            lines.append(f"![{path.stem}]({path.relative_to(docs.parent).as_posix()})")
        lines.append("")
    return "\n".join(lines + [END])


def write_report(records: list[dict], args, command: str, machine: dict) -> None:
    docs = Path(args.docs)
    text = section(records, args, command, machine, docs)
    current = docs.read_text() if docs.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _: text, current)
    else:
        current = current.rstrip("\n") + "\n\n" + text + "\n"
    docs.write_text(current)
