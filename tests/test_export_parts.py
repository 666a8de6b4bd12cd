"""Pieces of the exporter: target resolution, int8 types, agreement, the recommendation."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from cossl_edge import cpu_kind
from cossl_edge.export import ExportError, onnx_export, quantize
from cossl_edge.export.export_report import recommend_int8, report_tables
from cossl_edge.export.verify import agreement
from cossl_edge.training.backbones import ResNetEncoder


def test_an_int8_model_tuned_for_another_cpu_kind_is_said():
    assert cpu_kind.target_warning("m.onnx", "x86-vnni", here="x86-vnni") is None
    assert cpu_kind.target_warning("m.onnx", None, here="arm") is None  # fp32, or no record
    line = cpu_kind.target_warning("m.onnx", "x86-vnni", here="arm")
    assert "tuned for x86-vnni" in line and "--target arm" in line


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx2 avx512f avx512_vnni", "x86-vnni"),
    ("fpu sse avx2 avx_vnni", "x86-vnni"),
    ("fpu sse avx2 avx512f", "x86"),
])
def test_auto_target_reads_cpu_flags(tmp_path, monkeypatch, flags, expected):
    monkeypatch.setattr(cpu_kind.platform, "machine", lambda: "x86_64")
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert quantize.resolve_target("auto", info) == expected


def test_target_on_arm_and_bad_target(monkeypatch):
    monkeypatch.setattr(cpu_kind.platform, "machine", lambda: "aarch64")
    assert quantize.resolve_target("auto") == "arm"
    assert quantize.resolve_target("x86") == "x86"
    with pytest.raises(ExportError, match="--target must be one of"):
        quantize.resolve_target("riscv")


@pytest.mark.parametrize("target, act_dtype, reduce", [
    ("x86-vnni", np.uint8, False), ("x86", np.uint8, True), ("arm", np.int8, False),
])
def test_int8_types_follow_the_target(tmp_path, target, act_dtype, reduce):
    enc = ResNetEncoder("resnet10", width=0.125, in_channels=1, stem="small").eval()
    fp32 = tmp_path / "m.onnx"
    onnx_export.export_onnx(enc, 1, 16, fp32)
    images = np.random.default_rng(0).standard_normal((8, 1, 16, 16)).astype(np.float32)
    settings = quantize.quantize_int8(fp32, tmp_path / "q.onnx", images, target, tmp_path)
    assert settings["reduce_range"] is reduce
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quant = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    act_zero_points = {inits[n.input[2]].dtype for n in quant if n.input[2] in inits}
    assert act_zero_points == {np.dtype(act_dtype)}
    weights = [inits[n.input[0]] for n in model.graph.node
               if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
               and inits[n.input[0]].ndim == 4]
    assert weights and all(w.dtype == np.int8 for w in weights)
    if reduce:  # 7-bit weights
        assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64


def test_agreement_figures():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 8))
    same = agreement(a, a * 3.0)
    assert same["cosine_mean"] == pytest.approx(1.0) and same["knn_top1_agreement"] == 1.0
    noisy = agreement(a, a + rng.standard_normal(a.shape))
    assert noisy["cosine_min"] < noisy["cosine_mean"] < 0.95
    assert noisy["knn_top1_agreement"] < 1.0


def test_recommendation_warns_on_low_cosine_or_no_speedup():
    good = {"int8_agreement": {"cosine_mean": 0.995},
            "latency": [{"engine": "ort-fp32", "batch": 1, "threads": 2, "ms": 2.0},
                        {"engine": "ort-int8", "batch": 1, "threads": 2, "ms": 1.0},
                        {"engine": "ort-int8", "batch": 1, "threads": 1, "ms": 9.0}]}
    assert recommend_int8(good) == (True, [])
    low = good | {"int8_agreement": {"cosine_mean": 0.98}}
    ok, warnings = recommend_int8(low)
    assert not ok and "0.9800" in warnings[0]
    slow = good | {"latency": [dict(r, ms=3.0) if r["engine"] == "ort-int8" else r
                               for r in good["latency"]]}
    ok, warnings = recommend_int8(slow)
    assert not ok and "not faster" in warnings[0]


def test_report_tables_render():
    from rich.console import Console

    report = {"files": {"fp32": {"file": "encoder.onnx", "bytes": 2_000_000}},
              "parity_max_abs_diff": 1e-7, "calibration_images": 8,
              "latency": [{"engine": "torch-fp32", "batch": 1, "threads": 1, "ms": 1.5}]}
    console = Console(record=True, width=120)
    for table in report_tables(report):
        console.print(table)
    text = console.export_text()
    assert "2.00 MB" in text and "1.50" in text and "int8 recommended" not in text


def test_exported_pooled_encoder_matches_torch(tmp_path):
    torch.manual_seed(1)
    enc = ResNetEncoder("resnet10", width=0.125, in_channels=3, stem="standard").eval()
    path = tmp_path / "m.onnx"
    onnx_export.export_onnx(enc, 3, 64, path)
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    from cossl_edge.export.verify import check_parity

    assert check_parity(enc, path, x) < 1e-4
