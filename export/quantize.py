"""Static int8 quantization (QDQ, per-channel) calibrated on real preprocessed images.

Types follow the target CPU, as onnxruntime's quantization guide advises: x86 with VNNI runs
U8 activations × S8 weights natively; x86 without VNNI can saturate its 16-bit
intermediates with U8S8, so weights keep 7 bits (``reduce_range``); ARM prefers S8/S8.
Dynamic quantization is not offered: for a convolutional encoder it quantizes activations at
every call and was several times slower than fp32 here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from cossl_edge.cpu_kind import cpu_kind
from cossl_edge.export.errors import ExportError
from cossl_edge.runtime import metadata as mm

TARGETS = ("auto", "x86-vnni", "x86", "arm")
# target → (activation type, weight type, reduce_range)
TARGET_TYPES = {
    "x86-vnni": (QuantType.QUInt8, QuantType.QInt8, False),
    "x86": (QuantType.QUInt8, QuantType.QInt8, True),
    "arm": (QuantType.QInt8, QuantType.QInt8, False),
}


def resolve_target(target: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``auto`` → the target of this CPU (VNNI flags from /proc/cpuinfo, else the machine;
    :func:`cossl_edge.cpu_kind.cpu_kind`, which the edge commands use to compare)."""
    if target not in TARGETS:
        raise ExportError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if target != "auto":
        return target
    return cpu_kind(cpuinfo)


def ancestors(graph, outputs) -> set[str]:
    """Names of the nodes that any of ``outputs`` (tensor names) depends on."""
    producer = {o: n for n in graph.node for o in n.output}
    todo, seen = list(outputs), set()
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        todo.extend(node.input)
    return seen


class ImageReader(CalibrationDataReader):
    """Feeds the calibration images to the calibrator in small batches."""

    def __init__(self, images: np.ndarray, batch: int = 16,
                 advance: Callable[[int], None] | None = None) -> None:
        self.images, self.batch, self.advance = images, batch, advance
        self.start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.images):
            return None
        chunk = self.images[self.start:self.start + self.batch]
        self.start += self.batch
        if self.advance is not None:
            self.advance(len(chunk))
        return {mm.INPUT: chunk}

    def rewind(self) -> None:
        self.start = 0


def quantize_int8(fp32_path: Path, int8_path: Path, images: np.ndarray, target: str,
                  work_dir: Path, advance: Callable[[int], None] | None = None,
                  fp32_outputs: tuple[str, ...] = ()) -> dict:
    """Write the int8 QDQ model; returns the settings used (for the report). Every node
    that an output of ``fp32_outputs`` depends on stays in fp32: the anomaly map reads the
    small-variance directions of its features (a Mahalanobis distance), which int8 rounding
    swamps (on the real EL scans a fully int8 path cost 1.7 points of 5-shot accuracy; the
    embedding's path is quantized as before)."""
    import onnx

    activation, weight, reduce_range = TARGET_TYPES[target]
    prepared = work_dir / "encoder.pre.onnx"
    # quant_pre_process logs through the root logger; keep the CLI output to our own lines
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        exclude = sorted(ancestors(onnx.load(str(prepared)).graph, fp32_outputs))
        quantize_static(
            str(prepared), str(int8_path), ImageReader(images, advance=advance),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
            activation_type=activation, weight_type=weight, nodes_to_exclude=exclude,
        )
    except (RuntimeError, ValueError) as e:
        raise ExportError(f"{fp32_path}: int8 quantization failed ({e}); export with "
                          "--no-int8 and report this model") from e
    finally:
        logging.getLogger().setLevel(level)
    return {"target": target, "format": "QDQ", "per_channel": True,
            "activation_type": activation.name, "weight_type": weight.name,
            "reduce_range": reduce_range, "calibration_method": "MinMax",
            "fp32_nodes": len(exclude)}
