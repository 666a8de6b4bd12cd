"""What the inference paths give on a fixed model and folder, as one ``.npz``: the check that a
refactor of the runtime changed no probability and no heatmap.

``python tests/predict_snapshot.py OUT.npz [--work DIR]``

Fixed, generated inputs (no training): the tiny random ONNX encoder and class folders of
``tests/make_edge_fixtures.py``, a fixed-convolution model with a local map, and the same
with a GeM pooling and an anomaly map; blob images (``tests/node_data.py``) as PNG folders
and as a DICOM series. Recorded, by path:

- ``fewshot fit`` (every kind and local scoring, and ``auto``): the classifier JSON;
  ``fewshot predict``: its CSV, and for the map kinds the heatmap PNGs and ``heatmaps.csv``;
  ``fewshot eval --json`` and ``evaluate --json``;
- the node's :class:`~cossl_edge.node.classify.SeriesClassifier` on the DICOM series: every
  image's probabilities, its heatmap and the series result, at full precision;
- ``benchmarks/local_findings.py``'s scoring (local, auto, anomaly, heatmap hits) on a small
  set of its scans.

Compare two snapshots with :func:`compare` (``np.array_equal`` on every entry), or
``python tests/predict_snapshot.py --compare A.npz B.npz``. ``tests/test_predict_snapshot.py``
compares with ``tests/data/predict_snapshot.npz``, recorded with the code before the runtime
redesign.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

LOCAL_KINDS = {"local-memory": ("local", "memory"), "local-prototype": ("local", "prototype"),
               "local-hybrid": ("local", "hybrid"), "local-auto": ("local", "auto")}


def build_models(work: Path) -> dict[str, Path]:
    """tiny (proto, logreg, knn), local (mean-pooled, local map) and gem (GeM metadata, local
    and anomaly maps, a centring vector)."""
    import onnx
    from onnx import TensorProto, helper
    from support.models import build_local_model, build_tiny_model

    from cossl_edge.contract import PreprocessContract

    keys = _metadata_keys()
    rng = np.random.default_rng(5)
    tiny = build_tiny_model(work / "tiny.onnx", PreprocessContract(channels=1, size=16), dim=16,
                            centering=rng.normal(0, 0.1, 16).round(4).tolist())
    local = build_local_model(work / "local.onnx", PreprocessContract(channels=1, size=32))
    gem = build_local_model(work / "gem.onnx", PreprocessContract(channels=1, size=32), seed=1)
    m = onnx.load(str(gem))
    m.graph.node.append(helper.make_node("ReduceMean", [keys["LOCAL_MAP"]],
                                         [keys["ANOMALY_MAP"]], axes=[1], keepdims=0))
    m.graph.output.append(helper.make_tensor_value_info(keys["ANOMALY_MAP"], TensorProto.FLOAT,
                                                        ["N", 8, 8]))
    props = {p.key: p.value for p in m.metadata_props}
    props[keys["KEY_METHOD"]] = json.dumps({"method": "snapshot", "pool": "gem"})
    props[keys["KEY_CENTERING"]] = json.dumps(rng.normal(0, 0.1, 8).round(4).tolist())
    del m.metadata_props[:]
    helper.set_model_props(m, props)
    onnx.checker.check_model(m)
    onnx.save(m, str(gem))
    return {"tiny": tiny, "local": local, "gem": gem}


def _metadata_keys() -> dict[str, str]:
    from cossl_edge.runtime import metadata as mm

    return {k: getattr(mm, k) for k in ("LOCAL_MAP", "ANOMALY_MAP", "KEY_METHOD",
                                         "KEY_CENTERING")}


def build_data(work: Path) -> dict[str, Path]:
    from node_data import blob_image, write_blob_series
    from PIL import Image
    from support.folders import write_class_folders

    data = {"classes": write_class_folders(work / "classes", classes=3, per_class=8),
            "classes_query": write_class_folders(work / "classes_query", 3, 3, seed=9)}
    for name, seed, per in (("blobs", 1, 8), ("blobs_query", 2, 4)):
        rng = np.random.default_rng(seed)
        for kind in ("normal", "bright"):
            folder = work / name / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per):
                img, _ = blob_image(kind, rng)
                Image.fromarray(np.round(img * 255).astype(np.uint8)).save(
                    folder / f"{kind}{i}.png")
        data[name] = work / name
    files, _ = write_blob_series(work / "series", ["normal", "bright", "normal", "bright",
                                                   "bright", "normal"], "snap", seed=4)
    data["series"] = work / "series"
    data["series_files"] = files
    return data


def cli(*argv: str) -> None:
    from typer.testing import CliRunner

    from cossl_edge.cli import app

    res = CliRunner().invoke(app, [str(a) for a in argv])
    if res.exit_code != 0:
        raise SystemExit(f"cossl-edge {' '.join(map(str, argv))} failed:\n{res.output}"
                         f"{res.exception!r}")


def text(path: Path) -> np.ndarray:
    return np.frombuffer(Path(path).read_bytes(), np.uint8)


def fewshot_cli(work: Path, models: dict, data: dict, out: dict) -> dict[str, Path]:
    """fit, predict (with heatmaps for the map kinds) and eval of every classifier kind."""
    from PIL import Image

    fits = {k: ("tiny", "classes", k, None) for k in ("proto", "logreg", "knn")}
    fits.update({k: ("local", "blobs", kind, s) for k, (kind, s) in LOCAL_KINDS.items()})
    fits.update({"gem-local-auto": ("gem", "blobs", "local", "auto"),
                 "gem-local-memory": ("gem", "blobs", "local", "memory"),
                 "anomaly": ("gem", "blobs", "anomaly", None),
                 "auto": ("gem", "blobs", "auto", None),
                 "tiny-auto": ("tiny", "classes", "auto", None)})
    files = {}
    for name, (model, folder, kind, scoring) in fits.items():
        clf = work / f"{name}.json"
        extra = ["--local-scoring", scoring] if scoring else []
        cli("fewshot", "fit", models[model], data[folder], "--out", clf, "--classifier", kind,
            "--k", 3, "--C", 2.0, *extra)
        files[name] = clf
        out[f"fit/{name}"] = text(clf)
        pred = work / f"{name}.csv"
        query = data[f"{folder}_query"]
        heat = ["--heatmaps", work / f"heat-{name}"] if json.loads(clf.read_text())[
            "kind"] in ("local", "anomaly") else []
        cli("fewshot", "predict", clf, query, "--out", pred, "--top-k", 2, *heat)
        out[f"predict/{name}"] = text(pred)
        if heat:
            folder_h = heat[1]
            out[f"predict/{name}/heatmaps.csv"] = text(folder_h / "heatmaps.csv")
            for png in sorted(folder_h.glob("*.png")):
                out[f"predict/{name}/{png.stem}"] = np.asarray(Image.open(png))
    for name, (model, folder, kind, extra) in {
            "proto": ("tiny", "classes", "proto", []),
            "knn": ("tiny", "classes", "knn", []),
            "local-hybrid": ("local", "blobs", "local", ["--local-scoring", "hybrid"]),
            "gem-local-auto": ("gem", "blobs", "local", []),
            "anomaly": ("gem", "blobs", "anomaly", []),
            "auto": ("gem", "blobs", "auto", [])}.items():
        res = work / f"eval-{name}.json"
        cli("fewshot", "eval", models[model], data[folder], "--classifier", kind, "--shots",
            "2,3", "--episodes", 6, "--queries", 3, "--json", res, *extra)
        out[f"fewshot-eval/{name}"] = text(res)
    return files


def evaluate_cli(work: Path, models: dict, data: dict, out: dict) -> None:
    for name, folder in (("tiny", "classes"), ("gem", "blobs")):
        res = work / f"evaluate-{name}.json"
        cli("evaluate", models[name], data[folder], "--json", res, "--shots", "1,3",
            "--episodes", 6, "--queries", 3, "--seed", 1)
        out[f"evaluate/{name}"] = text(res)


def node(classifiers: dict[str, Path], data: dict, out: dict) -> None:
    """The node's SeriesClassifier on the DICOM series, each classifier: every image's
    probabilities and heatmap, the series result, and the full-precision arrays."""
    from cossl_edge.node.classify import SeriesClassifier

    files = data["series_files"]
    uids = [f"1.2.3.{i}" for i in range(len(files))]
    for name, clf in classifiers.items():
        for aggregate in ("max", "mean"):
            sc = SeriesClassifier(clf, threads=1, aggregate=aggregate)
            images, series = sc.classify(list(zip(uids, files, strict=True)), batch_size=4)
            key = f"node/{name}/{aggregate}"
            out[f"{key}/proba"] = np.asarray([r.probabilities for r in images])
            out[f"{key}/labels"] = np.asarray([r.label for r in images])
            if images[0].heatmap is not None:
                out[f"{key}/heatmaps"] = np.asarray([r.heatmap for r in images])
            out[f"{key}/series"] = np.frombuffer(json.dumps(
                {**series.summary(), "key_image": series.key_image,
                 "identity": sc.identity}, sort_keys=True).encode(), np.uint8)
        prepared = np.stack([sc.encoder.contract.prepare(sc.read(f)) for f in files])
        proba, heat = _node_proba(sc, prepared)
        out[f"node/{name}/full/proba"] = proba
        if heat is not None:
            out[f"node/{name}/full/heatmaps"] = heat


def _node_proba(sc, prepared: np.ndarray):
    """(probabilities, heatmaps or None) of prepared images through the node's classifier:
    its ``_proba`` before the runtime's Predictor (the reference), the Predictor after."""
    if hasattr(sc, "_proba"):
        return sc._proba(prepared)
    result = sc.predictor.predict_prepared(prepared)
    return result.proba, result.heatmaps


def local_findings(work: Path, models: dict, out: dict) -> None:
    """benchmarks/local_findings.py's scoring on 40 of its scans, fewer episodes."""
    import local_findings as lf

    from clinical_examples.finding_scans import write_dataset

    data = work / "findings"
    write_dataset(data, unlabeled=0, labeled=40, seed=0, size=96)
    lf.EPISODES = 30
    args = argparse.Namespace(data=data, work=work)
    lf.table_size = lambda args: 96
    for name in ("local", "gem"):
        enc = _encoder(models[name])
        images, y, grades = lf.labelled(args, enc.contract)
        rec = {"local": lf.local_score(models[name], images, y, seed=3),
               "hits": lf.heatmap_hits(models[name], args, seed=3, episodes=8)}
        if name == "gem":
            rec["anomaly"] = lf.anomaly_part(enc, args, images, y, seed=3, episodes=8)
            rec["score"] = lf.score(enc.embed_prepared(images), y, grades, 3, enc.centering)
        out[f"local_findings/{name}"] = np.frombuffer(json.dumps(rec, sort_keys=True).encode(),
                                                      np.uint8)


def _encoder(model: Path):
    from cossl_edge.runtime.encoder import Encoder

    return Encoder(model, threads=1)


def snapshot(out_path: Path, work: Path) -> dict[str, np.ndarray]:
    work.mkdir(parents=True, exist_ok=True)
    models, data = build_models(work), build_data(work)
    out: dict[str, np.ndarray] = {}
    classifiers = fewshot_cli(work, models, data, out)
    evaluate_cli(work, models, data, out)
    node(classifiers, data, out)
    local_findings(work, models, out)
    np.savez_compressed(out_path, **out)
    return out


def compare(a: str | Path | dict, b: str | Path | dict) -> list[str]:
    """The entries that differ (or are missing from one side); [] when all are identical."""
    a = dict(np.load(a)) if not isinstance(a, dict) else a
    b = dict(np.load(b)) if not isinstance(b, dict) else b
    diff = sorted(set(a) ^ set(b))
    diff += [k for k in sorted(set(a) & set(b)) if not np.array_equal(a[k], b[k])]
    return diff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "predict_snapshot",
                    help="Fixed folder (its path is in the classifier files and the ids).")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"))
    args = ap.parse_args()
    if args.compare:
        diff = compare(*args.compare)
        n = len(np.load(args.compare[0]).files)
        print(f"{n} entries; " + (f"{len(diff)} differ: {diff}" if diff else "all identical"))
        raise SystemExit(1 if diff else 0)
    shutil.rmtree(args.work, ignore_errors=True)
    out = snapshot(args.out, args.work)
    print(f"{len(out)} entries → {args.out}")


if __name__ == "__main__":
    main()
