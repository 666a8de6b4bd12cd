"""Why does an encoder miss small local findings? Diagnostics for ``local_findings.py``.

``python benchmarks/analysis/local_findings_probe.py RUN_DIR [RUN_DIR ...]`` (runs of
``benchmarks/local_findings.py``, exported with ``--local-map``) and
``python benchmarks/analysis/local_findings_probe.py --detector`` (no model):

- ``--detector``: a hand-made detector of dark thin structures (a morphological black
  top-hat: closing minus image, smoothed; its maximum, top-20 mean and mean as a 3-number
  embedding) scored with the same 5-shot protocol, at 128 and 256 px: is the finding still
  there after the resize, and how visible is it?
- per run: a *supervised* linear probe (scikit-learn, half the cells to fit, half to score)
  telling map cells that cover a finding from other cells — the upper bound of what any
  readout of the map can find — and the 5-shot accuracy of other readouts of the same map
  (mean, GeM p 3 and 8, max, per-image median-subtracted maximum).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

from clinical_examples.finding_scans import SIZE, read_boxes  # noqa: E402
from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.evaluation.episodes import evaluate_episodes  # noqa: E402
from cossl_edge.sources import labelled_samples, load_many  # noqa: E402


def labelled(data: Path, contract: PreprocessContract):
    refs, labels, _ = labelled_samples(data / "labeled")
    images, kept, _ = load_many(refs, contract)
    table = read_boxes(data)
    boxes = [table[refs[i].path.relative_to(data).as_posix()][2] for i in kept]
    return images, np.asarray([labels[i] for i in kept]), boxes


def five_shot(z: np.ndarray, y: np.ndarray) -> float:
    r = evaluate_episodes(z, list(y), (5,), 400, 2, "proto", 15, 0, z.mean(0))
    return 100 * r["shots"]["5"]["accuracy"]


def detector(data: Path) -> None:
    import cv2

    for size in (128, 256):
        images, y, _ = labelled(data, PreprocessContract(channels=1, size=size))
        for radius in (1.5, 3, 6):
            r = radius * size / 256
            k = int(4 * r) + 1
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            feats = []
            for im in images[..., 0]:
                d = cv2.GaussianBlur(cv2.morphologyEx(im, cv2.MORPH_CLOSE, disc) - im, (0, 0),
                                     max(0.5, r / 2))
                feats.append([d.max(), np.sort(d.ravel())[-20:].mean(), d.mean()])
            print(f"black top-hat, {size} px, radius {r:.1f}: 5-shot "
                  f"{five_shot(np.asarray(feats), y):.1f}%")


def probe(run: Path, data: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from cossl_edge.evaluation.features import OnnxFeatures

    f = OnnxFeatures(run / "encoder.onnx")
    images, y, boxes = labelled(data, f.contract)
    m = f(images).local_maps
    n, c, h, w = m.shape
    cell = SIZE / h
    rng = np.random.default_rng(0)
    pos, neg = [], []
    for i in range(n):
        mask = np.zeros((h, w), bool)
        for r0, c0, r1, c1 in boxes[i]:
            mask[int(r0 // cell):int((r1 - 1) // cell) + 1,
                 int(c0 // cell):int((c1 - 1) // cell) + 1] = True
        v = m[i].reshape(c, -1).T
        if boxes[i]:
            pos.append(v[mask.ravel()])
        neg.append(v[~mask.ravel()][rng.choice((~mask).sum(), 4, replace=False)])
    x = np.concatenate(pos + neg)
    t = np.r_[np.ones(sum(map(len, pos))), np.zeros(sum(map(len, neg)))]
    order = rng.permutation(len(x))
    x, t = x[order], t[order]
    half = len(x) // 2
    clf = LogisticRegression(max_iter=2000).fit(x[:half], t[:half])
    auc = roc_auc_score(t[half:], clf.decision_function(x[half:]))
    flat = np.maximum(m.reshape(n, c, -1), 1e-6)
    dev = flat - np.median(flat, axis=2, keepdims=True)
    readouts = {"mean": flat.mean(2), "gem3": (flat ** 3).mean(2) ** (1 / 3),
                "gem8": (flat ** 8).mean(2) ** (1 / 8), "max": flat.max(2),
                "median-subtracted max": dev.max(2)}
    print(f"{run.name}: map {h}×{w}; finding cells vs other cells, supervised linear probe "
          f"AUC {auc:.3f}")
    for name, z in readouts.items():
        print(f"  readout {name:22s} 5-shot {five_shot(z, y):.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "build" / "findings")
    ap.add_argument("--detector", action="store_true")
    a = ap.parse_args()
    if a.detector:
        detector(a.data)
    for run in a.runs:
        probe(run, a.data)


if __name__ == "__main__":
    main()
