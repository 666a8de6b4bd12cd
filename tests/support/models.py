"""Tiny ONNX encoders with the project's metadata, built with ``onnx.helper`` (no torch):
a global one (1×1 convolution, ReLU, global average pool) and a local one whose
convolution is the ``local_map`` output (as ``export --local-map`` writes it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cossl_edge.contract import PreprocessContract
from cossl_edge.runtime import metadata as mm


def build_tiny_model(path: Path, contract: PreprocessContract | None = None, dim: int = 16,
                     with_contract: bool = True, centering: list[float] | None = None,
                     seed: int = 0) -> Path:
    """A fixed random 1×1 convolution + ReLU + global average pool, with our metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = contract or PreprocessContract(channels=1, size=16)
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(dim, c.channels, 1, 1)).astype(np.float32)
    bias = rng.normal(scale=0.5, size=(dim,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", [mm.INPUT, "w", "b"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], [mm.OUTPUT], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(mm.INPUT, TensorProto.FLOAT,
                                       ["N", c.channels, c.size, c.size])],
        [helper.make_tensor_value_info(mm.OUTPUT, TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {mm.KEY_EMBED_DIM: str(dim), mm.KEY_PRECISION: "fp32"}
    if with_contract:
        meta[mm.KEY_CONTRACT] = c.to_json()
    if centering is not None:
        meta[mm.KEY_CENTERING] = json.dumps(centering)
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def build_local_model(path: Path, contract: PreprocessContract | None = None, dim: int = 8,
                      kernel: int = 8, stride: int = 4, box_gain: float = 4.0,
                      seed: int = 0) -> Path:
    """A fixed convolution (kernel × kernel, stride, padding (kernel − stride) / 2) whose
    output is the ``local_map`` (as ``export --local-map`` writes it), then a global average
    pool to the ``embedding``. Filter 0 is a box mean × ``box_gain`` (brightness, the one
    feature that does not depend on where in the patch a spot lies), the others random."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = contract or PreprocessContract(channels=1, size=32)
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(dim, c.channels, kernel, kernel)).astype(np.float32) / kernel
    weight[0] = box_gain / (c.channels * kernel * kernel)
    pad = (kernel - stride) // 2
    grid = (c.size + 2 * pad - kernel) // stride + 1
    nodes = [
        helper.make_node("Conv", [mm.INPUT, "w"], [mm.LOCAL_MAP], kernel_shape=[kernel, kernel],
                         strides=[stride, stride], pads=[pad] * 4),
        helper.make_node("GlobalAveragePool", [mm.LOCAL_MAP], ["pool"]),
        helper.make_node("Flatten", ["pool"], [mm.OUTPUT], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny-local",
        [helper.make_tensor_value_info(mm.INPUT, TensorProto.FLOAT,
                                       ["N", c.channels, c.size, c.size])],
        [helper.make_tensor_value_info(mm.OUTPUT, TensorProto.FLOAT, ["N", dim]),
         helper.make_tensor_value_info(mm.LOCAL_MAP, TensorProto.FLOAT,
                                       ["N", dim, grid, grid])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.helper.set_model_props(model, {mm.KEY_EMBED_DIM: str(dim), mm.KEY_PRECISION: "fp32",
                                        mm.KEY_CONTRACT: c.to_json()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
