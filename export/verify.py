"""Proof that an exported file is the trained model, and how far int8 moves it.

- :func:`check_parity`: ORT fp32 against torch on real preprocessed images; the export fails
  when the largest absolute difference reaches the tolerance.
- :func:`agreement`: int8 against fp32 embeddings, cosine (mean, min) and whether each
  image's nearest neighbour among the others stays the same (kNN top-1 agreement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from cossl_edge.export.errors import ExportError
from cossl_edge.runtime import metadata as mm

PARITY_TOLERANCE = 1e-4


def check_model(path: Path) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{path}: the exported graph fails onnx.checker ({e})") from e


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(sess: ort.InferenceSession, images: np.ndarray, batch: int = 64,
             output: str = mm.OUTPUT) -> np.ndarray:
    parts = [sess.run([output], {mm.INPUT: images[i:i + batch]})[0]
             for i in range(0, len(images), batch)]
    return np.concatenate(parts)


def check_parity(model: nn.Module, path: Path, images: np.ndarray, local_map: bool = False,
                 tolerance: float = PARITY_TOLERANCE, normal: nn.Module | None = None) -> float:
    """Largest |ORT − torch| over the outputs, relative to each output's largest magnitude
    when it exceeds 1 (an anomaly map of z-scores in the tens, a 1,280-channel map);
    raises :class:`ExportError` at ``tolerance``."""
    from cossl_edge.export.onnx_export import PooledEncoder

    sess = session(path)
    whole = PooledEncoder(model, local_map, normal).eval()
    worst = 0.0
    for i in range(0, len(images), 64):
        x = images[i:i + 64]
        with torch.no_grad():
            out = whole(torch.from_numpy(x))
        expected = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        got = sess.run(None, {mm.INPUT: x})
        worst = max([worst] + [float(np.abs(g - e).max() / max(1.0, np.abs(e).max()))
                               for g, e in zip(got, expected, strict=True)])
    if not worst < tolerance:
        raise ExportError(f"{path}: onnxruntime and torch disagree by {worst:.3g} (tolerance "
                          f"{tolerance:g}); the export is not faithful, report this model")
    return worst


def map_agreement(fp32: np.ndarray, int8: np.ndarray) -> dict[str, float]:
    """Anomaly maps of the fp32 and int8 files: Pearson correlation of the values, and how
    often the two agree on each image's most anomalous position and its score order."""
    a, b = fp32.reshape(len(fp32), -1), int8.reshape(len(int8), -1)
    corr = float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    same_peak = float((a.argmax(1) == b.argmax(1)).mean())
    ra, rb = np.argsort(np.argsort(a.max(1))), np.argsort(np.argsort(b.max(1)))
    rank = float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 1 else 1.0
    return {"pearson": corr, "same_peak": same_peak, "image_score_spearman": rank}


def agreement(fp32: np.ndarray, int8: np.ndarray) -> dict[str, float]:
    """Cosine between paired embeddings and kNN top-1 agreement (cosine neighbours)."""
    a, b = _unit(fp32), _unit(int8)
    cos = np.sum(a * b, axis=1)
    result = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    if len(a) >= 3:
        result["knn_top1_agreement"] = float(np.mean(_nearest(a) == _nearest(b)))
    else:
        result["knn_top1_agreement"] = float("nan")
    return result


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _nearest(unit: np.ndarray) -> np.ndarray:
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)
