"""How hard are the 3D CT phantoms for raw voxels? Nodule vs no nodule, 5-shot per series.

``python benchmarks/ct_volume_difficulty.py [--series 40] [--seeds 0 1]``

The floor every 3D figure is read against (issue 30): the volumes of
``cossl_edge/phantoms/volumes.py`` at the writer's defaults (160 px, 80 mm), windowed for
lung (−1350..150 HU → 0..1), each sample standardised, nearest class mean of 5 support
series per class, the other series as queries, 400 episodes. Three raw inputs:

- ``middle_slice``: the series' middle axial slice (what a 2D path sees of a series when it
  takes one slice; the nodule is usually elsewhere);
- ``nodule_slice``: the slice through the nodule's centre for nodule series, a random slice
  for the others (the best a single slice can do: the nodule is in it);
- ``volume``: the whole volume resampled (nearest) to 20 × 40 × 40 voxels.

Results: ``benchmarks/results/ct_volume_difficulty.json`` and ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cossl_edge.phantoms.volumes import ct_volume, series_labels  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ct_volume_difficulty.json"


def lung_window(hu: np.ndarray) -> np.ndarray:
    return np.clip((hu + 1350.0) / 1500.0, 0.0, 1.0)


def nearest_prototype_accuracy(x: np.ndarray, y: np.ndarray, shots: int = 5,
                               episodes: int = 400, seed: int = 0) -> float:
    """Mean query accuracy of nearest-class-mean episodes on standardised raw samples."""
    rng = np.random.default_rng(seed)
    x = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-6)
    correct = total = 0
    for _ in range(episodes):
        support = np.concatenate([rng.choice(np.nonzero(y == c)[0], shots, replace=False)
                                  for c in (0, 1)])
        query = np.setdiff1d(np.arange(len(y)), support)
        protos = np.stack([x[support[y[support] == c]].mean(0) for c in (0, 1)])
        d = ((x[query, None, :] - protos[None]) ** 2).sum(-1)
        correct += int((d.argmin(1) == y[query]).sum())
        total += len(query)
    return correct / total


def raw_inputs(seed: int, series: int, size: int = 160, length_mm: float = 80.0
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng([seed, 99])
    labels = series_labels(seed, series)
    inputs: dict[str, list[np.ndarray]] = {"middle_slice": [], "nodule_slice": [],
                                           "volume": []}
    for i, nodule in enumerate(labels):
        vol = ct_volume(seed, i, nodule, size, length_mm)
        n = vol.hu.shape[0]
        k = (int(round(vol.voxel(vol.nodules[0].centre)[0])) if nodule
             else int(rng.integers(n)))
        inputs["middle_slice"].append(lung_window(vol.hu[n // 2]).ravel())
        inputs["nodule_slice"].append(lung_window(vol.hu[k]).ravel())
        idx = [np.linspace(0, s - 1, m).round().astype(int)
               for s, m in zip(vol.hu.shape, (20, 40, 40), strict=True)]
        inputs["volume"].append(lung_window(vol.hu[np.ix_(*idx)]).ravel())
    return {k: np.stack(v) for k, v in inputs.items()}, np.array(labels, int)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    results = {}
    for seed in args.seeds:
        t0 = time.time()
        inputs, y = raw_inputs(seed, args.series)
        results[str(seed)] = {k: round(nearest_prototype_accuracy(x, y, seed=seed), 4)
                              for k, x in inputs.items()}
        print(f"seed {seed} ({time.time() - t0:.0f} s): {results[str(seed)]}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"series": args.series, "shots": 5, "episodes": 400,
                                   "accuracy": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
