"""Heatmaps of the anomaly classifier on real defective and functional EL cells (dev split).

``python benchmarks/analysis/elpv_heatmaps.py build/elpv/runs/default-10m-s0/encoder.int8.onnx``

Fits ``fewshot fit --classifier anomaly`` on 5 functional and 5 defective labelled dev cells
(``benchmarks/elpv_data.py``), then draws, for 8 other defective and 8 functional cells,
what ``fewshot predict --heatmaps`` writes: the cell in grey, red where P(finding) of that
place is high, with its P(finding) — into ``OUT`` (default ``build/elpv/heatmaps.png``).
The picture is made of the dataset's images (CC BY-NC-SA 4.0): it stays under ``build/``
and is not committed; ``docs/recipe.md`` describes what it shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cossl_edge.fewshot import FewShotClassifier  # noqa: E402
from cossl_edge.fewshot.positions import finding_probability  # noqa: E402
from cossl_edge.runtime.encoder import Encoder  # noqa: E402
from cossl_edge.runtime.heatmaps import overlay  # noqa: E402
from cossl_edge.sources import labelled_samples, load_many  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "build" / "elpv" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "elpv" / "heatmaps.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    enc = Encoder(args.model)
    refs, labels, _ = labelled_samples(args.data / "labeled")
    rng = np.random.default_rng(args.seed)
    by = {c: rng.permutation([i for i, lab in enumerate(labels) if lab == c])
          for c in ("functional", "defective")}
    support = [*by["functional"][:5], *by["defective"][:5]]
    shown = [*by["defective"][5:13], *by["functional"][5:13]]
    images, _, _ = load_many([refs[i] for i in support + shown], enc.contract)
    maps = enc.run_anomaly(enc.contract.normalize(images))
    clf = FewShotClassifier.fit(maps[:10], [labels[i] for i in support], kind="anomaly")
    proba, heat = clf.predict_local(maps[10:])
    p_find = 1 - proba[:, clf.classes.index("functional")]
    tiles = []
    for j, (img, h) in enumerate(zip(images[10:], heat, strict=True)):
        tile = Image.fromarray(overlay(img, finding_probability(clf.params["calibration"], h)))
        ImageDraw.Draw(tile).text((4, 4), f"{labels[shown[j]][:3]} P={p_find[j]:.2f}",
                                  fill=(255, 255, 0))
        tiles.append(np.asarray(tile))
    rows = [np.concatenate(tiles[r * 8:(r + 1) * 8], axis=1) for r in range(2)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    right = np.r_[p_find[:8] >= 0.5, p_find[8:] < 0.5].mean()
    print(f"{args.out}: top row 8 defective, bottom row 8 functional cells; "
          f"{100 * right:.0f}% called right")


if __name__ == "__main__":
    main()
