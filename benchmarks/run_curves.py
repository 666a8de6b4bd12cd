"""Curves of finished runs from their ``metrics.jsonl``: the embedding's effective rank
(RankMe, measured on each epoch's batch embeddings) and the loss over wall-clock time.

``python benchmarks/run_curves.py OUT.png RUN_DIR [RUN_DIR …] [--title T]``

A rank that falls towards a handful of dimensions is the sign of (dimensional) collapse
that the progress line warns about; a rank that stays near its initial value means the
encoder is not moving. Used for the recipe evidence in ``docs/recipe.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "elapsed_s" in r]


def label(run: Path) -> str:
    cfg = json.loads((run / "config.json").read_text())
    return f"{cfg['method']} (seed {cfg['seed']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    fig, (ax_rank, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in args.runs:
        rows = read(run)
        t = [r["elapsed_s"] / 60 for r in rows]
        ax_rank.plot(t, [r.get("effective_rank", float("nan")) for r in rows], label=label(run))
        ax_loss.plot(t, [r["loss"] for r in rows], label=label(run))
    ax_rank.set(xlabel="minutes", ylabel="effective rank (RankMe)", title="embedding rank")
    ax_loss.set(xlabel="minutes", ylabel="training loss", title="loss (per method scale)")
    ax_rank.legend(fontsize=8)
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
