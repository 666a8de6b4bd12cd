"""Models and image folders for the edge tests, written by the full environment.

``python tests/make_edge_fixtures.py OUT_DIR`` (what ``make test-edge`` runs with the full
venv) writes ``OUT_DIR/model.onnx`` — exported by :func:`cossl_edge.export.export_run` from a
tiny hand-built run directory when the exporter is installed, else built with
``onnx.helper`` — and labelled image folders. The minimal environment then reads them.
The test modules import the builders below directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

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


def write_class_folders(root: Path, classes: int = 3, per_class: int = 8, size: int = 20,
                        seed: int = 0) -> Path:
    """PNG images in ``root/class_k/``; each class has its own brightness and texture, so a
    random-feature encoder separates them."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = 40 + 70 * k
            img = rng.normal(base, 6 + 8 * k, size=(size, size)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"img_{i:03d}.png")
    return root


def export_tiny_run(out: Path, calibration: Path) -> Path | None:
    """Export a tiny ResNet through the project's exporter (int8, calibrated on
    ``calibration``); None only when the exporter is not installed."""
    try:
        import torch

        from cossl_edge.export import export_run
        from cossl_edge.training.backbones import build_encoder
        from cossl_edge.training.config import PretrainConfig
    except ImportError:
        return None
    run = out / "run"
    run.mkdir(parents=True, exist_ok=True)
    cfg = PretrainConfig(arch="resnet10", width=0.125,
                         contract=PreprocessContract(channels=1, size=16))
    cfg.save(run / "config.json")
    torch.manual_seed(0)
    encoder = build_encoder(cfg).eval()
    torch.save(encoder.state_dict(), run / "encoder.pt")
    # the normal model a finished pretraining writes: the edge model has an anomaly map
    from cossl_edge import rundir
    from cossl_edge.sources import discover, load_many
    from cossl_edge.training import normal_stats

    images, _, _ = load_many(discover(calibration).samples, cfg.contract)
    normal_stats.save(normal_stats.compute(encoder, images, cfg.contract, torch.device("cpu")),
                      run / rundir.NORMAL_MODEL)
    export_run(run, calibration=calibration, calibration_count=16, measure_latency=False)
    return run / "encoder.int8.onnx"


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labelled = write_class_folders(out / "labelled", classes=3, per_class=8)
    write_class_folders(out / "pair", classes=2, per_class=8, seed=1)  # normal vs finding
    exported = export_tiny_run(out, labelled)
    model = out / "model.onnx"
    if exported is not None:
        model.write_bytes(exported.read_bytes())
        how = "cossl_edge.export.export_run (int8)"
    else:
        build_tiny_model(model, centering=None)
        how = "onnx.helper (exporter not installed)"
    print(f"edge fixtures in {out}: model from {how}")


if __name__ == "__main__":
    main(sys.argv[1])
