"""Which per-image scores tell a defective EL cell from a functional one without labels.

``python benchmarks/analysis/elpv_signals.py`` (after ``benchmarks/elpv_data.py build/elpv/data``)

The statistics of each score are fitted on the 1,238 unlabeled dev cells and the score is
measured on the 600 labelled ones: AUC, and 2-way accuracy with one threshold midway between
the support's class means (5- and 10-shot, 500 episodes, 15 queries): the rows of
``docs/recipe.md`` ("What tells a defective cell without labels") that the product's normal
model is built from. Reads the DICOM files through the project's reader at 224 px.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cossl_edge.contract import PreprocessContract  # noqa: E402
from cossl_edge.evaluation.episodes import binary_auc, sample_episodes  # noqa: E402
from cossl_edge.sources import discover, labelled_samples, load_many  # noqa: E402
from cossl_edge.training import normal_stats  # noqa: E402
from cossl_edge.training.efficientnet import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    EfficientNetLiteEncoder,
)


def threshold_accuracy(score: np.ndarray, y: np.ndarray, shots: int) -> float:
    accs = []
    for support, query in sample_episodes(y, 2, shots, 15, 500, shots):
        m0, m1 = score[support][y[support] == 0].mean(), score[support][y[support] == 1].mean()
        pred = (score[query] - (m0 + m1) / 2) * np.sign(m1 - m0) > 0
        accs.append((pred == y[query].astype(bool)).mean())
    return 100 * float(np.mean(accs))


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "elpv" / "data"
    contract = PreprocessContract(channels=1, size=224, mean=(IMAGENET_MEAN,),
                                  std=(IMAGENET_STD,))
    unl, _, _ = load_many(discover(data / "unlabeled").samples, contract)
    refs, labels, _ = labelled_samples(data / "labeled")
    lab, kept, _ = load_many(refs, contract)
    y = np.asarray([labels[i] == "defective" for i in kept], int)
    rows = {}
    for init in ("imagenet", "random"):
        torch.manual_seed(0)
        enc = EfficientNetLiteEncoder(1, init).eval()
        fu, pu = normal_stats.tap_maps(enc, unl, contract, torch.device("cpu"))
        fl, pl = normal_stats.tap_maps(enc, lab, contract, torch.device("cpu"))
        stats = normal_stats.fit_normal_model(fu, pu)
        zd, zp = normal_stats.anomaly_terms(stats, fl, pl)
        rows["darkness per place (14x14), max"] = zp.max(1)
        rows[f"PaDiM, {init} EfficientNet-Lite0 block 10, max"] = zd.max(1)
        rows[f"normal model ({init}): mean of both, max"] = (0.5 * (zd + zp)).max(1)
    for name, score in rows.items():
        auc = binary_auc(score, y.astype(bool))
        print(f"{name:55s} AUC {auc:.3f}  5-shot {threshold_accuracy(score, y, 5):.1f}%  "
              f"10-shot {threshold_accuracy(score, y, 10):.1f}%", flush=True)


if __name__ == "__main__":
    main()
