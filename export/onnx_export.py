"""The encoder as one self-contained ONNX file, with the metadata the edge runtime reads.

Exporter choice: the TorchScript-based ``torch.onnx.export(..., dynamo=False)``. With torch
2.13 the dynamo exporter only emits opset ≥ 18 and its down-conversion to 17 fails on
``ReduceMean`` (axes moved from attribute to input), printing a traceback; the TorchScript
exporter writes opset 17 directly, folds BatchNorm into the convolutions, keeps the weights
inside the file and names the dynamic batch axis. Its deprecation warning is silenced here.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from cossl_edge import __version__
from cossl_edge.contract import VolumeContract
from cossl_edge.runtime import metadata as mm
from cossl_edge.training.backbones import global_pool
from cossl_edge.training.config import PretrainConfig

# Settings of the method that the runtime or a reader of the file may want to know.
METHOD_KEYS = ("method", "arch", "width", "stem", "w_s", "rf_bounded_after", "local_grid",
               "local_target", "proj_dim", "pool")


class PooledEncoder(nn.Module):
    """Backbone + pooling; with ``local_map`` also returns the map before pooling, with a
    ``normal`` model (:class:`~cossl_edge.training.normal_stats.NormalModel`, named
    ``normal`` in the graph) also the anomaly map."""

    def __init__(self, encoder: nn.Module, local_map: bool = False,
                 normal: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.local_map = local_map
        self.normal = normal

    def forward(self, image: torch.Tensor):
        if self.normal is None:
            fmap = self.encoder.forward_features(image)
        else:
            tap = self.encoder.tap_features(image)
            fmap = self.encoder.forward_from_tap(tap)
        pooled = global_pool(fmap, getattr(self.encoder, "pool", "mean"))
        out = (pooled, fmap) if self.local_map else (pooled,)
        if self.normal is not None:
            out = (*out, self.normal(image, tap))
        return out if len(out) > 1 else pooled


def output_names(local_map: bool, normal: bool) -> list[str]:
    return [mm.OUTPUT] + ([mm.LOCAL_MAP] if local_map else []) + \
        ([mm.ANOMALY_MAP] if normal else [])


def export_onnx(encoder: nn.Module, channels: int, size: int, path: Path, opset: int = 17,
                local_map: bool = False, normal: nn.Module | None = None,
                dims: int = 2) -> None:
    """Write ``encoder`` (eval mode) to ``path``: input ``image`` (N×C×S×S, or N×C×S×S×S
    with ``dims=3``), output ``embedding`` (then ``local_map`` and ``anomaly_map`` when
    asked)."""
    model = PooledEncoder(encoder, local_map, normal).eval()
    outputs = output_names(local_map, normal is not None)
    dynamic = {name: {0: "batch"} for name in [mm.INPUT, *outputs]}
    example = torch.zeros(2, channels, *(size,) * dims)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        # EfficientNet's "same" padding slices with a step the folding pass does not fold
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(model, (example,), str(path), input_names=[mm.INPUT],
                          output_names=outputs, dynamic_axes=dynamic, opset_version=opset,
                          do_constant_folding=True, dynamo=False)


def method_summary(config: PretrainConfig) -> dict:
    d = config.to_dict()
    summary = {k: d[k] for k in METHOD_KEYS}
    summary["stem"] = config.resolved_stem()
    summary["pool"] = config.resolved_embed_pool()
    return summary


def volume_contract(config: PretrainConfig) -> VolumeContract | None:
    """How the edge must turn a series into this run's input cube (3D runs), else None."""
    if not getattr(config, "volumes", False):
        return None
    from cossl_edge.training.volume_data import MIN_DEPTH

    return VolumeContract(spacing_mm=float(config.spacing), size=config.contract.size,
                          min_depth=MIN_DEPTH)


def build_metadata(config: PretrainConfig, centering: np.ndarray, precision: str,
                   fingerprint: str) -> dict[str, str]:
    """The ``metadata_props`` of an exported file; every value a string (JSON if structured).
    A 3D run's files also carry its :class:`VolumeContract` (2D files are unchanged)."""
    volume = volume_contract(config)
    return ({mm.KEY_VOLUME: volume.to_json()} if volume is not None else {}) | {
        mm.KEY_CONTRACT: config.contract.to_json(),
        mm.KEY_METHOD: json.dumps(method_summary(config), sort_keys=True),
        mm.KEY_VERSION: __version__,
        mm.KEY_FINGERPRINT: fingerprint,
        mm.KEY_CENTERING: json.dumps([round(float(v), 7) for v in centering]),
        mm.KEY_EMBED_DIM: str(int(centering.shape[0])),
        mm.KEY_PRECISION: precision,
    }


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the file's ``metadata_props`` with ``metadata`` (other keys are kept)."""
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "cossl-edge"
    model.producer_version = __version__
    onnx.save(model, str(path))
