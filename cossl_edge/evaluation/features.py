"""What the evaluation runs: prepared images → embeddings, and the local map when there is one.

An extractor is any callable ``(prepared N×S×S×C in [0, 1]) → Features`` with a ``contract``
and a ``description``. Here: an ONNX model (its optional ``local_map`` output, from
``cossl-edge export --local-map``) and raw pixels (the floor every encoder must beat). A run
directory's torch encoder is :class:`cossl_edge.training.run_features.RunFeatures`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.runtime import metadata as mm
from cossl_edge.runtime.pooling import pooled

Advance = Callable[[int], None]


@dataclass
class Features:
    """N×D embeddings; N×D×h×w local maps, or ``None`` with the reason they are missing."""

    embeddings: np.ndarray
    local_maps: np.ndarray | None = None
    no_local_map: str | None = None


class Extractor(Protocol):
    contract: PreprocessContract
    description: dict

    def __call__(self, prepared: np.ndarray, advance: Advance | None = None) -> Features: ...


class OnnxFeatures:
    """An exported encoder; local maps when it was exported with ``--local-map``."""

    def __init__(self, path: str | Path, threads: int = 0, batch_size: int = 64,
                 contract: PreprocessContract | str | Path | None = None) -> None:
        from cossl_edge.privacy import file_token
        from cossl_edge.runtime.encoder import Encoder  # onnxruntime loads only when used

        self.encoder = Encoder(path, contract=contract, threads=threads)
        self.contract = self.encoder.contract
        self.batch_size = batch_size
        self.has_local_map = self.encoder.has_local_map
        method = self.encoder.metadata.get(mm.KEY_METHOD)
        self.pool = self.encoder.pooling
        self.description = {"kind": "onnx", "model": file_token(path),
                            "sha256": self.encoder.sha256,
                            "precision": self.encoder.metadata.get(mm.KEY_PRECISION),
                            "method": _json_or_none(method)}

    def __call__(self, prepared: np.ndarray, advance: Advance | None = None) -> Features:
        names = [mm.OUTPUT, mm.LOCAL_MAP] if self.has_local_map else [mm.OUTPUT]
        emb, maps = [], []
        for i in range(0, len(prepared), self.batch_size):
            x = self.contract.normalize(prepared[i:i + self.batch_size])
            out = self.encoder.run_readings(x, names)
            emb.append(out[mm.OUTPUT])
            if self.has_local_map:
                maps.append(out[mm.LOCAL_MAP])
            if advance:
                advance(len(x))
        if not self.has_local_map:
            return Features(np.concatenate(emb), None,
                            "the model has no local_map output; re-export the run with "
                            "`cossl-edge export --local-map`, or evaluate the run directory")
        local = np.concatenate(maps)
        return Features(pooled(local, self.pool), local)


class PixelFeatures:
    """Raw pixels as the embedding: the floor. No feature map, so no masking or redundancy."""

    def __init__(self, contract: PreprocessContract) -> None:
        self.contract = contract
        self.description = {"kind": "raw-pixels"}

    def __call__(self, prepared: np.ndarray, advance: Advance | None = None) -> Features:
        x = self.contract.normalize(np.asarray(prepared, np.float32))
        if advance:
            advance(len(x))
        return Features(x.reshape(len(x), -1), None, "raw pixels have no feature map")


FLOOR_SIDE = 64  # fewshot eval's raw-pixel floor: the prepared image at 64 × 64


def downsampled_pixels(prepared: np.ndarray, side: int = FLOOR_SIDE) -> np.ndarray:
    """N×S×S×C prepared images → N×(side·side·C) vectors: the image itself, box-filtered to
    ``side`` px — the floor that ``fewshot eval`` prints beside a model."""
    from PIL import Image

    out = []
    for im in prepared:
        chans = [np.asarray(Image.fromarray(np.asarray(im[..., c], np.float32)).resize(
            (side, side), Image.BOX)) for c in range(im.shape[-1])]
        out.append(np.stack(chans, -1).ravel())
    return np.asarray(out, np.float32)


def _json_or_none(text: str | None):
    import json

    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
