"""Why does an embedding help or not help nearest-prototype few-shot? Its geometry, measured.

``python benchmarks/analysis/embedding_geometry.py build/compare/data/digits/labeled RUN_DIR [RUN_DIR …]``

For each finished run directory (and a random-init encoder of the first run's configuration),
on the held-out labelled images, for the pooled backbone output (what is exported) and for
the global projector's output (what the loss sees):

- 10-way 5-shot nearest-prototype accuracy after centring and L2 normalisation (CL2N, 200
  episodes, seed 0);
- effective rank (RankMe) and the share of variance in the top 1 and top 10 directions
  (dimensional collapse shows as a few directions holding most of the variance);
- alignment (mean squared distance between the L2-normalised embeddings of two augmented
  views of the same image, lower is more invariant) and uniformity (log of the mean Gaussian
  potential between different images, lower is more spread out), as defined by Wang and
  Isola (2020), on the run's own view pipeline.

Prints a Markdown table; ``--json FILE`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from cossl_edge.evaluation.episodes import evaluate_episodes
from cossl_edge.sources import labelled_samples, load_many
from cossl_edge.training.checkpoint import load_checkpoint
from cossl_edge.training.config import PretrainConfig
from cossl_edge.training.diagnostics import effective_rank
from cossl_edge.training.methods import build_method
from cossl_edge.training.views import TwoViews


def variance_shares(z: np.ndarray) -> tuple[float, float]:
    """Fraction of the total variance in the top 1 and top 10 principal directions."""
    ev = np.clip(np.linalg.eigvalsh(np.cov(z - z.mean(0), rowvar=False))[::-1], 0, None)
    total = ev.sum() or 1.0
    return float(ev[0] / total), float(ev[:10].sum() / total)


def _unit(z: np.ndarray) -> np.ndarray:
    return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)


def alignment(za: np.ndarray, zb: np.ndarray) -> float:
    return float((np.linalg.norm(_unit(za) - _unit(zb), axis=1) ** 2).mean())


def uniformity(z: np.ndarray) -> float:
    u = _unit(z).astype(np.float64)
    d2 = np.clip(2.0 - 2.0 * u @ u.T, 0.0, None)
    off = ~np.eye(len(u), dtype=bool)
    return float(np.log(np.exp(-2.0 * d2[off]).mean()))


def embed_both(method, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(pooled backbone, projector output) for a batch of normalised C×H×W images."""
    hs, zs = [], []
    with torch.no_grad():
        for i in range(0, len(x), 512):
            h = method.backbone(torch.from_numpy(np.ascontiguousarray(x[i:i + 512])))
            hs.append(h.numpy())
            zs.append(method.g1(h).numpy())
    return np.concatenate(hs), np.concatenate(zs)


def measure(method, config: PretrainConfig, images: np.ndarray, labels: list[str],
            n_pairs: int) -> dict:
    method.eval()
    x = config.contract.normalize(images)
    h, z = embed_both(method, x)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(images), size=min(n_pairs, len(images)), replace=False)
    views = TwoViews(config.preset if config.preset != "auto" else "camera", config.contract,
                     min_scale=config.min_scale)
    pairs = [views(images[i]) for i in pick]
    ha, za = embed_both(method, np.stack([a for a, _ in pairs]))
    hb, zb = embed_both(method, np.stack([b for _, b in pairs]))
    out = {}
    for name, e, ea, eb in (("backbone", h, ha, hb), ("projector", z, za, zb)):
        shot = evaluate_episodes(e, labels, shots=(5,), episodes=200, seed=0,
                                 centering=e.mean(axis=0))["shots"]["5"]
        top1, top10 = variance_shares(e)
        out[name] = {"fewshot5": shot["accuracy"], "fewshot5_ci": shot["ci95"],
                     "rank": effective_rank(e), "dim": int(e.shape[1]), "top1": top1,
                     "top10": top10, "alignment": alignment(ea, eb),
                     "uniformity": uniformity(e[pick])}
    return out


def load_method(run: Path):
    config = PretrainConfig.load(run / "config.json")
    method = build_method(config)
    method.load_state_dict(load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    return method, config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("labeled", type=Path, help="Labelled folder (one subfolder per class).")
    ap.add_argument("runs", type=Path, nargs="+", help="Run directories.")
    ap.add_argument("--pairs", type=int, default=512, help="Images for alignment/uniformity.")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rows = []
    first_config = None
    for run in args.runs:
        method, config = load_method(run)
        first_config = first_config or config
        samples, names, _ = labelled_samples(args.labeled)
        images, kept, _ = load_many(samples, config.contract)
        labels = [names[i] for i in kept]
        rows.append((f"{config.method} ({run.parent.name})", measure(method, config, images,
                                                                     labels, args.pairs)))
        print(f"measured {run}", file=sys.stderr)
    torch.manual_seed(first_config.seed)
    rows.append(("random-init", measure(build_method(first_config), first_config, images,
                                        labels, args.pairs)))

    print("| encoder | features | 5-shot CL2N | eff. rank / dim | top-1 / top-10 variance "
          "| alignment ↓ | uniformity ↓ |")
    print("|---|---|---|---|---|---|---|")
    for name, res in rows:
        for feat in ("backbone", "projector"):
            r = res[feat]
            print(f"| {name} | {feat} | {100 * r['fewshot5']:.1f}% ± {100 * r['fewshot5_ci']:.1f}"
                  f" | {r['rank']:.0f} / {r['dim']} | {r['top1']:.2f} / {r['top10']:.2f} "
                  f"| {r['alignment']:.3f} | {r['uniformity']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(dict(rows), indent=1))


if __name__ == "__main__":
    main()
